"""Self-attention whose heads can be removed: separate q/k/v projections, the head count a plain attribute.

``nn.MultiheadAttention`` (torchvision's ViT) fuses q, k and v into one ``in_proj_weight`` and derives its head size
from ``embed_dim``: with a head removed it no longer adds up, and Torch-Pruning prunes it only by embedding width.
``prunable_form`` swaps each one in a model for ``HeadAttention`` with the same weights and the same outputs, before
the dense model is measured, so the dense model and every pruned one run the same attention code (comparing
PyTorch's fused fast path with a pruned model's would put the kernel change in the speedup).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from .window_attention import WindowHeadAttention

log = logging.getLogger(__name__)


class HeadAttention(nn.Module):
    """Multi-head self-attention, called as torchvision's ``EncoderBlock`` calls ``nn.MultiheadAttention``
    (``batch_first``; returns ``(output, None)``), with ``num_heads`` heads of ``head_dim`` each.

    ``q``, ``k``, ``v`` map ``embed_dim`` to ``num_heads * head_dim`` and ``out_proj`` maps it back, so removing a
    head removes ``head_dim`` rows of the three projections and ``head_dim`` columns of ``out_proj``; attention
    itself runs in ``scaled_dot_product_attention`` (PyTorch's fused kernels on every device).
    """

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        inner = num_heads * head_dim
        self.q = nn.Linear(embed_dim, inner, bias=bias)
        self.k = nn.Linear(embed_dim, inner, bias=bias)
        self.v = nn.Linear(embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout

    @classmethod
    def from_multihead(cls, mha: nn.MultiheadAttention) -> HeadAttention:
        """The same attention with the same weights (only the plain self-attention form torchvision's ViT uses)."""
        if not (mha.batch_first and mha._qkv_same_embed_dim and mha.bias_k is None and not mha.add_zero_attn):
            raise ValueError("only batch_first self-attention without bias_k/add_zero_attn can be made prunable")
        embed = mha.embed_dim
        new = cls(embed, mha.num_heads, embed // mha.num_heads, mha.dropout, bias=mha.in_proj_bias is not None)
        with torch.no_grad():
            for i, proj in enumerate((new.q, new.k, new.v)):
                proj.weight.copy_(mha.in_proj_weight[i * embed:(i + 1) * embed])
                if mha.in_proj_bias is not None:
                    proj.bias.copy_(mha.in_proj_bias[i * embed:(i + 1) * embed])
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.to(mha.in_proj_weight.device, mha.in_proj_weight.dtype).train(mha.training)

    def _heads(self, proj: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return proj(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (batch, heads, len, dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                need_weights: bool = False, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        if need_weights:
            raise ValueError("HeadAttention does not return attention weights (need_weights=False)")
        key = query if key is None else key
        value = key if value is None else value
        mask = attn_mask
        if key_padding_mask is not None:  # True = ignore, as nn.MultiheadAttention reads it
            keep = ~key_padding_mask.bool()[:, None, None, :]
            mask = keep if mask is None else mask & keep
        out = F.scaled_dot_product_attention(self._heads(self.q, query), self._heads(self.k, key),
                                             self._heads(self.v, value), attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).flatten(2)), None

    def attention_macs(self, hidden: torch.Tensor) -> int:
        """Multiply-accumulates of one call's q·kᵀ and attention·v on ``hidden`` (one sample, (1, length, width);
        the projections are Linear layers, counted as such): what a MAC counter that sees only modules misses."""
        length = hidden.shape[1]
        return 2 * self.num_heads * length * length * self.head_dim


def _is_swin_attention(module: nn.Module) -> bool:
    """torchvision's ``ShiftedWindowAttention`` or its V2 (by class, so older torchvisions without V2 still work)."""
    return type(module).__name__ in ("ShiftedWindowAttention", "ShiftedWindowAttentionV2") and hasattr(module, "qkv")


def prunable_form(model: nn.Module) -> int:
    """Replace every ``nn.MultiheadAttention`` of ``model`` by an equivalent ``HeadAttention``, and every Swin
    window attention by an equivalent ``WindowHeadAttention`` (in place); how many.

    Loaded weights stay as they are (copied); a model that has none is left untouched.
    """
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(module, child_name, HeadAttention.from_multihead(child))
                swapped += 1
            elif _is_swin_attention(child):
                setattr(module, child_name, WindowHeadAttention.from_swin(child))
                swapped += 1
    if swapped:
        log.debug("%d attention modules of %s now prunable by head", swapped, type(model).__name__)
    return swapped
