"""Energy per forward pass: a window of passes on each meter, idle power subtracted, honest failures."""

from __future__ import annotations

import warnings

import pytest

from fake_hardware import FakeNvml, FakePowercap, PowerTrace, fake_work
from moprune.measure.energy import (EnergyMeasurementError, NvmlCounterMeter, NvmlSampledMeter, check_window,
                                    measure_energy)
from moprune.measure.nvml import NvmlDevice
from moprune.measure.rapl import RaplMeter

IDLE_W, BUSY_W, PASS_S = 50.0, 200.0, 0.004


def _per_pass_truth(trace: PowerTrace, before_j: float, passes: int) -> float:
    """The energy above idle that the passes really drew, per pass, in mJ."""
    return (trace.busy_energy_j(IDLE_W) - before_j) / passes * 1e3


def test_counter_meter_energy_per_pass_subtracts_idle():
    nvml = FakeNvml("volta", watts=IDLE_W)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlCounterMeter(gpu)
        before = nvml.trace.busy_energy_j(IDLE_W)
        result = measure_energy(fake_work(nvml.trace, busy_w=BUSY_W, idle_w=IDLE_W, seconds=PASS_S), meter,
                                window_s=1.0, pass_ms=PASS_S * 1e3, sync=lambda: None, idle_s=0.3)
    assert result.method == "nvml-counter"
    assert result.idle_power_w == pytest.approx(IDLE_W, rel=0.02)
    assert result.window_s >= 1.0 and result.passes >= 100
    assert result.energy_mj == pytest.approx(_per_pass_truth(nvml.trace, before, result.passes), rel=0.05)
    assert result.window_energy_mj > result.energy_mj * result.passes  # the window total still holds idle


def test_sampled_meter_energy_per_pass_subtracts_idle():
    nvml = FakeNvml("pascal", watts=IDLE_W)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlSampledMeter(gpu, sample_ms=10.0)
        before = nvml.trace.busy_energy_j(IDLE_W)
        result = measure_energy(fake_work(nvml.trace, busy_w=BUSY_W, idle_w=IDLE_W, seconds=PASS_S), meter,
                                window_s=0.3, pass_ms=PASS_S * 1e3, sync=lambda: None, idle_s=0.1)
    assert result.method == "nvml-sampled"
    assert result.idle_power_w == pytest.approx(IDLE_W, rel=0.01)
    assert len(meter.times_s) >= 20, "sampled every 10 ms over a 0.3 s window"
    assert result.energy_mj == pytest.approx(_per_pass_truth(nvml.trace, before, result.passes), rel=0.1)


def test_rapl_energy_per_pass_subtracts_idle(tmp_path):
    trace = PowerTrace(IDLE_W)
    with FakePowercap(tmp_path, joules=trace.energy_j) as cap:
        before = trace.busy_energy_j(IDLE_W)
        result = measure_energy(fake_work(trace, busy_w=BUSY_W, idle_w=IDLE_W, seconds=PASS_S),
                                RaplMeter.open(cap.root), window_s=0.5, pass_ms=PASS_S * 1e3, sync=lambda: None,
                                idle_s=0.4)
    assert result.method == "rapl"
    assert result.idle_power_w == pytest.approx(IDLE_W, rel=0.01)
    assert result.energy_mj == pytest.approx(_per_pass_truth(trace, before, result.passes), rel=0.15)


