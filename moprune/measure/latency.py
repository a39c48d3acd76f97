"""Latency of one forward pass on the study's device, and speedup paired against the dense model.

The candidate and the dense reference are timed in alternating rounds within one measurement (``rounds.py``):
``latency_ms`` is the candidate's median over rounds, ``speedup`` the median of the per-round ratios
reference / candidate. A machine that slows down for a while slows both models of a round, and the ratio survives.
On the CPU each round is checked for other processes' CPU use (``disturbance.py``) and disturbed rounds are taken
again; on a GPU, CUDA events time each pass (``timers.py``).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .disturbance import CpuDisturbanceProbe, default_probe
from .rounds import Round, Rounds, median_ci95, run_rounds
from .timers import (PerPass, cuda_graph_runner, cudnn_autotune, enqueue_ms, forward_runner, host_bound, min_warmup,
                     passes_per_call, repeated, time_call_ms, timer_for)

log = logging.getLogger(__name__)

#: Share of our CPUs that other processes may use during a round before it counts as disturbed. For check blocks
#: under ~250 ms on 2 CPUs this leaves only the one tick the counters' rounding allows: a competitor that takes a
#: CPU from a 2-thread pass for a whole tick stalls the pass far more than a tick.
MAX_OTHER_CPU = 0.02
#: Rounds continue past ``repeats`` until the 95% CI of the median (speedup, or latency alone) is within this
#: relative half-width...
CI_HALF_WIDTH = 0.02
#: ... or until this many times ``repeats`` clean rounds.
MAX_REPEATS_FACTOR = 8


@dataclass(frozen=True)
class LatencyResult:
    """Milliseconds per forward pass at the measured batch size."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples_ms: tuple[float, ...]

    @classmethod
    def of(cls, samples: list[float]) -> LatencyResult:
        p10, p90 = np.percentile(samples, [10, 90])  # linear interpolation between order statistics
        return cls(statistics.median(samples), float(p10), float(p90), tuple(samples))


@dataclass(frozen=True)
class RoundsInfo:
    """How the rounds went: what a reader needs to trust (or distrust) the numbers."""

    timer: str  # perf_counter | cuda-events | cuda-graph
    threads: int  # torch.get_num_threads() while timing
    rounds: int  # rounds used for the statistics
    taken: int  # rounds run in all
    clean: int  # rounds with other processes under the threshold
    noisy: bool  # clean rounds could not be had; the least disturbed were used
    disturbance_check: str | None  # "proc-stat", or None where rounds are not checked (GPU, non-Linux)
    other_cpu: float | None  # mean share of our CPUs that other processes used during the used rounds
    other_cpu_max: float | None  # the largest share in any used round's check block
    passes_per_call: int = 1  # GPU: passes per timed call (the launch gap amortised); 1 on the CPU
    host_bound: bool | None = None  # GPU: launching a pass took about as long as running it; None on the CPU

    @classmethod
    def of(cls, rounds: Rounds, timer: str, probe: CpuDisturbanceProbe | None, *, passes: int = 1,
           bound: bool | None = None) -> RoundsInfo:
        others = [r.other_fraction for r in rounds.used if r.other_fraction is not None]
        return cls(timer, torch.get_num_threads(), len(rounds.used), rounds.taken, rounds.clean, rounds.noisy,
                   probe.name if probe is not None else None, statistics.fmean(others) if others else None,
                   max(others) if others else None, passes, bound)

    @property
    def discarded(self) -> int:
        """Rounds taken but not used (disturbed, and replaced by cleaner ones)."""
        return self.taken - self.rounds


@dataclass(frozen=True)
class PairedLatency:
    candidate: LatencyResult
    reference: LatencyResult
    speedup: float  # median over rounds of reference_ms / candidate_ms
    speedup_p10: float
    speedup_p90: float
    info: RoundsInfo | None = None
    speedup_ci95: tuple[float, float] | None = None  # 95% confidence interval of the median speedup

    @property
    def noisy(self) -> bool:
        return bool(self.info and self.info.noisy)


@dataclass(frozen=True)
class SingleLatency:
    """One model timed alone (the dense baseline): the same rounds and checks as a paired measurement."""

    latency: LatencyResult
    info: RoundsInfo
    median_ci95: tuple[float, float] | None = None  # 95% confidence interval of the median latency


def _runners(models: list[nn.Module], inputs: torch.Tensor, cuda_graph: bool) -> tuple[list, str]:
    device = inputs.device
    if device.type == "cuda" and cuda_graph:
        graphs = [cuda_graph_runner(m, inputs) for m in models]
        if all(g is not None for g in graphs):
            return graphs, "cuda-graph"
    return [forward_runner(m, inputs) for m in models], timer_for(device).method


def _probe(device: torch.device, probe: CpuDisturbanceProbe | None | str) -> CpuDisturbanceProbe | None:
    if probe == "auto":
        return default_probe() if device.type == "cpu" else None
    return probe  # type: ignore[return-value]


def _precise(statistic, ci_half_width: float | None):
    """The stopping rule: the 95% CI of the median of ``statistic(round)`` is within ``ci_half_width`` (relative)."""
    if ci_half_width is None:
        return None

    def enough(rounds: list[Round]) -> bool:
        if len(rounds) < 6:  # below 6 values even (min, max) covers the median less than 95% of the time
            return False
        values = [statistic(r) for r in rounds]
        lo, hi = median_ci95(values)
        return (hi - lo) / 2 <= ci_half_width * statistics.median(values)
    return enough


