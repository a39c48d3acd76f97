"""One suite for every meter (CPU timer, CUDA timer, NVML counter, NVML sampler, RAPL), as Optuna tests its storages.

Each case gives a meter and the rate it must read while work runs (ms per second for timers, mJ per second = mW for
energy meters, from a stand-in whose power is known). Cases that need a GPU are marked ``gpu`` and skip without one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch

from fake_hardware import FakeNvml, FakePowercap
from moprune.measure.energy import ENERGY_METHODS, NvmlCounterMeter, NvmlSampledMeter, open_energy_meter
from moprune.measure.nvml import NvmlDevice
from moprune.measure.rapl import RaplMeter
from moprune.measure.timers import CpuTimer, CudaTimer, Meter

WORK_S = 0.12


@dataclass
class MeterCase:
    meter: Meter
    rate_per_s: float | None  # the reading per second of work; None where the true rate is unknown (real hardware)
    rel_tol: float
    span: Callable[[Meter, float], float]  # the seconds the last reading covers, given the work's wall time


def _wall(_meter: Meter, wall_s: float) -> float:
    return wall_s


def _window(meter: Meter, _wall_s: float) -> float:
    return meter.window_s  # type: ignore[attr-defined]


def _cpu_timer() -> Iterator[MeterCase]:
    yield MeterCase(CpuTimer(), 1e3, 0.05, _wall)


def _cuda_timer() -> Iterator[MeterCase]:
    yield MeterCase(CudaTimer(torch.device("cuda:0")), 1e3, 0.05, _wall)


def _nvml_counter() -> Iterator[MeterCase]:
    nvml = FakeNvml("volta", watts=120.0)
    with NvmlDevice.open("cuda:0", nvml=nvml) as gpu:
        meter = NvmlCounterMeter(gpu)
        yield MeterCase(meter, 120.0 * 1e3, 0.03, _window)
    assert nvml.inits == 0, "NVML init and shutdown must pair up"


def _nvml_sampled() -> Iterator[MeterCase]:
    with NvmlDevice.open("cuda:0", nvml=FakeNvml("pascal", watts=75.0)) as gpu:
        yield MeterCase(NvmlSampledMeter(gpu, sample_ms=10.0), 75.0 * 1e3, 0.01, _window)


def _rapl(tmp_path) -> Iterator[MeterCase]:
    with FakePowercap(tmp_path / "powercap", watts=40.0) as cap:
        yield MeterCase(RaplMeter.open(cap.root), 40.0 * 1e3, 0.01, _window)


def _real_nvml() -> Iterator[MeterCase]:
    yield MeterCase(open_energy_meter("cuda:0"), None, 0.0, _window)


CASES = [
    pytest.param("cpu-timer", id="cpu-timer"),
    pytest.param("cuda-timer", id="cuda-timer", marks=pytest.mark.gpu),
    pytest.param("nvml-counter", id="nvml-counter"),
    pytest.param("nvml-sampled", id="nvml-sampled"),
    pytest.param("rapl", id="rapl"),
    pytest.param("real-nvml", id="real-nvml", marks=pytest.mark.gpu),
]


@pytest.fixture(params=CASES)
def case(request, tmp_path) -> Iterator[MeterCase]:
    factories = {"cpu-timer": _cpu_timer, "cuda-timer": _cuda_timer, "nvml-counter": _nvml_counter,
                 "nvml-sampled": _nvml_sampled, "rapl": lambda: _rapl(tmp_path), "real-nvml": _real_nvml}
    yield from factories[request.param]()


def _window_of_work(meter: Meter, seconds: float) -> tuple[float, float]:
    start = time.perf_counter()
    meter.start()
    time.sleep(seconds)
    reading = meter.stop()
    return reading, time.perf_counter() - start


def test_names_its_method_and_unit(case):
    m = case.meter
    assert m.method in ("perf_counter", "cuda-events", *ENERGY_METHODS)
    assert m.unit == ("ms" if m.method in ("perf_counter", "cuda-events") else "mJ")


def test_reads_the_known_rate_over_the_span_it_covers(case):
    if case.rate_per_s is None:
        pytest.skip("real hardware: the true rate is unknown")
    reading, wall = _window_of_work(case.meter, WORK_S)
    span = case.span(case.meter, wall)
    assert span >= WORK_S * 0.95, "the reading must cover the whole of the work"
    assert reading == pytest.approx(case.rate_per_s * span, rel=case.rel_tol)


def test_longer_work_reads_more(case):
    short, _ = _window_of_work(case.meter, WORK_S / 2)
    long, _ = _window_of_work(case.meter, WORK_S * 2)
    assert long > short * 1.5


def test_an_empty_window_reads_nothing_negative(case):
    reading, _ = _window_of_work(case.meter, 0.0)
    assert reading >= 0


def test_stop_without_start_is_an_error_not_a_number(case):
    with pytest.raises(RuntimeError, match="without start"):
        case.meter.stop()


def test_one_meter_serves_consecutive_windows(case):
    first, _ = _window_of_work(case.meter, WORK_S)
    second, _ = _window_of_work(case.meter, WORK_S)
    assert first > 0 and second > 0
    if case.rate_per_s is not None:
        assert second == pytest.approx(first, rel=0.6)
