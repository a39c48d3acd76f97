"""The search space: the model's prunable units and how a trial turns into a PrunePlan.

The unit of search is a Torch-Pruning DependencyGraph *group* (layers coupled by residual additions or depthwise
convolutions share their channels, so they share one ratio). ``granularity`` ties groups further:
``block`` ties the groups whose root lies in one building block (the nearest ancestor module that is not an
``nn.Sequential``: a ResNet BasicBlock/Bottleneck, a MobileNet InvertedResidual, ...), ``stage`` ties the groups whose
root's output has one spatial resolution, ``global`` ties everything to one ratio.

Plans are keyed by the *name* of each group's root module, never by module objects or position: names survive a
``deepcopy`` and tracing order, objects do not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import optuna
import torch
import torch_pruning as tp
from torch import nn

from .models import classifier_of
from .spec import PruneSpec, RatioSpec

#: group root name -> pruning ratio (fraction of out-channels removed)
PrunePlan = dict[str, float]


@dataclass(frozen=True)
class PruneGroup:
    """One DependencyGraph group: its root layer, every coupled layer, and the root's out-channels."""

    root: str
    members: tuple[str, ...]
    channels: int


@dataclass(frozen=True)
class SearchUnit:
    """One searchable ratio: the groups it ties together."""

    name: str
    roots: tuple[str, ...]


def discover_groups(model: nn.Module, example_inputs: torch.Tensor) -> list[PruneGroup]:
    """The model's prunable groups in module order; the classifier is never pruned."""
    names = {m: n for n, m in model.named_modules()}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    groups = []
    for group in graph.get_all_groups(ignored_layers=[classifier_of(model)],
                                      root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep.target.module
        members = sorted({names[d.target.module] for d, _ in group if d.target.module in names}
                         | {names[root]})
        groups.append(PruneGroup(names[root], tuple(members), graph.get_out_channels(root)))
    order = {n: i for i, n in enumerate(names.values())}
    return sorted(groups, key=lambda g: order[g.root])


def _block_of(model: nn.Module, name: str) -> str:
    """The nearest ancestor of ``name`` that is not a Sequential (and not the model); else ``name`` itself."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:depth])
        if not isinstance(model.get_submodule(prefix), nn.Sequential):
            return prefix
    return name


def _resolution_of(model: nn.Module, roots: list[str], example_inputs: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Spatial size of each root's output, recorded with forward hooks."""
    sizes: dict[str, tuple[int, ...]] = {}

    def recorder(root: str):
        def hook(_module, _inputs, output) -> None:
            sizes.setdefault(root, tuple(output.shape[2:]))
        return hook

    hooks = [model.get_submodule(r).register_forward_hook(recorder(r)) for r in roots]
    try:
        with torch.no_grad():
            model.eval()(example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def search_units(model: nn.Module, groups: list[PruneGroup], granularity: str,
                 example_inputs: torch.Tensor) -> list[SearchUnit]:
    """Tie groups into the searchable units of ``granularity`` (see the module docstring)."""
    roots = [g.root for g in groups]
    if granularity == "group":
        return [SearchUnit(r, (r,)) for r in roots]
    if granularity == "global":
        return [SearchUnit("global", tuple(roots))]
    if granularity == "block":
        key = {r: _block_of(model, r) for r in roots}
    elif granularity == "stage":
        sizes = _resolution_of(model, roots, example_inputs)
        key = {r: "stage@" + "x".join(map(str, sizes.get(r, ()))) or "flat" for r in roots}
    else:
        raise ValueError(f"unknown granularity {granularity!r}")
    tied: dict[str, list[str]] = defaultdict(list)
    for r in roots:
        tied[key[r]].append(r)
    return [SearchUnit(name, tuple(members)) for name, members in tied.items()]


def _suggest_ratio(trial: optuna.trial.BaseTrial, name: str, ratio: RatioSpec) -> float:
    if ratio.low == ratio.high:
        return ratio.low
    step = ratio.step
    if step is not None and (ratio.high - ratio.low) / step < 1:
        step = None
    if step is not None:  # Optuna wants high - low to be a multiple of step
        high = ratio.low + step * int(round((ratio.high - ratio.low) / step, 9))
        return round(trial.suggest_float(name, ratio.low, high, step=step), 6)
    return trial.suggest_float(name, ratio.low, ratio.high)


def suggest_plan(trial: optuna.trial.BaseTrial, units: list[SearchUnit], prune: PruneSpec) -> PrunePlan:
    """One ratio per unit from the trial, expanded to every group root the unit ties."""
    plan: PrunePlan = {}
    for unit in units:
        value = _suggest_ratio(trial, f"ratio/{unit.name}", prune.ratio)
        for root in unit.roots:
            plan[root] = value
    return plan


def uniform_params(units: list[SearchUnit], value: float) -> dict[str, float]:
    """The trial parameters of a plan that prunes every unit by ``value`` (for enqueued seed trials)."""
    return {f"ratio/{u.name}": value for u in units}
