"""Unstructured and N:M sparsity: weights zeroed in place, with masks the fine-tune holds.

Channel pruning removes channels, so every kernel does less work. Zeroing weights does not: a dense kernel
multiplies zeros as fast as anything else, which is why moprune measures these models exactly as it measures the
others and shows the ~1.0x it gets on dense kernels rather than a MACs count that would promise more. 2:4 (N:M)
sparsity is the pattern Ampere-and-newer GPUs' sparse tensor cores can run faster; on a CPU it is as slow as dense.

A plan's ratio means, per group (the layers whose output channels the group owns, ``PruneGroup.outputs``):
``unstructured``: that fraction of their weights, the smallest in magnitude across the group
(``torch.nn.utils.prune.global_unstructured`` with L1); ``nm``: any ratio above 0 gives every weight row of those
layers the N:M pattern (N of each M consecutive weights along the reduction dimension kept, by magnitude). N:M
applies to Linear layers and ungrouped convolutions whose reduction size (in-channels x kernel area) M divides;
other layers (a 3-channel stem, depthwise convolutions) are left dense.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .apply import PrunedModel, kept_channels
from .groups import PruneGroup
from .plan import PrunePlan

log = logging.getLogger(__name__)

SPARSE_METHODS = ("unstructured", "nm")


def parse_nm(text: str) -> tuple[int, int]:
    """``"2:4"`` -> (2, 4): N weights kept of every M."""
    n, _, m = text.partition(":")
    return int(n), int(m)


def nm_applies(layer: nn.Module, m: int) -> bool:
    """Whether a layer can carry an N:M pattern along its reduction dimension (a GEMM's K)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features % m == 0
    if isinstance(layer, nn.Conv2d) and layer.groups == 1:
        return (layer.weight[0].numel()) % m == 0
    return False


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest-magnitude weights of every ``m`` consecutive ones along the flattened reduction dim."""
    rows = weight.detach().reshape(weight.shape[0], -1, m).abs()
    keep = rows.topk(n, dim=-1).indices
    mask = torch.zeros_like(rows).scatter_(-1, keep, 1.0)
    return mask.reshape(weight.shape)


def apply_sparsity(dense: nn.Module, plan: PrunePlan, groups: list[PruneGroup], *, method: str,
                   nm: str = "2:4") -> PrunedModel:
    """A copy of ``dense`` with weights zeroed by ``plan`` (``dense`` is left untouched), and the masks."""
    if method not in SPARSE_METHODS:
        raise ValueError(f"unknown sparsity method {method!r}")
    model = copy.deepcopy(dense).eval()
    masks: dict[str, torch.Tensor] = {}
    n, m = parse_nm(nm)
    for group in groups:
        ratio = float(plan.get(group.root, 0.0))
        if ratio <= 0:
            continue
        layers = {name: model.get_submodule(name) for name in group.outputs or (group.root,)}
        if method == "unstructured":
            torch_prune.global_unstructured([(layer, "weight") for layer in layers.values()],
                                            pruning_method=torch_prune.L1Unstructured, amount=ratio)
            for name, layer in layers.items():
                masks[f"{name}.weight"] = layer.weight_mask.detach().clone()
                torch_prune.remove(layer, "weight")  # permanent: a plain weight with zeros, no forward hook
        else:
            for name, layer in layers.items():
                if nm_applies(layer, m):
                    mask = nm_mask(layer.weight, n, m)
                    with torch.no_grad():
                        layer.weight.mul_(mask)
                    masks[f"{name}.weight"] = mask
    return PrunedModel(model.eval(), [], kept_channels(model), masks)


def mask_holder(model: nn.Module, masks: dict[str, torch.Tensor]) -> Callable[[], None] | None:
    """A callable for after each optimizer step that zeroes the masked weights again (None without masks)."""
    if not masks:
        return None
    params = dict(model.named_parameters())
    held = [(params[name], mask.to(params[name].device)) for name, mask in masks.items()]

    def hold() -> None:
        with torch.no_grad():
            for param, mask in held:
                param.mul_(mask)

    return hold


def nonzero_params(model: nn.Module) -> int:
    """Parameters that are not zero: what a sparse format would store."""
    return int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))


def sparsity_of(model: nn.Module, masks: dict[str, torch.Tensor]) -> float:
    """Zeroed share of the weights that carry a mask (0 when there are none)."""
    total = sum(mask.numel() for mask in masks.values())
    return 1.0 - sum(float(mask.sum()) for mask in masks.values()) / total if total else 0.0


def semi_structured_linears(model: nn.Module, dtype: torch.dtype | None = None, *,
                            channels_last: bool = False) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` whose 2:4-sparse Linear weights are ``torch.sparse.to_sparse_semi_structured`` tensors.

    What a 2:4 model deploys as on an Ampere-or-newer GPU: the sparse tensor cores then do half the multiplies.
    Only 2-D weights convert (torch has no semi-structured convolution), and only those that already hold the
    pattern (at most 2 non-zeros in every 4); a layer whose shape or dtype the kernels refuse stays dense.
    Returns the copy and the layers converted. CUDA only: the caller decides.

    ``dtype`` (and ``channels_last``) put the copy in the measurement runtime's form first, which then times it as
    it is (``moprune.measure.runtimes.in_form``: semi-structured weights cannot be copied again). Torch's cuSPARSELt
    kernels take float16 and bfloat16 weights only, and its CUTLASS kernels run on compute capability 8.x only, so
    on a Hopper GPU a float32 2:4 layer stays dense (seen on an H200 with torch 2.11: float32 refused, float16 and
    bfloat16 converted).
    """
    from torch.sparse import to_sparse_semi_structured

    copied = copy.deepcopy(model).eval()
    if dtype is not None:
        copied = copied.to(dtype)
    if channels_last:
        copied = copied.to(memory_format=torch.channels_last)
    converted = []
    for name, layer in list(copied.named_modules()):
        if not isinstance(layer, nn.Linear) or layer.in_features % 4:
            continue
        weight = layer.weight.detach()
        if int((weight.reshape(weight.shape[0], -1, 4) != 0).sum(dim=-1).max()) > 2:
            continue  # not 2:4 (the classifier, or a layer the plan left dense)
        try:
            layer.weight = nn.Parameter(to_sparse_semi_structured(weight.contiguous()), requires_grad=False)
        except RuntimeError as exc:  # shape or dtype the kernels do not take: timed dense, as it would run
            _refused(name, exc)
            continue
        converted.append(name)
    return copied, converted


_REFUSALS: set[str] = set()


def _refused(name: str, exc: Exception) -> None:
    """Say once per reason that a 2:4 layer is timed dense: a user who chose 2:4 expects it timed sparse."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if reason not in _REFUSALS:
        _REFUSALS.add(reason)
        log.warning("%s is timed dense: torch refused its 2:4 semi-structured form (%s)", name, reason)
    else:
        log.debug("%s is timed dense (%s)", name, reason)
