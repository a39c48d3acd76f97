"""Torch-Pruning's global pruning as a plan: what a user would do instead of a search, in moprune's own terms.

Global pruning (``MetaPruner(global_pruning=True)``) ranks the channels of every group together by their
importance, normalised per group, and removes the lowest ``ratio`` of all of them: the allocation across layers
comes from the importance scores instead of a search. moprune runs exactly that pruner on a copy of the dense
model, reads how many channels each group root lost, and writes the result as a ``PrunePlan``. Because the
importance is normalised per group, the channels a group keeps under the global ranking are its own most important
ones, so ``apply_plan`` of that plan removes the same channels: a global-pruning starting trial is pruned, measured
and fine-tuned by the one trial step like every other plan, and its plan can be compared, exported and replayed.
"""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import nn

from .apply import make_importance, prepare_importance
from .groups import PruneGroup, classifier_of
from .plan import PrunePlan
from .transformer import CHANNELS, find_sites, global_site_plan


def local_ratio(pruned: int, channels: int) -> float:
    """The ratio that makes Torch-Pruning's local pruner remove exactly ``pruned`` of ``channels``.

    The pruner keeps ``int(channels * (1 - ratio))`` channels (floating point, truncated): a ratio rounded up by a
    hair would keep one channel fewer, so the six-digit ratio is nudged down until the count is exact.
    """
    if pruned <= 0:
        return 0.0
    ratio = round(pruned / channels, 6)
    while int(channels * (1 - ratio)) != channels - pruned:
        ratio = round(ratio - 1e-6, 6)
    return ratio


def global_plan(dense: nn.Module, groups: list[PruneGroup], example_inputs: torch.Tensor, ratio: float, *,
                importance: str = "l2", max_ratio: float = 1.0, round_to: int | None = None,
                calibration: tuple[torch.Tensor, torch.Tensor] | None = None) -> PrunePlan:
    """The plan Torch-Pruning's global pruning at ``ratio`` makes of ``dense`` (``dense`` is left untouched).

    ``max_ratio`` caps any one group (Torch-Pruning's ``max_pruning_ratio``): without it the global ranking can
    empty a layer. ``groups`` are the study's groups (their roots are the plan's keys).
    """
    if ratio <= 0:
        return {g.root: 0.0 for g in groups}
    model = copy.deepcopy(dense).eval()
    if any(g.kind != CHANNELS for g in groups):
        prepare_importance(model, importance, calibration)
        return global_site_plan(model, find_sites(model), ratio, importance=importance, max_ratio=max_ratio,
                                round_to=round_to)
    before = {g.root: model.get_submodule(g.root) for g in groups}
    widths = {root: _out_channels(m) for root, m in before.items()}
    pruner = tp.pruner.MetaPruner(model, example_inputs, importance=make_importance(importance), pruning_ratio=ratio,
                                  global_pruning=True, max_pruning_ratio=max_ratio,
                                  ignored_layers=[classifier_of(model)], round_to=round_to)
    prepare_importance(model, importance, calibration)
    pruner.step()
    return {root: local_ratio(widths[root] - _out_channels(m), widths[root]) for root, m in before.items()}


def _out_channels(module: nn.Module) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    raise TypeError(f"a group root must be a Conv2d or Linear, not {type(module).__name__}")