def test_a_window_shorter_than_ten_counter_updates_warns():
    with NvmlDevice.open("cuda:0", nvml=FakeNvml("volta")) as gpu:
        meter = NvmlCounterMeter(gpu)
        with pytest.warns(UserWarning, match=r"spans only 5.0 updates .* use at least 1 s"):
            check_window(meter, 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_window(meter, 1.0)


def test_work_that_draws_no_more_than_idle_is_an_error_not_a_number():
    nvml = FakeNvml("pascal", watts=IDLE_W)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        with pytest.raises(EnergyMeasurementError, match="not above idle"):
            measure_energy(fake_work(nvml.trace, busy_w=IDLE_W, idle_w=IDLE_W, seconds=PASS_S),
                           NvmlSampledMeter(gpu), window_s=0.1, pass_ms=PASS_S * 1e3, sync=lambda: None,
                           idle_s=0.05)


def test_the_window_is_synchronised_at_both_ends():
    calls: list[str] = []
    nvml = FakeNvml("pascal", watts=IDLE_W)
    work = fake_work(nvml.trace, busy_w=BUSY_W, idle_w=IDLE_W, seconds=PASS_S)

    def run() -> None:
        calls.append("run")
        work()

    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        result = measure_energy(run, NvmlSampledMeter(gpu), window_s=0.1, pass_ms=PASS_S * 1e3,
                                sync=lambda: calls.append("sync"), idle_s=0.02)
    assert calls[0] == "sync" and calls[-1] == "sync"
    assert calls.count("run") == result.passes


def test_a_failing_power_sampler_fails_the_window():
    nvml = FakeNvml("pascal", watts=IDLE_W)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlSampledMeter(gpu, sample_ms=5.0)
        meter.start()
        nvml.kind = "unsupported"  # the GPU stops answering mid-window
        with pytest.raises(EnergyMeasurementError, match="power sampling failed: NVMLError_NotSupported"):
            meter.stop()


def test_a_pass_that_fails_mid_window_leaves_no_sampler_thread_behind():
    import threading

    nvml = FakeNvml("pascal", watts=IDLE_W)
    work = fake_work(nvml.trace, busy_w=BUSY_W, idle_w=IDLE_W, seconds=PASS_S)
    calls = []

    def run() -> None:
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        work()

    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        with pytest.raises(RuntimeError, match="out of memory"):
            measure_energy(run, NvmlSampledMeter(gpu, sample_ms=5.0), window_s=0.2, pass_ms=PASS_S * 1e3,
                           sync=lambda: None, idle_s=0.05)
    assert not [t for t in threading.enumerate() if t.name == "moprune-power-sampler"]


def test_the_counters_update_period_is_measured_not_assumed():
    from fake_hardware import FakeNvml as Fake

    nvml = Fake("volta", watts=IDLE_W)
    nvml.COUNTER_PERIOD_S = 0.04  # a GPU whose counter moves every 40 ms, not the assumed 100
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlCounterMeter(gpu)
        assert meter.update_period_s == NvmlCounterMeter.ASSUMED_PERIOD_S and not meter.period_measured
        period = meter.measure_update_period()
    assert period == pytest.approx(0.04, abs=0.01) and meter.period_measured and meter.update_period_s == period


def test_a_counter_that_stands_still_keeps_the_assumed_period():
    nvml = FakeNvml("volta", watts=0.0)  # no power drawn: the counter never moves
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlCounterMeter(gpu)
        assert meter.measure_update_period(max_s=0.2) == NvmlCounterMeter.ASSUMED_PERIOD_S
    assert not meter.period_measured


def test_idle_power_given_by_the_caller_is_subtracted_without_a_second_idle_window():
    """A GPU's idle is read once, cold (moprune.measure.architecture), not after every trial's timing rounds."""
    nvml = FakeNvml("volta", watts=IDLE_W)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlCounterMeter(gpu)
        starts = []
        real_start = meter.start
        meter.start = lambda: (starts.append(1), real_start())[1]
        before = nvml.trace.busy_energy_j(IDLE_W)
        result = measure_energy(fake_work(nvml.trace, busy_w=BUSY_W, idle_w=IDLE_W, seconds=PASS_S), meter,
                                window_s=1.0, pass_ms=PASS_S * 1e3, sync=lambda: None, idle_power_w=IDLE_W)
    assert len(starts) == 1, "only the window of passes is read"
    assert result.idle_power_w == IDLE_W
    assert result.energy_mj == pytest.approx(_per_pass_truth(nvml.trace, before, result.passes), rel=0.05)


def test_a_gpus_cold_idle_is_read_once_per_device_after_a_cooldown(monkeypatch):
    import torch

    from moprune.measure import architecture
    from moprune.measure.settings import MeasureSettings

    slept = []
    monkeypatch.setattr(architecture, "_gpu_idle_w", {})
    monkeypatch.setattr("moprune.measure.energy.time.sleep", lambda s: slept.append(s))
    nvml = FakeNvml("volta", watts=IDLE_W)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlCounterMeter(gpu)
        meter.window_s = 1.0  # the stand-in clock does not advance under the patched sleep
        monkeypatch.setattr(meter, "stop", lambda: IDLE_W * 1e3 * meter.window_s)
        monkeypatch.setattr(meter, "start", lambda: None)
        device = torch.device("cuda:0")
        monkeypatch.setattr(architecture, "synchronize", lambda d: None)
        first = architecture.gpu_idle_power(meter, device, MeasureSettings())
        again = architecture.gpu_idle_power(meter, device, MeasureSettings())
    assert first == again == pytest.approx(IDLE_W)
    assert slept[0] >= architecture.GPU_IDLE_COOLDOWN_S, "the GPU cools down before its idle is read"
    assert len([s for s in slept if s >= architecture.GPU_IDLE_COOLDOWN_S]) == 1, "read once per device"
