"""Timers for one forward pass, and the CUDA settings that decide what a GPU timing means.

Every meter in ``moprune.measure`` (these timers, and the energy meters in ``energy.py``) has the same two-call shape,
``start()`` then ``stop() -> reading``, so one test suite checks them all.

On a GPU the host clock would time kernel *launches*, not kernels: CUDA events are recorded on the stream around the
pass and read only after synchronising on the end event.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import nn


class Meter(Protocol):
    """Something that measures a window: ``start()``, run the work, ``stop()`` returns the reading in ``unit``."""

    method: str  # how the reading is taken: perf_counter | cuda-events | nvml-counter | nvml-sampled | rapl
    unit: str  # "ms" for timers, "mJ" for energy meters

    def start(self) -> None: ...

    def stop(self) -> float: ...


class CpuTimer:
    """Wall-clock time on the host (``time.perf_counter``); right for CPU inference, which runs synchronously."""

    method = "perf_counter"
    unit = "ms"

    def __init__(self) -> None:
        self._start_s: float | None = None

    def start(self) -> None:
        self._start_s = time.perf_counter()

    def stop(self) -> float:
        end = time.perf_counter()
        if self._start_s is None:
            raise RuntimeError("CpuTimer.stop() called without start()")
        start, self._start_s = self._start_s, None
        return (end - start) * 1e3


class CudaTimer:
    """CUDA events on the current stream; ``start`` first waits for queued work so that none of it is timed."""

    method = "cuda-events"
    unit = "ms"

    def __init__(self, device: torch.device):
        self.device = device
        self._start: torch.cuda.Event | None = None
        self._end = None

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        with torch.cuda.device(self.device):
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record()

    def stop(self) -> float:
        if self._start is None or self._end is None:
            raise RuntimeError("CudaTimer.stop() called without start()")
        with torch.cuda.device(self.device):
            self._end.record()
        self._end.synchronize()  # the events hold no time until the GPU has passed them
        start, self._start = self._start, None
        return float(start.elapsed_time(self._end))


#: On a GPU one timed call runs passes back to back until it spans about this long. The host synchronises before the
#: start event, so the GPU passes the event and then waits 10-30 us for the first kernel's launch: charged to every
#: pass, that gap compresses a fast model's time (and a CUDA graph's speedup); charged to a call of many, it vanishes.
MIN_GPU_CALL_MS = 1.0
MAX_PASSES_PER_CALL = 64
#: A pass whose host-side enqueue takes this share of its GPU time or more is host-bound: the GPU waits for launches.
HOST_BOUND_SHARE = 0.8


def passes_per_call(pass_ms: float) -> int:
    """Passes one timed GPU call runs, from one pass's time (the fastest model's, so every model gets the same)."""
    return max(1, min(MAX_PASSES_PER_CALL, math.ceil(MIN_GPU_CALL_MS / max(pass_ms, 1e-6))))


def host_bound(enqueue_ms: float, gpu_ms: float) -> bool:
    """True when launching a pass takes about as long as running it: the timing measures the host, not the GPU."""
    return enqueue_ms >= HOST_BOUND_SHARE * gpu_ms


def repeated(run: Callable[[], None], passes: int) -> Callable[[], None]:
    if passes == 1:
        return run

    def many() -> None:
        for _ in range(passes):
            run()
    return many


class PerPass:
    """A meter around calls of ``passes`` passes that reads the time of one."""

    def __init__(self, timer: Meter, passes: int):
        self.timer, self.passes = timer, passes
        self.method, self.unit = timer.method, timer.unit

    def start(self) -> None:
        self.timer.start()

    def stop(self) -> float:
        return self.timer.stop() / self.passes


def enqueue_ms(run: Callable[[], None], device: torch.device) -> float:
    """Host time to launch one pass (without waiting for it), after the device has gone idle."""
    synchronize(device)
    t0 = time.perf_counter()
    run()
    elapsed = (time.perf_counter() - t0) * 1e3
    synchronize(device)
    return elapsed


def timer_for(device: torch.device) -> CpuTimer | CudaTimer:
    return CudaTimer(device) if device.type == "cuda" else CpuTimer()


def time_call_ms(timer: Meter, fn: Callable[[], object]) -> float:
    timer.start()
    fn()
    return timer.stop()


def synchronize(device: torch.device) -> None:
    """Wait for the device to finish queued work (a no-op on the CPU, where work is already finished)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[bool]:
    """Let cuDNN pick its fastest kernels while timing on a GPU, as a deployed model would; restore afterwards.

    The autotuning runs on the first pass at each input shape: warm-up passes absorb it (see ``min_warmup``).
    """
    if device.type != "cuda":
        yield False
        return
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield True
    finally:
        torch.backends.cudnn.benchmark = old


def min_warmup(device: torch.device, warmup: int) -> int:
    """Warm-up passes actually run: on a GPU at least 2, so cuDNN's autotuning and lazy init are never timed."""
    return max(warmup, 2) if device.type == "cuda" else warmup


def forward_runner(model: nn.Module, inputs: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model(inputs)
    return run


@functools.lru_cache(maxsize=None)
def capture_stream(device: torch.device) -> torch.cuda.Stream:
    """The one side stream graphs are captured on, per device.

    A new stream per capture cycles through torch's pool of 32 streams, and cuBLAS keeps a workspace for every
    stream it has run on, held in the caching allocator: GPU memory then grew with every captured trial.
    """
    return torch.cuda.Stream(device=device)


def cuda_graph_runner(model: nn.Module, inputs: torch.Tensor) -> Callable[[], None] | None:
    """Capture one forward pass as a CUDA graph and return its replay; None (with a warning) when capture fails.

    For small batches the launch overhead of hundreds of kernels dominates; a graph replays them in one launch, as a
    deployment with CUDA graphs (TensorRT, torch.compile mode="reduce-overhead") would. Capture needs warm-up passes on
    a side stream first (Torch's documented recipe).
    """
    device = inputs.device
    try:
        # Capture and replay run on the *current* device's streams: make the model's device current for both, or a
        # worker on cuda:1 captures on cuda:0 (an error, or an empty graph timed) while its model lives on cuda:1.
        with torch.cuda.device(device):
            side = capture_stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    model(inputs)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                model(inputs)
            torch.cuda.synchronize(device)
    except RuntimeError as exc:  # e.g. a model with host synchronisation or dynamic shapes
        warnings.warn(f"CUDA graph capture failed ({exc}); timing eager forward passes instead", stacklevel=2)
        return None

    def replay() -> None:
        with torch.cuda.device(device):
            graph.replay()

    return replay
