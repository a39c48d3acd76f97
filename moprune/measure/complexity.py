"""MACs and parameter counts through Torch-Pruning's counter, plus the attention products it cannot see."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from ..torch_state import hooked_pass


@dataclass(frozen=True)
class Complexity:
    macs: int  # multiply-accumulates of one sample's forward pass
    params: int


def count_complexity(model: nn.Module, example_inputs: torch.Tensor) -> Complexity:
    """Count for a single sample, whatever the batch size of ``example_inputs``."""
    one = example_inputs[:1]
    macs, params = tp.utils.count_ops_and_params(model, one)
    return Complexity(int(macs) + attention_macs(model, one), int(params))


def _products(module: nn.Module, hidden: torch.Tensor) -> int:
    """q·kᵀ and attention·v of one self-attention call on ``hidden`` (batch, length, width): 2·heads·L²·head size.

    Torch-Pruning's counter sees modules, and these products are functions (``scaled_dot_product_attention``,
    ``matmul``) inside an attention module, counted by no module. Recognised by the attributes the modules
    carry: moprune's ``HeadAttention`` and ``WindowHeadAttention`` (``attention_macs(hidden)``) and Hugging
    Face's (``num_attention_heads`` or ``n_heads``, with ``attention_head_size`` or ``head_dim``); torchvision's
    ``nn.MultiheadAttention`` is counted by Torch-Pruning itself.
    """
    if hasattr(module, "attention_macs"):
        return int(module.attention_macs(hidden))
    length = hidden.shape[1]
    size = getattr(module, "attention_head_size", None) or module.head_dim
    heads = getattr(module, "num_attention_heads", None) or module.n_heads
    return 2 * int(heads) * length * length * int(size)


def _is_hf_attention(m: nn.Module) -> bool:
    """Hugging Face's attention modules by their attributes: BERT's (query, attention_head_size), DistilBERT's
    (q_lin, n_heads) and the q_proj/o_proj layout's (head_dim)."""
    if hasattr(m, "q_lin") and isinstance(getattr(m, "n_heads", None), int):  # DistilBERT
        return hasattr(m, "attention_head_size")
    if not isinstance(getattr(m, "num_attention_heads", None), int):
        return False
    return ((hasattr(m, "query") and hasattr(m, "attention_head_size"))
            or (hasattr(m, "q_proj") and isinstance(getattr(m, "head_dim", None), int)))


def attention_macs(model: nn.Module, one: torch.Tensor) -> int:
    """MACs of the attention products in one forward pass of one sample (0 for a model without attention)."""
    sites = [m for m in model.modules() if hasattr(m, "attention_macs") or _is_hf_attention(m)]
    if not sites:
        return 0
    total = [0]

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else next(iter(kwargs.values()))
        total[0] += _products(module, hidden)

    hooked_pass(model, one, lambda: [m.register_forward_pre_hook(hook, with_kwargs=True) for m in sites])
    return total[0]


