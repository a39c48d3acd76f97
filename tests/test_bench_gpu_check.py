"""bench/gpu_check.py's logic on the CPU: each check's verdict, and the meter checks through the stand-in NVML."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from fake_hardware import FakeNvml
from helpers import ROOT, bench_module

from moprune.measure.energy import NvmlCounterMeter, NvmlSampledMeter
from moprune.measure.nvml import NvmlDevice

gc = bench_module("gpu_check")


class FakeClock:
    """Time that moves only when a fake kernel runs: the timing check without timing luck."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def kernel(self) -> None:
        self.now += 0.001  # one pass: 1 ms


class ClockTimer:
    """A timer on the fake clock that reads ``scale`` times the truth (1.0: an honest one)."""

    def __init__(self, clock: FakeClock, scale: float = 1.0):
        self.clock, self.scale, self.t0 = clock, scale, 0.0

    def start(self) -> None:
        self.t0 = self.clock()

    def stop(self) -> float:
        return (self.clock() - self.t0) * 1e3 * self.scale


def test_help_lists_the_checks_without_a_gpu():
    out = subprocess.run([sys.executable, "bench/gpu_check.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for check in ("event timing", "graph on device", "speedup", "nvml period", "counter vs samples", "energy repeat",
                  "study", "--quick", "--tests"):
        assert check in out.stdout


@pytest.mark.parametrize("scale, state", [(1.0, "PASS"), (1.015, "PASS"), (0.9, "FAIL"), (1.05, "FAIL")])
def test_event_timing_passes_within_two_percent_of_the_wall_clock(scale, state):
    clock = FakeClock()
    check = gc.check_event_timing(clock.kernel, ClockTimer(clock, scale), lambda: None, clock=clock)
    assert check.state == state
    assert check.values["wall_ms"] == pytest.approx(20.0)  # 20 passes of 1 ms


def test_graph_verdict_fails_an_empty_or_failed_capture_and_warns_with_one_gpu():
    assert gc.graph_verdict(None, 2.0, model_device="cuda:1", current_device="cuda:0").state == "FAIL"
    empty = gc.graph_verdict(0.05, 2.0, model_device="cuda:1", current_device="cuda:0")
    assert empty.state == "FAIL" and "does not do the work" in empty.detail
    assert gc.graph_verdict(1.6, 2.0, model_device="cuda:1", current_device="cuda:0").state == "PASS"
    one = gc.graph_verdict(1.6, 2.0, model_device="cuda:0", current_device="cuda:0")
    assert one.state == "WARN" and "needs two" in one.detail


def test_speedup_and_period_and_study_verdicts_use_their_thresholds():
    assert [gc.speedup_verdict("graph", s, 3.7, "eager").state for s in (3.0, 1.3, 1.02)] == ["PASS", "WARN", "FAIL"]
    assert [gc.speedup_verdict("eager", s, 3.7, "eager").state for s in (1.02, 0.97)] == ["WARN", "FAIL"], \
        "eager passes may be launch-bound; slower than dense is wrong anywhere"
    assert gc.period_verdict(0.1, measured=True).state == "PASS"
    assert gc.period_verdict(0.1, measured=False).state == "WARN"
    timings = [{"prune": 1.0, "measure": 2.0, "finetune": 7.0}] * 3
    assert gc.study_verdict([500.0, 520.0], timings).state == "PASS"
    assert gc.study_verdict([500.0, 900.0], timings).state == "FAIL", "memory grew by 400 MiB"
    heavy = gc.study_verdict([500.0, 500.0], [{"measure": 6.0, "finetune": 4.0}])
    assert heavy.state == "WARN" and heavy.values["outside_finetune"] == pytest.approx(0.6)


def test_energy_repeat_wants_tight_readings_and_the_pruned_model_below_dense():
    assert gc.energy_verdict([10.0, 10.2, 10.1], [30.0, 30.3, 29.9]).state == "PASS"
    assert gc.energy_verdict([10.0, 12.0, 10.1], [30.0, 30.3, 29.9]).state == "FAIL", "a 20% spread"
    assert gc.energy_verdict([10.0, 10.2, 31.0], [30.0, 30.3, 29.9]).state == "FAIL", "pruned above dense once"


def test_the_nvml_checks_run_through_the_stand_in_nvml():
    nvml = FakeNvml("volta", watts=60.0)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        counter = NvmlCounterMeter(gpu)
        counter.measure_update_period()
        period = gc.period_verdict(counter.update_period_s, counter.period_measured)
        assert period.state == "PASS" and period.values["period_ms"] == pytest.approx(100.0, rel=0.2)

        def start_load():  # 250 W for the window and three counter periods, in the background like queued passes
            nvml.trace.set(250.0)
            done = threading.Timer(1.0 + 3 * counter.update_period_s, nvml.trace.set, args=(60.0,))
            done.start()
            return done.join

        check = gc.counter_vs_samples(start_load, counter, NvmlSampledMeter(gpu, sample_ms=10.0), window_s=1.0)
    assert check.state == "PASS", check.detail
    assert check.values["counter_mj"] == pytest.approx(250.0 * 1e3 * 1.0, rel=0.15)  # ~250 W over ~1 s


def test_the_study_the_check_runs_is_a_valid_spec(tmp_path):
    from moprune.spec import parse_spec

    spec = parse_spec(gc.study_spec("cuda:0", 30, tmp_path), source="test")
    assert spec.search.n_trials == 30 and spec.data.name == "fake" and "energy_mj" in spec.objectives
    assert spec.measure.cuda_graph and spec.measure.batch_size == 256
