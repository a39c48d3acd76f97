"""MACs and parameter counts through Torch-Pruning's counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn


@dataclass(frozen=True)
class Complexity:
    macs: int  # multiply-accumulates of one sample's forward pass
    params: int


def count_complexity(model: nn.Module, example_inputs: torch.Tensor) -> Complexity:
    """Count for a single sample, whatever the batch size of ``example_inputs``."""
    macs, params = tp.utils.count_ops_and_params(model, example_inputs[:1])
    return Complexity(int(macs), int(params))
