"""Process-wide torch settings changed only for a scope and restored after it.

moprune is a library too: a call that sets torch's thread count or global seed and leaves it set changes the
user's program (a notebook's later training runs with 1 thread). Every such change goes through these managers;
``hooked_pass`` does the same for a model's mode and the hooks one traced pass adds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: as they are); yields the count in force."""
    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch's global RNG (and ``device``'s, on a GPU) seeded; the caller's state comes back after.

    For what draws from the global generator and cannot be given one: the random initialisation of a model built
    by torchvision or a user's factory.
    """
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def hooked_pass(model: nn.Module, inputs: torch.Tensor, register: Callable[[], list]) -> None:
    """One eval-mode forward pass under no_grad with the hooks ``register()`` adds; the hooks are removed and the
    model's mode restored afterwards, whatever the pass raised."""
    handles = register()
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
