"""Transformer blocks as search units: whole attention heads and MLP neurons per block, removed physically.

A ViT or BERT block has two prunable widths that do not couple across blocks: its attention heads (q, k and v
lose a head's rows, the output projection its columns; the head size stays, so attention stays valid and fast)
and its MLP's hidden neurons (the up projection's rows, the down projection's columns). The residual stream's
width couples every block and is left alone. Torch-Pruning's DependencyGraph does not see heads in either
torchvision's fused ``nn.MultiheadAttention`` or Hugging Face's attention, so moprune finds these sites by module
structure and cuts them with Torch-Pruning's Linear pruning functions; the kept head and neuron indices are the
record (``pruning.json``) that rebuilds the shape on a fresh dense model.

Two layouts are recognised: a block holding a ``HeadAttention`` (torchvision's ViT after ``prunable_form``) and a
sibling with exactly two Linear layers (its MLP), and Hugging Face's BERT/ViT-style layers (``attention.self``
with ``query``/``key``/``value``, ``attention.output.dense``, ``intermediate.dense``, ``output.dense``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from .attention import HeadAttention

CHANNELS, HEADS, NEURONS = "channels", "heads", "neurons"
NEURON_MULTIPLE = 8  # MLP widths snap to multiples of this (``prune.round_to`` overrides): what GEMM kernels like


@dataclass(frozen=True)
class Site:
    """One prunable width of one block: its heads (``kind`` heads) or its MLP neurons (``kind`` neurons).

    ``rows`` lose output features (q, k, v; the MLP's up projection), ``cols`` input features (the attention's
    output projection; the MLP's down projection); ``unit`` features make one head (the head size) or one neuron.
    """

    root: str  # the plan's key: the attention module, or the MLP's container
    block: str
    kind: str
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    count: int  # heads, or neurons
    unit: int


def _linears(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def find_sites(model: nn.Module) -> list[Site]:
    """The model's head and neuron sites in module order (none for a model without recognised blocks)."""
    sites: list[Site] = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        children = dict(module.named_children())
        attention = [(n, c) for n, c in children.items() if isinstance(c, HeadAttention)]
        if len(attention) == 1:
            a_name, a = attention[0]
            root = prefix + a_name
            sites.append(Site(root, name, HEADS, (f"{root}.q", f"{root}.k", f"{root}.v"), (f"{root}.out_proj",),
                              a.num_heads, a.head_dim))
            for c_name, child in children.items():
                mlp = _mlp_of(child, a.q.in_features)
                if c_name != a_name and mlp is not None:
                    up, down = mlp
                    sites.append(Site(prefix + c_name, name, NEURONS, (f"{prefix}{c_name}.{up}",),
                                      (f"{prefix}{c_name}.{down}",), child.get_submodule(up).out_features, 1))
        elif _is_hf_layer(module):
            att = module.attention.self if hasattr(module.attention, "self") else module.attention.attention
            att_name = f"{prefix}attention.{'self' if hasattr(module.attention, 'self') else 'attention'}"
            sites.append(Site(att_name, name, HEADS, tuple(f"{att_name}.{p}" for p in ("query", "key", "value")),
                              (f"{prefix}attention.output.dense",), att.num_attention_heads, att.attention_head_size))
            sites.append(Site(f"{prefix}intermediate", name, NEURONS, (f"{prefix}intermediate.dense",),
                              (f"{prefix}output.dense",), module.intermediate.dense.out_features, 1))
    return sites


def _mlp_of(module: nn.Module, width: int) -> tuple[str, str] | None:
    """(up, down) Linear names if ``module`` is a two-Linear MLP on a ``width``-wide stream."""
    linears = _linears(module)
    if len(linears) != 2:
        return None
    (up_name, up), (down_name, down) = linears
    if up.in_features == width == down.out_features and up.out_features == down.in_features:
        return up_name, down_name
    return None


def _is_hf_layer(module: nn.Module) -> bool:
    att = getattr(module, "attention", None)
    inner = getattr(att, "self", None) or getattr(att, "attention", None)
    return (inner is not None and all(isinstance(getattr(inner, p, None), nn.Linear) for p in ("query", "key", "value"))
            and hasattr(inner, "num_attention_heads") and isinstance(getattr(att, "output", None), nn.Module)
            and isinstance(getattr(getattr(module, "intermediate", None), "dense", None), nn.Linear)
            and isinstance(getattr(getattr(module, "output", None), "dense", None), nn.Linear))


def kept_count(site: Site, ratio: float, round_to: int | None = None) -> int:
    """How many heads or neurons ``ratio`` keeps: rounded to the nearest head, or to the nearest multiple of
    ``round_to`` (default ``NEURON_MULTIPLE``) neurons; never zero (a block keeps one head, one multiple)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"{site.root}: ratio {ratio} would remove every {site.kind[:-1]}; ratios are in [0, 1)")
    if site.kind == HEADS:
        return max(1, min(site.count, round(site.count * (1 - ratio))))
    multiple = min(round_to or NEURON_MULTIPLE, site.count)
    return max(multiple, min(site.count, multiple * round(site.count * (1 - ratio) / multiple)))


def scores(model: nn.Module, site: Site, importance: str) -> torch.Tensor:
    """One score per head or neuron: the p-norm (l1, l2) or |weight x gradient| sum (taylor) over every weight
    the unit owns, in ``rows`` and ``cols``; random for ``random``."""
    if importance == "random":
        return torch.rand(site.count)
    if importance not in ("l1", "l2", "taylor"):
        raise ValueError(f"prune.importance {importance!r} does not apply to attention heads and MLP neurons "
                         "(they have no BatchNorm); use l1, l2, taylor or random")
    total = torch.zeros(site.count)
    for names, dim in ((site.rows, 0), (site.cols, 1)):
        for layer_name in names:
            layer = model.get_submodule(layer_name)
            w = layer.weight.detach()
            if importance == "taylor":
                if layer.weight.grad is None:
                    raise ValueError("taylor importance needs a calibration batch's gradients")
                w = (w * layer.weight.grad).abs()
            per = w.transpose(0, dim).reshape(site.count, -1).float().cpu()
            total += per.abs().sum(1) if importance in ("l1", "taylor") else per.pow(2).sum(1)
    return total


def _features(site: Site, units: list[int]) -> list[int]:
    return [u * site.unit + i for u in units for i in range(site.unit)]


def cut(model: nn.Module, site: Site, keep: list[int]) -> None:
    """Keep only heads/neurons ``keep`` (indices into the site as it is now) of ``model``, in place."""
    drop = _features(site, [u for u in range(site.count) if u not in set(keep)])
    if not drop:
        return
    for name in site.rows:
        tp.prune_linear_out_channels(model.get_submodule(name), drop)
    for name in site.cols:
        tp.prune_linear_in_channels(model.get_submodule(name), drop)
    if site.kind == HEADS:
        attention = model.get_submodule(site.root)
        if isinstance(attention, HeadAttention):
            attention.num_heads = len(keep)
        else:  # Hugging Face: the head size stays; these two are its bookkeeping
            attention.num_attention_heads = len(keep)
            attention.all_head_size = len(keep) * site.unit


def prune_sites(model: nn.Module, ratios: dict[str, float], *, importance: str = "l2", round_to: int | None = None,
                steps: int = 1, prepare: Callable[[nn.Module], None] | None = None,
                between: Callable[[nn.Module, int], None] | None = None) -> list[dict[str, Any]]:
    """Prune ``model`` in place to ``ratios`` (site root -> ratio) in ``steps`` equal steps; the history.

    Each step ranks the units again (``prepare`` gives the model a calibration batch's gradients first, for taylor)
    and keeps the best; ``between(model, k)`` runs after every step but the last. The last step keeps exactly the
    one-shot counts. The history lists, per step and site, the kept indices: ``replay`` rebuilds the shape.
    """
    original = {s.root: s for s in find_sites(model)}
    unknown = sorted(set(ratios) - set(original))
    if unknown:
        raise ValueError(f"not head or MLP sites of {type(model).__name__}: {', '.join(unknown)}")
    history: list[dict[str, Any]] = []
    for k in range(1, steps + 1):
        if prepare is not None:
            prepare(model)
        now = {s.root: s for s in find_sites(model)}
        for root, ratio in ratios.items():
            site = now[root]
            target = kept_count(original[root], ratio * k / steps, round_to)
            if target >= site.count:
                continue
            ranked = scores(model, site, importance).argsort(descending=True)[:target]
            keep = sorted(int(i) for i in ranked)
            cut(model, site, keep)
            history.append({"site": root, "kind": site.kind, "keep": keep})
        model.zero_grad(set_to_none=True)
        if between is not None and k < steps:
            between(model, k - 1)
            model.eval()
    return history


def is_site_history(history: list[Any]) -> bool:
    return bool(history) and all(isinstance(h, dict) and "site" in h for h in history)


def replay(model: nn.Module, history: list[dict[str, Any]]) -> nn.Module:
    """Rebuild a pruned shape on a fresh dense model (in ``prunable_form``) from its history; in place."""
    for entry in history:
        site = {s.root: s for s in find_sites(model)}[entry["site"]]
        cut(model, site, list(entry["keep"]))
    return model


def global_site_plan(model: nn.Module, sites: list[Site], ratio: float, *, importance: str = "l2",
                     max_ratio: float = 1.0, round_to: int | None = None) -> dict[str, float]:
    """Global pruning for heads and neurons: every head of the model ranked together (scores normalised by their
    site's mean, as Torch-Pruning's global pruner does), and separately every neuron; the lowest ``ratio`` of each
    go, capped at ``max_ratio`` of any one site; as a plan (site -> ratio) that ``prune_sites`` reproduces."""
    plan: dict[str, float] = {}
    for kind in (HEADS, NEURONS):
        of_kind = [s for s in sites if s.kind == kind]
        if not of_kind:
            continue
        normed = [(scores(model, s, importance) / scores(model, s, importance).mean().clamp_min(1e-12), s)
                  for s in of_kind]
        pooled = torch.cat([v for v, _ in normed])
        n_remove = int(ratio * pooled.numel())
        threshold = pooled.sort().values[n_remove - 1] if n_remove > 0 else -float("inf")
        for values, site in normed:
            wanted = min(int((values <= threshold).sum()) / site.count, max_ratio)
            kept = kept_count(site, min(wanted, 0.999999), round_to)
            plan[site.root] = round((site.count - kept) / site.count, 6)
    return plan
