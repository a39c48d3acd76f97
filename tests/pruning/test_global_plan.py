"""Global pruning as a plan: the plan removes exactly the channels Torch-Pruning's global pruner removes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp

from moprune.pruning import (apply_plan, classifier_of, discover_groups, global_plan, kept_channels, local_ratio,
                             make_importance, nearest_params, search_units)
from moprune.spec import PruneSpec


@pytest.mark.parametrize("channels", [3, 10, 16, 24, 64, 96, 512])
def test_the_local_ratio_of_a_count_prunes_exactly_that_count(channels):
    for pruned in range(channels):
        ratio = local_ratio(pruned, channels)
        assert channels - int(channels * (1 - ratio)) == pruned  # Torch-Pruning's own arithmetic


@pytest.mark.parametrize("model_name", ["resnet18", "mobilenet_v2"])
def test_a_global_plan_prunes_the_channels_torch_prunings_global_pruner_prunes(model_name, request):
    dense = request.getfixturevalue(model_name)
    x = torch.randn(1, 3, 32, 32)
    groups = discover_groups(dense, x)
    plan = global_plan(dense, groups, x, 0.5, max_ratio=0.8)
    assert set(plan) == {g.root for g in groups}
    assert len(set(plan.values())) > 3, "global ranking allocates unevenly across groups"
    assert max(plan.values()) <= 0.8 + 1e-9, "no group pruned past max_ratio"

    reference = copy.deepcopy(dense)
    tp.pruner.MetaPruner(reference, x, importance=make_importance("l2"), pruning_ratio=0.5, global_pruning=True,
                         max_pruning_ratio=0.8, ignored_layers=[classifier_of(reference)]).step()
    ours = apply_plan(dense, plan, x)
    assert ours.channels == kept_channels(reference)
    for (name, a), (_, b) in zip(reference.state_dict().items(), ours.model.state_dict().items()):
        assert torch.equal(a, b), f"{name}: other channels kept"


def test_nearest_params_of_a_global_plan_stay_in_the_search_space(resnet18):
    x = torch.randn(1, 3, 32, 32)
    groups = discover_groups(resnet18, x)
    units = search_units(resnet18, groups, "group", x)
    prune = PruneSpec(ratio={"low": 0.0, "high": 0.8, "step": 0.05}, offset_max=0.2)
    params = nearest_params(units, prune, 0.6, global_plan(resnet18, groups, x, 0.6, max_ratio=0.8))
    assert params["ratio/global"] == 0.6
    offsets = [v for k, v in params.items() if k.startswith("offset/")]
    assert len(offsets) == len(units) and all(-0.2 <= v <= 0.2 for v in offsets)
    assert all(abs(v / 0.05 - round(v / 0.05)) < 1e-6 for v in offsets), "on the step grid"
    assert any(v != 0 for v in offsets)
