"""The model's prunable groups: Torch-Pruning DependencyGraph groups, found once on the dense model.

Layers coupled by residual additions or depthwise convolutions share their channels, so they form one group and share
one ratio (two ratios for one group would silently let one win). The classifier is never pruned. A Transformer's
groups are its blocks' attention heads and MLP neurons instead (``transformer.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from ..errors import MopruneError
from .transformer import CHANNELS, find_sites


def classifier_of(model: nn.Module) -> nn.Module:
    """The output layer, which pruning must never touch: the last Linear (or, failing that, the last Conv2d)."""
    for kind in (nn.Linear, nn.Conv2d):
        layers = [m for m in model.modules() if isinstance(m, kind)]
        if layers:
            return layers[-1]
    raise MopruneError(f"{type(model).__name__} has no Linear or Conv2d layer to classify with")


@dataclass(frozen=True)
class PruneGroup:
    """One DependencyGraph group: its root layer, every coupled layer, and the root's out-channels.

    ``outputs`` are the Conv2d/Linear layers whose *output* channels the group removes (the root and the layers a
    residual sum couples to it): the layers whose weights unstructured and N:M sparsity thin for this group.
    """

    root: str
    members: tuple[str, ...]
    channels: int  # what the ratio removes a fraction of: channels, or a Transformer block's heads or neurons
    outputs: tuple[str, ...] = ()
    kind: str = CHANNELS  # channels | heads | neurons
    block: str | None = None  # a Transformer group's block (``prune.granularity: block`` ties its heads and MLP)


def discover_groups(model: nn.Module, example_inputs: torch.Tensor) -> list[PruneGroup]:
    """The model's prunable groups in module order; the classifier is never pruned.

    A model with recognised Transformer blocks is searched by heads and MLP neurons per block, and nothing else:
    its patch embedding and residual width couple every block.
    """
    sites = find_sites(model)
    if sites:
        return [PruneGroup(s.root, s.rows + s.cols, s.count, s.rows, s.kind, s.block) for s in sites]
    names = {m: n for n, m in model.named_modules()}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    groups = []
    for group in graph.get_all_groups(ignored_layers=[classifier_of(model)],
                                      root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep.target.module
        members = sorted({names[d.target.module] for d, _ in group if d.target.module in names}
                         | {names[root]})
        outputs = sorted({names[d.target.module] for d, _ in group
                          if d.target.module in names and isinstance(d.target.module, (nn.Conv2d, nn.Linear))
                          and graph.is_out_channel_pruning_fn(d.handler)} | {names[root]})
        groups.append(PruneGroup(names[root], tuple(members), graph.get_out_channels(root), tuple(outputs)))
    order = {n: i for i, n in enumerate(names.values())}
    return sorted(groups, key=lambda g: order[g.root])
