"""Paired latency on real models: speedups, spreads, how the rounds were taken, inference mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moprune.measure.latency import LatencyResult, measure_paired, measure_single
from moprune.torch_state import torch_threads


def _conv(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()


def test_latency_spread_interpolates_between_samples():
    result = LatencyResult.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (result.p10_ms, result.median_ms, result.p90_ms) == pytest.approx((1.4, 3.0, 4.6))
    assert LatencyResult.of([3.0]).p90_ms == 3.0


# --- paired measurements on real models -------------------------------------------------------------------------

def test_paired_speedup_of_a_model_against_itself_is_about_one():
    torch.manual_seed(0)
    model, x = _conv(16), torch.randn(8, 3, 16, 16)
    p = measure_paired(model, model, x, warmup=2, repeats=15, ci_half_width=None)
    assert p.speedup_p10 <= p.speedup <= p.speedup_p90
    assert 0.7 < p.speedup < 1.4
    assert p.info.timer == "perf_counter" and p.info.threads == torch.get_num_threads()
    assert p.info.rounds == len(p.candidate.samples_ms) == len(p.reference.samples_ms) >= 15


def test_a_wider_reference_is_measured_slower_by_a_paired_ratio():
    torch.manual_seed(0)
    narrow, wide, x = _conv(8), _conv(96), torch.randn(16, 3, 24, 24)
    # One thread: with two, a pass waits for whichever thread a busy machine has descheduled, and the stalls (a
    # scheduler slice each) compress the ratio of two small passes towards 1 (seen: 1.85 under two busy loops).
    with torch_threads(1):
        p = measure_paired(narrow, wide, x, warmup=2, repeats=15)
    assert p.speedup > 2.0
    lo, hi = p.speedup_ci95
    assert lo <= p.speedup <= hi
    assert p.reference.median_ms > p.candidate.median_ms


def test_measure_single_records_how_it_was_taken():
    model, x = _conv(8), torch.randn(4, 3, 16, 16)
    single = measure_single(model, x, warmup=1, repeats=5, ci_half_width=None)
    assert single.info.rounds >= 5 and single.info.disturbance_check in ("proc-stat", None)
    assert single.latency.p10_ms <= single.latency.median_ms <= single.latency.p90_ms


def test_latency_is_timed_in_inference_mode_without_autograd():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append((torch.is_inference_mode_enabled(), self.training))
            return x * 2

    measure_paired(Spy(), Spy().train(), torch.randn(2, 3), warmup=1, repeats=3, ci_half_width=None)
    assert seen and all(inference and not training for inference, training in seen)


@pytest.mark.gpu
def test_cuda_timing_uses_events_and_optionally_graphs():
    model, x = _conv(32).cuda(), torch.randn(8, 3, 32, 32, device="cuda")
    p = measure_paired(model, _conv(64).cuda(), x, warmup=3, repeats=10)
    assert p.info.timer == "cuda-events" and p.info.disturbance_check is None
    assert p.info.passes_per_call >= 1 and isinstance(p.info.host_bound, bool)
    g = measure_paired(model, _conv(64).cuda(), x, warmup=3, repeats=10, cuda_graph=True)
    assert g.info.timer == "cuda-graph" and g.speedup > 0
    assert torch.backends.cudnn.benchmark is False, "cudnn.benchmark is restored after timing"
