"""Swin's shifted-window attention with heads that can be removed (torchvision's ``swin_*`` and ``swin_v2_*``).

torchvision's ``ShiftedWindowAttention`` fuses q, k and v into one ``qkv`` layer and derives its head size from the
input width (``C // num_heads``): with a head removed the reshape no longer adds up. Each head also owns a column
of the relative-position bias table (v1), or a row of the bias MLP's last layer and a logit scale (v2), which must
go with it. ``WindowHeadAttention`` is the same computation with separate q/k/v projections and an explicit head
size; ``prunable_form`` swaps it in before the dense model is measured, so dense and pruned models run one code
path. Outputs match torchvision's to float rounding (tested).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class WindowHeadAttention(nn.Module):
    """Window attention on ``(batch, height, width, channels)`` maps, ``num_heads`` heads of ``head_dim`` each.

    A head's weights: ``head_dim`` rows of ``q``, ``k``, ``v``, ``head_dim`` columns of ``proj``, and one column of
    ``relative_position_bias_table`` (v1) or one row of ``cpb_mlp[2]`` and one ``logit_scale`` (v2, cosine attention).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, window_size: list[int], shift_size: list[int],
                 v2: bool, qkv_bias: bool = True, proj_bias: bool = True, attention_dropout: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        inner = num_heads * head_dim
        self.q = nn.Linear(dim, inner, bias=qkv_bias)
        self.k = nn.Linear(dim, inner, bias=qkv_bias and not v2)  # v2 zeroes the key bias in every call
        self.v = nn.Linear(dim, inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.num_heads, self.head_dim, self.v2 = num_heads, head_dim, v2
        self.window_size, self.shift_size = list(window_size), list(shift_size)
        self.attention_dropout, self.dropout = attention_dropout, dropout

    @classmethod
    def from_swin(cls, swa: nn.Module) -> WindowHeadAttention:
        """The same attention with the same weights as torchvision's ``ShiftedWindowAttention(V2)`` ``swa``."""
        v2 = hasattr(swa, "logit_scale")
        dim, heads = swa.qkv.in_features, swa.num_heads
        new = cls(dim, heads, dim // heads, swa.window_size, swa.shift_size, v2, swa.qkv.bias is not None,
                  swa.proj.bias is not None, swa.attention_dropout, swa.dropout)
        with torch.no_grad():
            for i, layer in enumerate((new.q, new.k, new.v)):
                layer.weight.copy_(swa.qkv.weight[i * dim:(i + 1) * dim])
                if layer.bias is not None:
                    layer.bias.copy_(swa.qkv.bias[i * dim:(i + 1) * dim])
            new.proj.load_state_dict(swa.proj.state_dict())
        new.register_buffer("relative_position_index", swa.relative_position_index.clone())
        if v2:
            new.logit_scale = nn.Parameter(swa.logit_scale.detach().clone())
            new.cpb_mlp = swa.cpb_mlp
            new.register_buffer("relative_coords_table", swa.relative_coords_table.clone())
        else:
            new.relative_position_bias_table = nn.Parameter(swa.relative_position_bias_table.detach().clone())
        return new.to(swa.qkv.weight.device, swa.qkv.weight.dtype).train(swa.training)

    def head_params(self) -> tuple[tuple[str, int], ...]:
        """(parameter, dimension) pairs that hold one slice per head, besides the projections: cut with the heads."""
        return (("logit_scale", 0),) if self.v2 else (("relative_position_bias_table", 1),)

    def head_rows(self) -> tuple[str, ...]:
        """Linear layers with one output row per head (v2's bias MLP)."""
        return ("cpb_mlp.2",) if self.v2 else ()

    def _position_bias(self, tokens: int) -> torch.Tensor:
        table = (self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads) if self.v2
                 else self.relative_position_bias_table)
        bias = table[self.relative_position_index].view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
        return 16 * torch.sigmoid(bias) if self.v2 else bias

    def _shift_mask(self, pad_h: int, pad_w: int, shift: list[int], like: torch.Tensor) -> torch.Tensor:
        """torchvision's mask: -100 between tokens that the cyclic shift brought into one window from apart."""
        wh, ww = self.window_size
        mask = like.new_zeros((pad_h, pad_w))
        count = 0
        for h in ((0, -wh), (-wh, -shift[0]), (-shift[0], None)):
            for w in ((0, -ww), (-ww, -shift[1]), (-shift[1], None)):
                mask[h[0]:h[1], w[0]:w[1]] = count
                count += 1
        mask = mask.view(pad_h // wh, wh, pad_w // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (ww - width % ww) % ww, 0, (wh - height % wh) % wh))
        _, pad_h, pad_w, _ = x.shape
        shift = [0 if wh >= pad_h else self.shift_size[0], 0 if ww >= pad_w else self.shift_size[1]]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = (pad_h // wh) * (pad_w // ww)
        x = x.view(batch, pad_h // wh, wh, pad_w // ww, ww, channels).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(batch * windows, wh * ww, channels)
        tokens = x.size(1)

        def heads(layer: nn.Linear) -> torch.Tensor:
            return layer(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

        q, k, v = heads(self.q), heads(self.k), heads(self.v)
        if self.v2:  # cosine attention
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        else:
            attn = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
        attn = attn + self._position_bias(tokens)
        if sum(shift) > 0:
            attn = attn.view(batch, windows, self.num_heads, tokens, tokens)
            attn = (attn + self._shift_mask(pad_h, pad_w, shift, x).unsqueeze(1).unsqueeze(0))
            attn = attn.view(-1, self.num_heads, tokens, tokens)
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout, training=self.training)
        x = (attn @ v).transpose(1, 2).reshape(batch * windows, tokens, self.num_heads * self.head_dim)
        x = F.dropout(self.proj(x), p=self.dropout, training=self.training)
        x = x.view(batch, pad_h // wh, pad_w // ww, wh, ww, channels).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(batch, pad_h, pad_w, channels)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :height, :width, :].contiguous()

    def attention_macs(self, hidden: torch.Tensor) -> int:
        """Multiply-accumulates of one call's q·kᵀ and attention·v on ``hidden`` (one sample): per window,
        2·heads·tokens²·head size, over the padded map's windows."""
        _, height, width, _ = hidden.shape
        wh, ww = self.window_size
        windows = math.ceil(height / wh) * math.ceil(width / ww)
        return 2 * self.num_heads * windows * (wh * ww) ** 2 * self.head_dim
