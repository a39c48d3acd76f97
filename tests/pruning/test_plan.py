"""Plans: a global ratio plus clipped per-unit offsets, as Optuna parameters; every total sparsity is reachable."""

from __future__ import annotations

import optuna
import pytest
import torch

from moprune.pruning import GLOBAL_PARAM, discover_groups, plan_params, search_units, suggest_plan
from moprune.spec import PruneSpec

X = torch.randn(1, 3, 32, 32)


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


def test_blocks_are_a_choice_each_and_enqueued_plans_name_every_block(resnet18):
    from moprune.pruning import drop_key, drop_param, nearest_params

    units = search_units(resnet18, discover_groups(resnet18, X), "group", X)
    prune = PruneSpec(ratio={"high": 0.8, "step": 0.05}, drop_blocks=True)
    blocks = ("layer1.1", "layer3.1")
    # a uniform starting plan drops nothing, and says so for every block (else the sampler would draw them)
    params = plan_params(units, prune, 0.4, blocks=blocks)
    assert {params[drop_param(b)] for b in blocks} == {0}
    assert not any(k.startswith("drop:") for k in suggest_plan(optuna.trial.FixedTrial(params), units, prune, blocks))
    # a plan made elsewhere keeps its drops in its parameters
    made = {r: 0.4 for u in units for r in u.roots} | {drop_key("layer3.1"): 1.0}
    params = nearest_params(units, prune, 0.4, made, blocks=blocks)
    assert params[drop_param("layer1.1")] == 0 and params[drop_param("layer3.1")] == 1
    assert suggest_plan(optuna.trial.FixedTrial(params), units, prune, blocks) == made