def _ratio(r: Round) -> float:
    return r.times_ms[1] / r.times_ms[0]


def _latency(r: Round) -> float:
    return r.times_ms[0]


@torch.inference_mode()
def _timed_rounds(models: list[nn.Module], inputs: torch.Tensor, *, warmup: int, repeats: int, cuda_graph: bool,
                  probe: CpuDisturbanceProbe | None | str, max_other_cpu: float, max_retries: int | None,
                  ci_half_width: float | None, max_repeats: int | None, statistic) -> tuple[Rounds, RoundsInfo]:
    device = inputs.device
    for m in models:
        m.eval()
    with cudnn_autotune(device):
        runs, timer_name = _runners(models, inputs, cuda_graph)
        for _ in range(min_warmup(device, warmup)):
            for run in runs:
                run()
        checker = _probe(device, probe)
        timer, passes, bound = timer_for(device), 1, None
        if device.type == "cuda":
            runs, timer, passes, bound = _gpu_calls(runs, timer, device, timer_name)
        rounds = run_rounds(runs, timer, repeats=repeats, probe=checker, max_other_cpu=max_other_cpu,
                            max_retries=max_retries, enough=_precise(statistic, ci_half_width),
                            max_repeats=max_repeats if max_repeats is not None else MAX_REPEATS_FACTOR * repeats)
    return rounds, RoundsInfo.of(rounds, timer_name, checker, passes=passes, bound=bound)


_warned_host_bound: set[str] = set()


def _gpu_calls(runs: list, timer, device: torch.device, timer_name: str) -> tuple[list, PerPass, int, bool]:
    """GPU timing calls of several passes each (``passes_per_call`` from the fastest model's pass, the same for
    every model), and whether the first model's pass is host-bound (warned once per device and kind of timer)."""
    one_pass = [time_call_ms(timer, run) for run in runs]
    passes = passes_per_call(min(one_pass))
    bound = host_bound(enqueue_ms(runs[0], device), one_pass[0])
    key = f"{device}:{timer_name}"
    if bound and key not in _warned_host_bound:
        _warned_host_bound.add(key)
        log.warning("on %s a forward pass takes about as long to launch as to run (%s): latency measures the host's "
                    "kernel launches, not the network, and pruning will read as no faster. Time a bigger batch "
                    "(measure.batch_size), CUDA graphs (measure.cuda_graph: true) or measure.runtime compile",
                    device, timer_name)
    return [repeated(run, passes) for run in runs], PerPass(timer, passes), passes, bound


def measure_latency(model: nn.Module, inputs: torch.Tensor, *, warmup: int = 10, repeats: int = 30,
                    **options) -> LatencyResult:
    """Median and spread of the timed forward passes (at least ``repeats``) after ``warmup`` untimed ones."""
    return measure_single(model, inputs, warmup=warmup, repeats=repeats, **options).latency


def measure_single(model: nn.Module, inputs: torch.Tensor, *, warmup: int = 10, repeats: int = 30,
                   cuda_graph: bool = False, probe: CpuDisturbanceProbe | None | str = "auto",
                   max_other_cpu: float = MAX_OTHER_CPU, max_retries: int | None = None,
                   ci_half_width: float | None = CI_HALF_WIDTH, max_repeats: int | None = None) -> SingleLatency:
    """``measure_latency`` with the record of how the rounds went (timer, threads, disturbed rounds)."""
    rounds, info = _timed_rounds([model], inputs, warmup=warmup, repeats=repeats, cuda_graph=cuda_graph, probe=probe,
                                 max_other_cpu=max_other_cpu, max_retries=max_retries, ci_half_width=ci_half_width,
                                 max_repeats=max_repeats, statistic=_latency)
    samples = rounds.series(0)
    return SingleLatency(LatencyResult.of(samples), info, median_ci95(samples))


def measure_paired(candidate: nn.Module, reference: nn.Module, inputs: torch.Tensor, *, warmup: int = 10,
                   repeats: int = 30, cuda_graph: bool = False, probe: CpuDisturbanceProbe | None | str = "auto",
                   max_other_cpu: float = MAX_OTHER_CPU, max_retries: int | None = None,
                   ci_half_width: float | None = CI_HALF_WIDTH, max_repeats: int | None = None) -> PairedLatency:
    """Time ``candidate`` and ``reference`` in alternating rounds; speedup = median per-round ratio ref/candidate.

    At least ``repeats`` rounds; more, up to ``max_repeats`` (default 8 x repeats), until the 95% CI of the median
    speedup is within ``ci_half_width`` (None: exactly ``repeats``). ``probe="auto"`` checks CPU rounds for other
    processes' load (None turns the check off); ``cuda_graph`` replays each model as a CUDA graph on a GPU.
    """
    rounds, info = _timed_rounds([candidate, reference], inputs, warmup=warmup, repeats=repeats,
                                 cuda_graph=cuda_graph, probe=probe, max_other_cpu=max_other_cpu,
                                 max_retries=max_retries, ci_half_width=ci_half_width, max_repeats=max_repeats,
                                 statistic=_ratio)
    cand, ref = rounds.series(0), rounds.series(1)
    ratios = [r / c for r, c in zip(ref, cand)]
    p10, p90 = np.percentile(ratios, [10, 90])
    return PairedLatency(LatencyResult.of(cand), LatencyResult.of(ref), statistics.median(ratios), float(p10),
                         float(p90), info, median_ci95(ratios))
