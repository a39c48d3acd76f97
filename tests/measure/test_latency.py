"""Paired latency rounds, the disturbance check, and the statistics a trial records."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from fake_hardware import FakeProc
from moprune.measure.disturbance import CpuDisturbanceProbe, default_probe
from moprune.measure.latency import LatencyResult, measure_paired, measure_single
from moprune.measure.rounds import median_ci95, run_rounds
from moprune.measure.timers import CpuTimer

NO_SLEEP = {"sleep": lambda _s: None, "min_check_s": 0.0}  # one round per check: the script decides each


def _conv(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()


# --- the disturbance probe ----------------------------------------------------------------------------------------

def test_probe_counts_other_tasks_ticks_not_our_own(tmp_path):
    proc = FakeProc(tmp_path)
    probe = CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1})
    probe.ticks_per_s = 100.0
    before = probe.snapshot()
    proc.tick(own=30, cpu=0)  # our threads: never a disturbance
    proc.tick(other=4, cpu=1)
    proc.tick(steal=2, cpu=1)  # the hypervisor ran another guest on our CPU: a disturbance too
    seen = probe.between(before, probe.snapshot())
    assert seen.other_cpu_s == pytest.approx(0.06)


def test_probe_ignores_cpus_outside_our_affinity(tmp_path):
    proc = FakeProc(tmp_path)
    probe = CpuDisturbanceProbe(proc=tmp_path, cpus={0})
    before = probe.snapshot()
    proc.tick(other=50, cpu=1)
    assert probe.between(before, probe.snapshot()).other_cpu_s == 0


def test_one_tick_is_within_the_counters_rounding():
    from moprune.measure.disturbance import Disturbance

    assert not Disturbance(0.05, 0.01, 2).exceeds(0.0)  # 1 tick: the two counters round separately
    assert Disturbance(0.05, 0.02, 2).exceeds(0.0)
    assert not Disturbance(1.0, 0.03, 2).exceeds(0.02)  # 3 ticks of 200: 1.5%, under a 2% threshold


def test_the_real_probe_sees_a_competing_process():
    probe = default_probe()
    if probe is None:
        pytest.skip("no /proc/stat here")
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        before = probe.snapshot()
        time.sleep(0.4)
        seen = probe.between(before, probe.snapshot())
    finally:
        hog.kill()
        hog.wait()
    assert seen.other_cpu_s >= 0.2, "a process spinning for 0.4 s took at least half of it"
    assert seen.exceeds(0.1)


# --- rounds ---------------------------------------------------------------------------------------------------------

class Scripted:
    """Runners whose rounds are disturbed as a script says, by advancing a fake /proc between the passes."""

    def __init__(self, proc: FakeProc, disturbed: set[int]):
        self.proc, self.disturbed, self.order, self.calls = proc, disturbed, [], 0

    def runner(self, name: str):
        def run() -> None:
            self.order.append(name)
            if name == "A":
                self.calls += 1
                if self.calls in self.disturbed:
                    self.proc.tick(other=40, cpu=0)
            self.proc.tick(own=1)
        return run


def test_disturbed_rounds_are_taken_again_and_the_order_rotates(tmp_path):
    proc = FakeProc(tmp_path)
    s = Scripted(proc, disturbed={2, 4})  # A's 2nd and 4th passes: rounds 2 and 3 (an untimed re-warm in between)
    rounds = run_rounds([s.runner("A"), s.runner("B")], CpuTimer(), repeats=5,
                        probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}), **NO_SLEEP)
    assert rounds.clean == 5 and rounds.taken == 7 and not rounds.noisy
    assert all(r.other_fraction == 0 for r in rounds.used)
    # A B, then B A, ...: neither model always runs first (untimed re-warm passes follow each disturbed round)
    timed = [s.order[i:i + 2] for i in range(0, 4, 2)]
    assert timed == [["A", "B"], ["B", "A"]]


def test_a_machine_that_stays_loaded_gives_up_and_says_noisy(tmp_path):
    proc = FakeProc(tmp_path)
    s = Scripted(proc, disturbed=set(range(1, 1000)))
    rounds = run_rounds([s.runner("A"), s.runner("B")], CpuTimer(), repeats=4,
                        probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}), **NO_SLEEP)
    assert rounds.noisy and rounds.clean == 0
    assert rounds.taken == 5, "at most `repeats` disturbed rounds beyond the clean ones"
    assert len(rounds.used) == 4, "the least disturbed rounds fill in"


def test_max_retries_bounds_the_disturbed_rounds(tmp_path):
    proc = FakeProc(tmp_path)
    s = Scripted(proc, disturbed={1, 2, 3})
    rounds = run_rounds([s.runner("A"), s.runner("B")], CpuTimer(), repeats=3, max_retries=1,
                        probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}), **NO_SLEEP)
    assert rounds.taken == 2 and rounds.noisy


def test_rounds_continue_until_enough_but_not_past_max_repeats(tmp_path):
    calls = []
    rounds = run_rounds([lambda: None], CpuTimer(), repeats=5, probe=None, max_repeats=40,
                        enough=lambda rs: calls.append(len(rs)) or len(rs) >= 25, min_check_s=0.0)
    assert len(rounds.used) == 25 and calls == [5, 15, 25]
    never = run_rounds([lambda: None], CpuTimer(), repeats=5, probe=None, max_repeats=12, enough=lambda rs: False,
                       min_check_s=0.0)
    assert len(never.used) == 12 and not never.checked


def test_fast_rounds_are_checked_in_blocks_long_enough_for_the_tick_counters(tmp_path):
    """A 1 ms round cannot be judged by 10 ms ticks: rounds are grouped into ~20 ms blocks, retaken whole."""
    proc = FakeProc(tmp_path)
    calls = []

    def run() -> None:
        time.sleep(0.001)

    def loaded() -> None:
        calls.append(1)
        time.sleep(0.001)
        if len(calls) == 5:  # one pass in the second block (the first block is a single round)
            proc.tick(other=5, cpu=0)

    rounds = run_rounds([run, loaded], CpuTimer(), repeats=10, probe=CpuDisturbanceProbe(proc=tmp_path, cpus={0, 1}),
                        min_check_s=0.02, sleep=lambda _s: None)
    assert rounds.clean >= 10 and not rounds.noisy
    assert rounds.taken - rounds.clean >= 5, "the disturbed block is discarded whole, not just its one round"
    assert all(r.other_fraction == 0 for r in rounds.used)


def test_median_ci95_uses_the_textbook_order_statistics():
    assert median_ci95(list(range(1, 31))) == (10, 21)
    assert median_ci95(list(range(1, 101))) == (40, 61)
    assert median_ci95([7.0]) == (7.0, 7.0)


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
    g = measure_paired(model, _conv(64).cuda(), x, warmup=3, repeats=10, cuda_graph=True)
    assert g.info.timer == "cuda-graph" and g.speedup > 0
    assert torch.backends.cudnn.benchmark is False, "cudnn.benchmark is restored after timing"
