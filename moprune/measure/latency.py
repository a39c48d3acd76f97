"""Latency of one forward pass on the study's device, and speedup paired against the dense model.

Timers: ``time.perf_counter`` on the CPU; CUDA events with synchronisation on a GPU (the host clock would time
kernel *launches*, not kernels). Speedup is measured in alternating rounds, candidate and reference back to back,
so that a machine that slows down for a while slows both and the per-round ratio survives.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


class Timer(Protocol):
    """Times one call of ``fn`` in milliseconds on one device."""

    def time_ms(self, fn) -> float: ...


class CpuTimer:
    def time_ms(self, fn) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3


class CudaTimer:
    """CUDA events recorded on the current stream around the call; synchronise before reading them."""

    def __init__(self, device: torch.device):
        self.device = device

    def time_ms(self, fn) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(self.device)  # nothing queued earlier may be timed
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


def timer_for(device: torch.device) -> Timer:
    return CudaTimer(device) if device.type == "cuda" else CpuTimer()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencyResult:
    """Milliseconds per forward pass at the measured batch size."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples_ms: tuple[float, ...]

    @classmethod
    def of(cls, samples: list[float]) -> LatencyResult:
        return cls(statistics.median(samples), percentile(samples, 10), percentile(samples, 90), tuple(samples))


@dataclass(frozen=True)
class PairedLatency:
    candidate: LatencyResult
    reference: LatencyResult
    speedup: float  # median over rounds of reference_ms / candidate_ms
    speedup_p10: float
    speedup_p90: float


def _forward(model: nn.Module, inputs: torch.Tensor):
    def run() -> None:
        model(inputs)
    return run


@torch.inference_mode()
def measure_latency(model: nn.Module, inputs: torch.Tensor, *, warmup: int = 10, repeats: int = 30
                    ) -> LatencyResult:
    """Median and spread of ``repeats`` timed forward passes after ``warmup`` untimed ones."""
    model.eval()
    timer = timer_for(inputs.device)
    run = _forward(model, inputs)
    for _ in range(warmup):
        run()
    return LatencyResult.of([timer.time_ms(run) for _ in range(repeats)])


@torch.inference_mode()
def measure_paired(candidate: nn.Module, reference: nn.Module, inputs: torch.Tensor, *, warmup: int = 10,
                   repeats: int = 30) -> PairedLatency:
    """Time ``candidate`` and ``reference`` in ``repeats`` alternating rounds (order flipped every round)."""
    candidate.eval()
    reference.eval()
    timer = timer_for(inputs.device)
    run_c, run_r = _forward(candidate, inputs), _forward(reference, inputs)
    for _ in range(warmup):
        run_c()
        run_r()
    cand, ref = [], []
    for i in range(repeats):
        if i % 2:
            ref.append(timer.time_ms(run_r))
            cand.append(timer.time_ms(run_c))
        else:
            cand.append(timer.time_ms(run_c))
            ref.append(timer.time_ms(run_r))
    ratios = [r / c for r, c in zip(ref, cand)]
    return PairedLatency(LatencyResult.of(cand), LatencyResult.of(ref), statistics.median(ratios),
                         percentile(ratios, 10), percentile(ratios, 90))
