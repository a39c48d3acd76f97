"""Search units: DependencyGraph groups of real torchvision models, tied by granularity."""

from __future__ import annotations

import optuna
import pytest
import torch
import torchvision

from moprune.space import discover_groups, search_units, suggest_plan, uniform_params
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


def test_suggest_plan_expands_units_to_every_group_root(resnet18):
    groups = discover_groups(resnet18, X)
    units = search_units(resnet18, groups, "stage", X)
    params = {f"ratio/{u.name}": 0.1 * i for i, u in enumerate(units)}
    plan = suggest_plan(optuna.trial.FixedTrial(params), units, PruneSpec(ratio={"high": 0.8, "step": 0.1}))
    assert set(plan) == {g.root for g in groups}
    for i, unit in enumerate(units):
        assert all(plan[r] == pytest.approx(0.1 * i) for r in unit.roots)


def test_uniform_params_name_every_unit(resnet18):
    units = search_units(resnet18, discover_groups(resnet18, X), "group", X)
    params = uniform_params(units, 0.5)
    assert len(params) == 12 and set(params.values()) == {0.5}
