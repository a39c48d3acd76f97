"""Depth: residual blocks a plan may drop whole (``prune.drop_blocks``).

Width pruning stops paying where a layer's fixed cost dominates: on one CPU thread, bench plans that keep 2-8% of
a ResNet-20's MACs ran only 2.4-3.5x faster than dense, because every layer still launches its kernels. Dropping a
residual block removes its layers' launches and their MACs at once; whether the accuracy survives is for the
fine-tune and the measurement to say, so the search decides which blocks go, never a rule.

A block is *droppable* when it is residual: a module that is an element of a ``Sequential`` or ``ModuleList``
(a stage of repeated blocks), holds at least two Conv2d/Linear layers, keeps its input's shape, and returns its
input when all its own parameters are zero (``x + f(x)`` with ``f`` silenced is ``x``; ``relu(x + f(x))`` is ``x``
for the non-negative input the check feeds). A plain layer stack that keeps its shape (a VGG's 64 -> 64 convs)
returns zeros instead and is never offered: dropping it would cut the network, not shorten it.

A plan drops a block with the key ``drop:<block name>`` set to 1; the Torch-Pruning history of such a plan starts
with ``{"dropped": [...]}`` so that a replay drops the same blocks before it removes channels.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..torch_state import hooked_pass
from .groups import classifier_of

#: prefix of a plan key that drops a block: ``{"drop:layer1.1": 1.0}``
DROP_KEY = "drop:"


def drop_key(block: str) -> str:
    return DROP_KEY + block


def split_plan(plan: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """(group root -> ratio, the blocks the plan drops, in the plan's order)."""
    ratios = {k: v for k, v in plan.items() if not k.startswith(DROP_KEY)}
    dropped = [k[len(DROP_KEY):] for k, v in plan.items() if k.startswith(DROP_KEY) and v >= 0.5]
    return ratios, dropped


def dropped_count(plan: dict[str, float] | None) -> int:
    """How many blocks ``plan`` drops (0 for a plan of widths only, or none)."""
    return len(split_plan(plan or {})[1])


def inside(name: str, blocks: list[str] | tuple[str, ...]) -> bool:
    """Whether the module ``name`` is one of ``blocks`` or lies within one."""
    return any(name == b or name.startswith(b + ".") for b in blocks)


def _layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _returns_its_input(block: nn.Module, x: torch.Tensor) -> bool:
    """With every parameter of (a copy of) ``block`` zero, does it return its (non-negative) input?"""
    silent = copy.deepcopy(block).eval()
    with torch.no_grad():
        for p in silent.parameters():
            p.zero_()
        x = x.abs()
        out = silent(x)
    return isinstance(out, torch.Tensor) and out.shape == x.shape and torch.allclose(out, x, rtol=1e-4, atol=1e-5)


def droppable_blocks(model: nn.Module, example_inputs: torch.Tensor) -> list[str]:
    """Names of the model's residual blocks (see the module docstring), outermost only, in forward order."""
    head = classifier_of(model)
    candidates: dict[str, nn.Module] = {}
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, (nn.Sequential, nn.ModuleList)):
            continue
        for child_name, child in parent.named_children():
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, (nn.Sequential, nn.ModuleList)) or len(_layers(child)) < 2:
                continue
            if any(m is head for m in child.modules()):
                continue
            candidates[name] = child
    inputs: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def hook(_module, args, output) -> None:
            if len(args) == 1 and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor) \
                    and output.shape == args[0].shape:
                inputs.setdefault(name, args[0].detach().clone())
        return hook

    hooked_pass(model, example_inputs, lambda: [m.register_forward_hook(recorder(n)) for n, m in candidates.items()])
    found = [n for n in inputs if _returns_its_input(candidates[n], inputs[n])]  # hooks fire in forward order
    return [n for n in found if not any(inside(n, [o]) for o in found if o != n)]


def drop_blocks(model: nn.Module, blocks: list[str] | tuple[str, ...]) -> nn.Module:
    """Replace each named block of ``model`` by ``nn.Identity`` (in place; returned)."""
    for block in blocks:
        parent, _, child = block.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


def split_history(history: list[Any]) -> tuple[list[str], list[Any]]:
    """(the blocks a recorded plan dropped, the rest of its history)."""
    if history and isinstance(history[0], dict) and "dropped" in history[0]:
        return list(history[0]["dropped"]), list(history[1:])
    return [], list(history)
