"""Search units: DependencyGraph groups of real torchvision models, tied by granularity."""

from __future__ import annotations

import optuna
import pytest
import torch
import torchvision

from moprune.pruning import GLOBAL_PARAM, discover_groups, plan_params, search_units, suggest_plan
from moprune.spec import PruneSpec

X = torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def resnet18():
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def mobilenet_v2():
    return torchvision.models.mobilenet_v2(num_classes=10).eval()


def test_resnet18_has_twelve_groups_and_never_the_classifier(resnet18):
    groups = discover_groups(resnet18, X)
    roots = [g.root for g in groups]
    assert len(groups) == 12
    assert "fc" not in roots  # (fc is a member of layer4's group: its input channels follow)
    assert roots[0] == "conv1"  # module order, not tracing order
    assert {"layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"} <= set(roots)
    residual = next(g for g in groups if g.root == "layer2.0.downsample.0")
    # the residual chain couples every block output of the stage: one group, one ratio
    assert {"layer2.0.conv2", "layer2.1.conv2"} <= set(residual.members)
    assert residual.channels == 128


def test_mobilenet_v2_groups_couple_depthwise_convs(mobilenet_v2):
    groups = discover_groups(mobilenet_v2, X)
    assert len(groups) > 10
    assert "classifier.1" not in [g.root for g in groups]
    depthwise = [n for n, m in mobilenet_v2.named_modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    grouped = {m for g in groups for m in g.members}
    assert set(depthwise) <= grouped


@pytest.mark.parametrize("granularity,expected", [("group", 12), ("global", 1), ("block", 9), ("stage", 5)])
def test_granularity_ties_groups(resnet18, granularity, expected):
    groups = discover_groups(resnet18, X)
    units = search_units(resnet18, groups, granularity, X)
    assert len(units) == expected
    tied = sorted(r for u in units for r in u.roots)
    assert tied == sorted(g.root for g in groups), "every group belongs to exactly one unit"


def test_block_units_follow_residual_blocks(resnet18):
    units = search_units(resnet18, discover_groups(resnet18, X), "block", X)
    by_name = {u.name: u.roots for u in units}
    assert by_name["layer2.0"] == ("layer2.0.conv1", "layer2.0.downsample.0")


def test_plan_is_a_global_ratio_plus_clipped_offsets(resnet18):
    groups = discover_groups(resnet18, X)
    units = search_units(resnet18, groups, "stage", X)
    prune = PruneSpec(ratio={"high": 0.8, "step": 0.1}, offset_max=0.3)
    offsets = {u.name: [-0.3, -0.1, 0.0, 0.2, 0.3][i] for i, u in enumerate(units)}
    params = plan_params(units, prune, 0.6, offsets)
    plan = suggest_plan(optuna.trial.FixedTrial(params), units, prune)
    assert set(plan) == {g.root for g in groups}, "every group root gets a ratio"
    expected = [0.3, 0.5, 0.6, 0.8, 0.8]  # 0.6 + offset, clipped at ratio.high
    for unit, want in zip(units, expected):
        assert all(plan[r] == pytest.approx(want) for r in unit.roots)


def test_uniform_plans_are_points_of_the_space(resnet18):
    units = search_units(resnet18, discover_groups(resnet18, X), "group", X)
    prune = PruneSpec(ratio={"high": 0.8, "step": 0.05})
    for level in (0.0, 0.35, 0.8):
        params = plan_params(units, prune, level)
        assert params[GLOBAL_PARAM] == pytest.approx(level) and len(params) == 13
        plan = suggest_plan(optuna.trial.FixedTrial(params), units, prune)
        assert all(v == pytest.approx(level) for v in plan.values())


def test_every_total_sparsity_is_reachable_by_random_sampling(resnet18):
    """Independent per-group ratios concentrate the mean ratio mid-range; global + offset spans it."""
    units = search_units(resnet18, discover_groups(resnet18, X), "group", X)
    prune = PruneSpec(ratio={"high": 0.8, "step": 0.05})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    means = []
    for _ in range(60):
        trial = study.ask()
        plan = suggest_plan(trial, units, prune)
        means.append(sum(plan.values()) / len(plan))
        study.tell(trial, 0.0)
    assert min(means) < 0.15 and max(means) > 0.65


def test_global_granularity_has_one_parameter(resnet18):
    units = search_units(resnet18, discover_groups(resnet18, X), "global", X)
    params = plan_params(units, PruneSpec(), 0.5)
    assert params == {GLOBAL_PARAM: 0.5}


@pytest.mark.parametrize("step,offset_max", [(0.1, 0.3), (0.05, 0.3), (0.05, 0.25), (0.1, 0.2)])
def test_offset_ranges_stay_symmetric_in_optuna(resnet18, step, offset_max):
    """Float steps like 0.1 * 3 = 0.30000000000000004 made Optuna shrink the range to [-0.3, 0.2]: a stored trial's
    +0.3 offset then no longer fitted its own distribution."""
    units = search_units(resnet18, discover_groups(resnet18, X), "group", X)
    spec = PruneSpec(ratio={"low": 0.0, "high": 0.8, "step": step}, offset_max=offset_max)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    suggest_plan(trial, units, spec)
    for name, dist in trial.distributions.items():
        if name != GLOBAL_PARAM:
            assert dist.low == -dist.high == pytest.approx(-offset_max)


def test_mobilenet_v2_blocks_are_inverted_residuals(mobilenet_v2, caplog):
    with caplog.at_level("WARNING", logger="moprune"):
        units = search_units(mobilenet_v2, discover_groups(mobilenet_v2, X), "block", X)
    assert not caplog.records and len(units) == 18
    assert {"features.3", "features.17"} <= {u.name for u in units}


class Flat(torch.nn.Module):
    """A custom model whose layers are attributes of the model itself: it has no blocks."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x).relu()).relu().mean(dim=(2, 3)))


class Wrapped(torch.nn.Module):
    """A custom model whose every layer sits in one non-Sequential container: one "block" would be one ratio."""

    def __init__(self):
        super().__init__()
        self.body = Flat()

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("model,granularity,why", [
    (torchvision.models.vgg11_bn(num_classes=10).eval(), "block", "every group is its own block"),
    (Flat().eval(), "block", "every group is its own block"),
    (Wrapped().eval(), "block", "all 2 groups fall in one block"),
    (Flat().eval(), "stage", "all 2 groups fall in one stage"),
], ids=["vgg11_bn", "flat-custom", "wrapped-custom", "one-resolution"])
def test_block_and_stage_fall_back_to_group_with_a_warning_when_the_model_has_none(model, granularity, why,
                                                                                   caplog):
    groups = discover_groups(model, X)
    with caplog.at_level("WARNING", logger="moprune"):
        units = search_units(model, groups, granularity, X)
    assert [u.roots for u in units] == [(g.root,) for g in groups], "searched per group"
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"finds no {granularity}s" in message and why in message and "prune.granularity: group" in message
