"""Per-process cache of latency and energy by architecture: an identical pruned shape is not measured twice.

Latency and energy depend on the shapes of the layers, not on the weights, so the key is the *kept-channel
signature* (every conv/linear layer's in/out channels and groups), the device and the batch size, plus the
measurement settings that change the numbers. Searches propose the same shape again often: ratios are discretised
and ``int(n * (1 - ratio))`` maps neighbouring ratios onto one channel count.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from torch import nn

T = TypeVar("T")


def architecture_signature(model: nn.Module) -> str:
    """A short hash of the model's class and every conv/linear layer's name and kept channels."""
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            layers.append([name, type(m).__name__, m.in_channels, m.out_channels, m.groups, list(m.kernel_size)])
        elif isinstance(m, nn.Linear):
            layers.append([name, "Linear", m.in_features, m.out_features])
    text = json.dumps([type(model).__qualname__, layers], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ArchitectureCache(Generic[T]):
    """A small thread-safe LRU map; values are whole measurements (frozen dataclasses)."""

    def __init__(self, maxsize: int = 512):
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: T) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)
