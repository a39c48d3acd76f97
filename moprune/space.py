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
from collections.abc import Callable
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
                 example_inputs: torch.Tensor, *, warn: Callable[[str], None] = print) -> list[SearchUnit]:
    """Tie groups into the searchable units of ``granularity`` (see the module docstring).

    ``block`` and ``stage`` fall back to ``group`` (and say so through ``warn``) when the model has no such
    structure: blocks that each hold one group (e.g. VGG, or a custom model whose layers are attributes of the
    model itself), one block or one resolution for everything (a custom wrapper module, an MLP). Searching that
    would be ``group`` or ``global`` under another name.
    """
    units = _tie(model, groups, granularity, example_inputs)
    if granularity in ("block", "stage") and len(groups) > 1 and len(units) in (1, len(groups)):
        what = "every group is its own block" if len(units) == len(groups) and granularity == "block" else (
            "every group is at its own resolution" if len(units) == len(groups) else
            f"all {len(groups)} groups fall in one {granularity}")
        warn(f"warning: prune.granularity {granularity!r} finds no {granularity}s in {type(model).__name__} "
             f"({what}); searching per group instead (prune.granularity: group)")
        return _tie(model, groups, "group", example_inputs)
    return units


def _tie(model: nn.Module, groups: list[PruneGroup], granularity: str,
         example_inputs: torch.Tensor) -> list[SearchUnit]:
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


def _grid(value: float, ratio: RatioSpec) -> float:
    """Clip to [low, high] and snap to the step grid (rounded: 0.6000000001 is 0.6)."""
    value = min(max(value, ratio.low), ratio.high)
    if ratio.step:
        value = ratio.low + ratio.step * round((value - ratio.low) / ratio.step)
        value = min(value, ratio.high)
    return round(value, 6)


def _high_on_grid(ratio: RatioSpec) -> float:
    """Optuna wants high - low to be a multiple of step."""
    if not ratio.step:
        return ratio.high
    return round(ratio.low + ratio.step * int(round((ratio.high - ratio.low) / ratio.step, 9)), 6)


GLOBAL_PARAM = "ratio/global"


def offset_param(unit: SearchUnit) -> str:
    return f"offset/{unit.name}"


def suggest_plan(trial: optuna.trial.BaseTrial, units: list[SearchUnit], prune: PruneSpec) -> PrunePlan:
    """A global ratio plus one offset per unit, clipped to the ratio range, expanded to every group root.

    Parameterised this way every total sparsity from none to ``ratio.high`` is reachable by every sampler, and
    uniform plans are the points whose offsets are all zero (independent per-unit ratios concentrate the total
    sparsity in the middle of the range and never visit the cheap end).
    """
    r = prune.ratio
    step = r.step if r.step and r.high > r.low else None
    if r.high == r.low:
        base = r.low
    else:
        base = trial.suggest_float(GLOBAL_PARAM, r.low, _high_on_grid(r), step=step)
    plan: PrunePlan = {}
    tie_all = len(units) == 1 or prune.offset_max == 0
    for unit in units:
        offset = 0.0
        if not tie_all:
            # rounded so that Optuna (which checks divisibility on the decimal strings) keeps the range as given
            span = prune.offset_max if not step else round(step * int(round(prune.offset_max / step, 9)), 6)
            if span > 0:
                offset = trial.suggest_float(offset_param(unit), -span, span, step=step)
        for root in unit.roots:
            plan[root] = _grid(base + offset, r)
    return plan


def plan_params(units: list[SearchUnit], prune: PruneSpec, base: float,
                offsets: dict[str, float] | None = None) -> dict[str, float]:
    """Trial parameters for an enqueued plan: a global ratio and per-unit offsets (default zero: uniform)."""
    r = prune.ratio
    params: dict[str, float] = {}
    if r.high != r.low:
        params[GLOBAL_PARAM] = _grid(base, r)
    if len(units) > 1 and prune.offset_max > 0:
        for unit in units:
            params[offset_param(unit)] = round((offsets or {}).get(unit.name, 0.0), 6)
    return params
