"""Search units: which groups share one searchable ratio (``prune.granularity``).

``group`` searches every group alone; ``block`` ties the groups whose root lies in one building block (the nearest
ancestor module that is not an ``nn.Sequential``: a ResNet BasicBlock/Bottleneck, a MobileNet InvertedResidual,
...; a Transformer block's heads and MLP neurons), ``stage`` ties the groups whose root's output has one spatial
resolution, ``global`` ties everything.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn

from ..torch_state import hooked_pass
from .groups import PruneGroup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchUnit:
    """One searchable ratio: the groups it ties together."""

    name: str
    roots: tuple[str, ...]


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
            out = output[0] if isinstance(output, tuple) else output  # attention returns (output, weights)
            sizes.setdefault(root, tuple(out.shape[2:]))
        return hook

    hooked_pass(model, example_inputs, lambda: [model.get_submodule(r).register_forward_hook(recorder(r))
                                                for r in roots])
    return sizes


def search_units(model: nn.Module, groups: list[PruneGroup], granularity: str,
                 example_inputs: torch.Tensor) -> list[SearchUnit]:
    """Tie groups into the searchable units of ``granularity`` (see the module docstring).

    ``block`` and ``stage`` fall back to ``group`` (and log a warning) when the model has no such
    structure: blocks that each hold one group (e.g. VGG, or a custom model whose layers are attributes of the
    model itself), one block or one resolution for everything (a custom wrapper module, an MLP). Searching that
    would be ``group`` or ``global`` under another name.
    """
    units = _tie(model, groups, granularity, example_inputs)
    if granularity in ("block", "stage") and len(groups) > 1 and len(units) in (1, len(groups)):
        what = "every group is its own block" if len(units) == len(groups) and granularity == "block" else (
            "every group is at its own resolution" if len(units) == len(groups) else
            f"all {len(groups)} groups fall in one {granularity}")
        log.warning("prune.granularity %r finds no %ss in %s (%s); searching per group instead "
                    "(prune.granularity: group)", granularity, granularity, type(model).__name__, what)
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
        key = {g.root: g.block or _block_of(model, g.root) for g in groups}
    elif granularity == "stage":
        sizes = _resolution_of(model, roots, example_inputs)
        key = {r: "stage@" + "x".join(map(str, sizes.get(r, ()))) or "flat" for r in roots}
    else:
        raise ValueError(f"unknown granularity {granularity!r}")
    tied: dict[str, list[str]] = defaultdict(list)
    for r in roots:
        tied[key[r]].append(r)
    return [SearchUnit(name, tuple(members)) for name, members in tied.items()]
