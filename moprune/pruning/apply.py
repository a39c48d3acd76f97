"""Apply a PrunePlan to a copy of the dense model, removing channels physically (Torch-Pruning MetaPruner)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from .depth import drop_blocks, inside, split_history, split_plan
from .groups import classifier_of
from .plan import PrunePlan
from .transformer import find_sites, is_site_history, prune_sites, replay


@dataclass
class PrunedModel:
    model: nn.Module
    history: list[Any]  # Torch-Pruning's pruning_history(): JSON-able, replays on a fresh dense model
    channels: dict[str, int]  # layer name -> kept out-channels (Conv2d / Linear)
    # unstructured / N:M sparsity: parameter name -> 0/1 mask the fine-tune must hold (empty for channel pruning)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)


def make_importance(name: str) -> tp.importance.Importance:
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "random":
        return tp.importance.RandomImportance()
    raise ValueError(f"unknown importance {name!r}")


def prepare_importance(model: nn.Module, importance: str,
                       calibration: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """Taylor importance scores channels by weight x gradient: give the model the gradients of one batch first."""
    if importance != "taylor":
        return
    if calibration is None:
        raise ValueError("taylor importance needs a calibration batch")
    model.zero_grad()
    nn.functional.cross_entropy(model(calibration[0]), calibration[1]).backward()


def kept_channels(model: nn.Module) -> dict[str, int]:
    """Layer name -> kept out-channels (Conv2d, Linear); for a Transformer also each block's attention module
    -> kept heads and MLP container -> kept neurons (the group roots, which the report tabulates)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            out[name] = m.out_features
    out.update({site.root: site.count for site in find_sites(model)})
    return out


def apply_plan(dense: nn.Module, plan: PrunePlan, example_inputs: torch.Tensor, *, importance: str = "l2",
               round_to: int | None = None, calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
               steps: int = 1, between: Callable[[nn.Module, int], None] | None = None) -> PrunedModel:
    """Prune a deep copy of ``dense`` by ``plan`` (group root name -> ratio); ``dense`` is left untouched.

    ``taylor`` importance needs gradients: pass a ``calibration`` batch (images, labels). With ``steps`` > 1 the
    ratios are reached in equal steps (Torch-Pruning's ``iterative_steps``: step k keeps
    ``int(channels * (1 - ratio * k / steps))`` of each group's original channels, so the last step keeps exactly
    what one shot keeps) and ``between(model, k)`` runs after every step but the last (a brief fine-tune); each
    step ranks the channels again on the weights as they are then.

    A plan's ``drop:<block>`` keys (``moprune.pruning.depth``) replace those residual blocks by identities first;
    the ratios of groups rooted inside a dropped block go with it. The history then starts with the dropped blocks.
    """
    model = copy.deepcopy(dense).eval()
    plan, dropped = split_plan(plan)
    if dropped:
        if find_sites(model):
            raise ValueError("dropping blocks of a Transformer is not supported: its plans prune heads and neurons")
        drop_blocks(model, dropped)
        plan = {k: r for k, r in plan.items() if not inside(k, dropped)}
    if find_sites(model):  # a Transformer: heads and MLP neurons per block (transformer.py)
        history = prune_sites(model, {k: float(r) for k, r in plan.items() if r > 0}, importance=importance,
                              round_to=round_to, steps=steps, between=between,
                              prepare=lambda m: prepare_importance(m, importance, calibration))
        return PrunedModel(model.eval(), history, kept_channels(model))
    # Keys must be modules of the copy being pruned: Torch-Pruning silently ignores modules of another model.
    ratios = {model.get_submodule(name): float(r) for name, r in plan.items() if r > 0}
    if ratios:
        pruner = tp.pruner.MetaPruner(
            model, example_inputs, importance=make_importance(importance), pruning_ratio=0.0,
            pruning_ratio_dict=ratios, ignored_layers=[classifier_of(model)], round_to=round_to,
            iterative_steps=steps,
        )
        for k in range(steps):
            prepare_importance(model, importance, calibration)
            pruner.step()
            model.zero_grad(set_to_none=True)
            if between is not None and k < steps - 1:
                between(model, k)
                model.eval()
        history = pruner.pruning_history()
    else:
        history = []
    if dropped:
        history = [{"dropped": dropped}, *history]
    return PrunedModel(model.eval(), history, kept_channels(model))


def replay_history(dense: nn.Module, history: list[Any], example_inputs: torch.Tensor) -> nn.Module:
    """Rebuild a pruned shape on a fresh dense model from a recorded pruning history (in place; returned).

    A Transformer's history (kept heads and neurons per site) needs the model in ``prunable_form``; a history that
    starts with dropped blocks drops them before it removes channels."""
    dropped, history = split_history(history)
    drop_blocks(dense, dropped)
    if is_site_history(history):
        return replay(dense, history)
    if history:
        graph = tp.DependencyGraph().build_dependency(dense, example_inputs=example_inputs)
        graph.load_pruning_history(history)
    return dense
