"""Transformer blocks as search units: whole attention heads and MLP neurons per block, removed physically.

A ViT or BERT block has two prunable widths that do not couple across blocks: its attention heads (q, k and v
lose a head's rows, the output projection its columns; the head size stays, so attention stays valid and fast)
and its MLP's hidden neurons (the up projection's rows, the down projection's columns). The residual stream's
width couples every block and is left alone. Torch-Pruning's DependencyGraph does not see heads in either
torchvision's fused ``nn.MultiheadAttention`` or Hugging Face's attention, so moprune finds these sites by module
structure and cuts them with Torch-Pruning's Linear pruning functions; the kept head and neuron indices are the
record (``pruning.json``) that rebuilds the shape on a fresh dense model.

Recognised layouts (``find_sites``): torchvision's ViT (``HeadAttention`` after ``prunable_form``, ``MLPBlock``) and
Swin v1/v2 (``WindowHeadAttention``: a head's bias-table column or bias-MLP row and logit scale go with it),
Hugging Face BERT/RoBERTa-style layers (``attention.self.query/key/value``, ``attention.output.dense``,
``intermediate.dense``, ``output.dense``), DistilBERT (``q_lin``/``k_lin``/``v_lin``/``out_lin``, ``ffn.lin1/lin2``)
and the q_proj/k_proj/v_proj/o_proj layout with a two-Linear MLP
(Hugging Face's ViT in transformers 5). Anything else is searched by its DependencyGraph groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from .attention import HeadAttention
from .window_attention import WindowHeadAttention

CHANNELS, HEADS, NEURONS = "channels", "heads", "neurons"
NEURON_MULTIPLE = 8  # MLP widths snap to multiples of this (``prune.round_to`` overrides): what GEMM kernels like


@dataclass(frozen=True)
class Site:
    """One prunable width of one block: its heads (``kind`` heads) or its MLP neurons (``kind`` neurons).

    ``rows`` lose output features (q, k, v; the MLP's up projection), ``cols`` input features (the attention's
    output projection; the MLP's down projection); ``unit`` features make one head (the head size) or one neuron.
    ``heads_attr`` (and ``width_attr``) name the attention module's head count (and total width) attributes, which
    pruning keeps true.
    """

    root: str  # the plan's key: the attention module, or the MLP's container
    block: str
    kind: str
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    count: int  # heads, or neurons
    unit: int
    heads_attr: str | None = None
    width_attr: str | None = None
    head_rows: tuple[str, ...] = ()  # Linear layers with one output row per head (Swin v2's bias MLP)
    head_params: tuple[tuple[str, int], ...] = ()  # (parameter, dim) with one slice per head (Swin's bias table)


def _linears(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def _is_linear(module: nn.Module, *names: str) -> bool:
    return all(isinstance(getattr(module, n, None), nn.Linear) for n in names)


def _attention(prefix: str, name: str, child: nn.Module) -> Site | None:
    """The head site of ``child`` (a block's child called ``name``) if it is an attention layout moprune knows:
    moprune's ``HeadAttention`` and ``WindowHeadAttention`` (Swin); Hugging Face's q_proj/k_proj/v_proj/o_proj (ViT
    in transformers 5, Llama-style, without grouped key/value heads); DistilBERT's q_lin/k_lin/v_lin/out_lin; or
    BERT's ``attention.self`` (query/key/value) with ``attention.output.dense``."""
    root = prefix + name
    if isinstance(child, HeadAttention):
        return Site(root, prefix[:-1], HEADS, (f"{root}.q", f"{root}.k", f"{root}.v"), (f"{root}.out_proj",),
                    child.num_heads, child.head_dim, "num_heads")
    if isinstance(child, WindowHeadAttention):
        return Site(root, prefix[:-1], HEADS, (f"{root}.q", f"{root}.k", f"{root}.v"), (f"{root}.proj",),
                    child.num_heads, child.head_dim, "num_heads",
                    head_rows=tuple(f"{root}.{n}" for n in child.head_rows()),
                    head_params=tuple((f"{root}.{n}", d) for n, d in child.head_params()))
    heads = getattr(child, "num_attention_heads", None)
    if (_is_linear(child, "q_proj", "k_proj", "v_proj", "o_proj") and isinstance(heads, int)
            and isinstance(getattr(child, "head_dim", None), int)
            and getattr(child, "num_key_value_heads", heads) == heads):
        return Site(root, prefix[:-1], HEADS, tuple(f"{root}.{p}_proj" for p in "qkv"), (f"{root}.o_proj",), heads,
                    child.head_dim, "num_attention_heads")
    if (_is_linear(child, "q_lin", "k_lin", "v_lin", "out_lin") and isinstance(getattr(child, "n_heads", None), int)
            and isinstance(getattr(child, "attention_head_size", None), int)):  # DistilBERT
        return Site(root, prefix[:-1], HEADS, tuple(f"{root}.{p}_lin" for p in "qkv"), (f"{root}.out_lin",),
                    child.n_heads, child.attention_head_size, "n_heads")
    for inner_name in ("self", "attention"):
        inner = getattr(child, inner_name, None)
        output = getattr(child, "output", None)
        if (inner is not None and _is_linear(inner, "query", "key", "value") and output is not None
                and _is_linear(output, "dense") and isinstance(getattr(inner, "num_attention_heads", None), int)):
            at = f"{root}.{inner_name}"
            return Site(at, prefix[:-1], HEADS, (f"{at}.query", f"{at}.key", f"{at}.value"), (f"{root}.output.dense",),
                        inner.num_attention_heads, inner.attention_head_size, "num_attention_heads", "all_head_size")
    return None


def find_sites(model: nn.Module) -> list[Site]:
    """The model's head and neuron sites in module order (none for a model without recognised blocks).

    A block is a module with one recognised attention child; its MLP is a sibling holding exactly two Linear layers
    that map the stream's width out and back (torchvision's ``MLPBlock``, Hugging Face's ``mlp.fc1/fc2``), or BERT's
    ``intermediate.dense`` with ``output.dense``.
    """
    sites: list[Site] = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        children = dict(module.named_children())
        found = [(n, site) for n, c in children.items() if (site := _attention(prefix, n, c)) is not None]
        if len(found) != 1:
            continue
        a_name, attention = found[0]
        sites.append(attention)
        width = model.get_submodule(attention.rows[0]).in_features
        if _is_linear(children.get("intermediate"), "dense") and _is_linear(children.get("output"), "dense"):
            sites.append(Site(f"{prefix}intermediate", name, NEURONS, (f"{prefix}intermediate.dense",),
                              (f"{prefix}output.dense",), module.intermediate.dense.out_features, 1))
            continue
        for c_name, child in children.items():
            mlp = _mlp_of(child, width) if c_name != a_name else None
            if mlp is not None:
                up, down = mlp
                sites.append(Site(prefix + c_name, name, NEURONS, (f"{prefix}{c_name}.{up}",),
                                  (f"{prefix}{c_name}.{down}",), child.get_submodule(up).out_features, 1))
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
    kept = set(keep)
    dropped = [u for u in range(site.count) if u not in kept]
    if not dropped:
        return
    drop = _features(site, dropped)
    for name in site.rows:
        tp.prune_linear_out_channels(model.get_submodule(name), drop)
    for name in site.cols:
        tp.prune_linear_in_channels(model.get_submodule(name), drop)
    for name in site.head_rows:
        tp.prune_linear_out_channels(model.get_submodule(name), dropped)
    for name, dim in site.head_params:
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        old = getattr(owner, attr)
        index = torch.tensor(sorted(kept), device=old.device)
        setattr(owner, attr, nn.Parameter(old.detach().index_select(dim, index), requires_grad=old.requires_grad))
    if site.heads_attr is not None:  # the head size stays; the count (and total width) are the module's bookkeeping
        attention = model.get_submodule(site.root)
        setattr(attention, site.heads_attr, len(keep))
        if site.width_attr is not None:
            setattr(attention, site.width_attr, len(keep) * site.unit)


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
        raw = [(scores(model, s, importance), s) for s in of_kind]
        normed = [(v / v.mean().clamp_min(1e-12), s) for v, s in raw]
        pooled = torch.cat([v for v, _ in normed])
        n_remove = int(ratio * pooled.numel())
        threshold = pooled.sort().values[n_remove - 1] if n_remove > 0 else -float("inf")
        for values, site in normed:
            wanted = min(int((values <= threshold).sum()) / site.count, max_ratio)
            kept = kept_count(site, min(wanted, 0.999999), round_to)
            plan[site.root] = round((site.count - kept) / site.count, 6)
    return plan
