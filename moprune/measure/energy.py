"""Energy of one forward pass (``energy_mj``): a window of repeated passes on a real meter, idle power subtracted.

Meters, all with ``start()`` / ``stop() -> mJ`` and ``window_s`` (the span the last reading covers):

- ``nvml-counter``: NVML's total-energy counter (Volta and newer). It moves in steps about every 100 ms, so each
  window starts and ends on a step (the meter polls for it): the reading then covers exactly ``window_s``.
- ``nvml-sampled``: older GPUs; a thread reads power every ``power_sample_ms`` and the trapezoid rule integrates.
- ``rapl``: CPU package energy from Linux powercap (``rapl.py``).

Where none exists there is no ``energy_mj``: ``open_energy_meter`` raises ``NoEnergyMeter`` naming what it looked
for, and the spec check turns that into exit 2. Nothing here ever estimates energy from time or MACs.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import torch

from ..errors import MopruneError
from .integrate import trapezoid_energy_mj
from .nvml import NvmlDevice, NvmlUnavailable
from . import rapl
from .rapl import RaplMeter, RaplUnavailable

ENERGY_METHODS = ("nvml-counter", "nvml-sampled", "rapl")
#: A window must span this many meter updates, or quantisation dominates the reading.
MIN_UPDATES_PER_WINDOW = 10


class EnergyMeter(Protocol):
    method: str  # one of ENERGY_METHODS
    unit: str  # "mJ"
    update_period_s: float  # how often the reading can change
    window_s: float  # the span of time the last ``stop()`` reading covers

    def start(self) -> None: ...

    def stop(self) -> float: ...


class NoEnergyMeter(MopruneError):
    """This device has no energy meter moprune can read; ``looked_for`` lists each meter tried and why it failed."""

    def __init__(self, device: str, looked_for: list[str]):
        self.device = device
        self.looked_for = tuple(looked_for)
        super().__init__(f"no energy meter for {device}: " + "; ".join(looked_for))


class EnergyMeasurementError(MopruneError):
    """A window whose reading cannot be a forward pass's energy (zero, or below idle)."""


class NvmlCounterMeter:
    """Differences of NVML's total-energy counter (mJ), each window aligned on the counter's update steps."""

    method = "nvml-counter"
    unit = "mJ"
    #: What NVIDIA documents for recent GPUs, until ``measure_update_period`` has measured this device's.
    ASSUMED_PERIOD_S = 0.1

    def __init__(self, device: NvmlDevice, *, poll_s: float = 0.001):
        self.device = device
        self.poll_s = poll_s
        self.window_s = 0.0
        self.update_period_s = self.ASSUMED_PERIOD_S
        self.period_measured = False
        self._start: tuple[int, float] | None = None

    def measure_update_period(self, steps: int = 4, max_s: float = 2.0) -> float:
        """Time ``steps`` updates of the counter and keep their median interval as ``update_period_s``.

        The window's length, the idle reading and the check that a window spans enough updates all depend on it;
        GPUs differ (about 20-100 ms), so it is measured once per process rather than assumed. A counter that does
        not move within ``max_s`` (an idle GPU whose counter stands still) keeps the assumed period.
        """
        seen: list[float] = []
        last = self.device.total_energy_mj()
        deadline = time.perf_counter() + max_s
        while len(seen) < steps + 1 and time.perf_counter() < deadline:
            value = self.device.total_energy_mj()
            if value != last:
                seen.append(time.perf_counter())
                last = value
            time.sleep(self.poll_s)
        if len(seen) >= 3:
            gaps = sorted(b - a for a, b in zip(seen, seen[1:]))
            self.update_period_s = gaps[len(gaps) // 2]
            self.period_measured = True
        return self.update_period_s

    def _next_step(self) -> tuple[int, float]:
        """Poll until the counter moves (at most ~3 update periods): the reading and the time it was seen."""
        first = self.device.total_energy_mj()
        deadline = time.perf_counter() + 3 * self.update_period_s
        while True:
            value, now = self.device.total_energy_mj(), time.perf_counter()
            if value != first or now > deadline:
                return value, now
            time.sleep(self.poll_s)

    def start(self) -> None:
        self._start = self._next_step()

    def stop(self) -> float:
        if self._start is None:
            raise RuntimeError("NvmlCounterMeter.stop() called without start()")
        end, t_end = self._next_step()
        (start, t_start), self._start = self._start, None
        if end < start:
            raise EnergyMeasurementError(f"the NVML energy counter went backwards ({start} -> {end} mJ); "
                                         "was the driver reloaded?")
        self.window_s = t_end - t_start
        return float(end - start)


class NvmlSampledMeter:
    """Power sampled by a background thread every ``sample_ms`` and integrated (trapezoid rule) over the window."""

    method = "nvml-sampled"
    unit = "mJ"

    def __init__(self, device: NvmlDevice, *, sample_ms: float = 10.0):
        self.device = device
        self.update_period_s = sample_ms / 1e3
        self.window_s = 0.0
        self.times_s: list[float] = []
        self.power_w: list[float] = []
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._error: Exception | None = None

    def _sample(self) -> None:
        before = time.perf_counter()
        watts = self.device.power_w()
        self.times_s.append((before + time.perf_counter()) / 2)
        self.power_w.append(watts)

    def _loop(self) -> None:
        while not self._halt.wait(self.update_period_s):
            try:
                self._sample()
            except Exception as exc:  # surfaced by stop(): a silent sampler would integrate a gap
                self._error = exc
                return

    def start(self) -> None:
        self.times_s, self.power_w, self._error = [], [], None
        self._halt.clear()
        self._sample()  # the window opens on a sample
        self._thread = threading.Thread(target=self._loop, name="moprune-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        if self._thread is None:
            raise RuntimeError("NvmlSampledMeter.stop() called without start()")
        self._halt.set()
        self._thread.join()
        self._thread = None
        try:
            if self._error is not None:
                raise self._error
            self._sample()  # ... and closes on one
        except Exception as exc:  # a gap in the trace would be integrated as a straight line: refuse it
            raise EnergyMeasurementError(f"power sampling failed: {type(exc).__name__}: {exc}") from exc
        self.window_s = self.times_s[-1] - self.times_s[0]
        return trapezoid_energy_mj(self.times_s, self.power_w)


def open_energy_meter(device: torch.device | str, *, sample_ms: float = 10.0, nvml: ModuleType | None = None,
                      powercap: Path | None = None) -> EnergyMeter:
    """The best meter for ``device``: NVML counter, else NVML sampling on a GPU; RAPL on the CPU.

    ``nvml`` (a pynvml-like module) and ``powercap`` (default ``rapl.POWERCAP``) say where the hardware is read.
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:
            gpu = NvmlDevice.open(device, nvml=nvml)
        except NvmlUnavailable as exc:
            raise NoEnergyMeter(str(device), [f"NVML: {exc}"]) from None
        if gpu.has_energy_counter():
            meter = NvmlCounterMeter(gpu)
            meter.measure_update_period()
            return meter
        if gpu.can_read_power():
            return NvmlSampledMeter(gpu, sample_ms=sample_ms)
        name = gpu.name()
        gpu.close()
        raise NoEnergyMeter(str(device), [f"NVML: {name} reports neither total energy nor power (NotSupported)"])
    if device.type == "cpu":
        try:
            return RaplMeter.open(powercap if powercap is not None else rapl.POWERCAP)
        except RaplUnavailable as exc:
            raise NoEnergyMeter(str(device), [f"RAPL: {exc}"]) from None
    raise NoEnergyMeter(str(device), [f"no energy meter is known for {device.type} devices"])


_METERS: dict[tuple[str, float], EnergyMeter] = {}
_METERS_LOCK = threading.Lock()


def energy_meter_for(device: torch.device, *, sample_ms: float = 10.0) -> EnergyMeter:
    """``open_energy_meter``, kept open for the process (NVML init and meter probing happen once).

    A missing meter is not remembered: the next call looks again (and gives the reason again).
    """
    key = (str(device), sample_ms)
    with _METERS_LOCK:
        if key not in _METERS:
            _METERS[key] = open_energy_meter(device, sample_ms=sample_ms)
        return _METERS[key]


@dataclass(frozen=True)
class EnergyMeasurement:
    energy_mj: float  # one forward pass, idle energy subtracted
    method: str
    idle_power_w: float  # measured just before the window, device idle
    window_s: float  # the span the meter read for the passes
    passes: int
    window_energy_mj: float  # the whole window, idle included


def check_window(meter: EnergyMeter, window_s: float) -> None:
    """Warn when the window spans fewer than 10 meter updates: the reading is then mostly quantisation."""
    periods = window_s / meter.update_period_s
    if periods < MIN_UPDATES_PER_WINDOW:
        warnings.warn(f"measure.energy_window_s={window_s} spans only {periods:.1f} updates of the {meter.method} "
                      f"meter (one every {meter.update_period_s * 1e3:.0f} ms); use at least "
                      f"{MIN_UPDATES_PER_WINDOW * meter.update_period_s:g} s", stacklevel=2)


def _close_quietly(meter: EnergyMeter) -> None:
    """End a window whose reading is not wanted (the error that ended it is what the caller sees)."""
    try:
        meter.stop()
    except Exception:  # noqa: BLE001 - the window's own error is already on its way up
        pass


#: Measured here: torch's intra-op threads kept 0.06-0.08 of a core busy during a 150-ms sleep right after passes,
#: and none after a 50-ms pause; an idle reading taken while they spin is not idle (RAPL counts them).
IDLE_SETTLE_S = 0.1


def idle_power(meter: EnergyMeter, *, idle_s: float, sync: Callable[[], None], settle_s: float = 0.0) -> float:
    """Watts the device draws with nothing running: the meter over ``idle_s`` after ``settle_s`` (plus a moment for
    torch's CPU worker threads, which spin a little after the last pass, to park)."""
    sync()
    time.sleep(settle_s + IDLE_SETTLE_S)
    meter.start()
    try:
        time.sleep(idle_s)
    except BaseException:
        _close_quietly(meter)
        raise
    idle_mj = meter.stop()
    if meter.window_s <= 0:
        raise EnergyMeasurementError(f"the {meter.method} meter read an idle window of {meter.window_s} s")
    return idle_mj / meter.window_s / 1e3


def measure_energy(run: Callable[[], object], meter: EnergyMeter, *, window_s: float, pass_ms: float,
                   sync: Callable[[], None], idle_s: float | None = None,
                   idle_power_w: float | None = None) -> EnergyMeasurement:
    """Energy per pass of ``run``: passes repeated for at least ``window_s``, minus idle power over that window.

    ``pass_ms`` (the measured latency) sizes the batches of passes between synchronisations, so the device stays busy
    for the whole window. Idle power is ``idle_power_w`` when the caller has it (a GPU's, read once when cold:
    ``moprune.measure.architecture``), else read just before over ``idle_s`` (default: min(window, 1 s), at least 5
    meter updates) with the device synchronised and nothing running.
    """
    check_window(meter, window_s)
    if idle_power_w is None:
        idle_s = idle_s if idle_s is not None else max(min(window_s, 1.0), 5 * meter.update_period_s)
        idle_power_w = idle_power(meter, idle_s=idle_s, sync=sync)

    chunk = max(1, math.ceil(window_s * 1e3 / max(pass_ms, 1e-3)))
    passes = 0
    sync()
    meter.start()
    try:
        t0 = time.perf_counter()
        while True:
            for _ in range(chunk):
                run()
            passes += chunk
            sync()  # the passes queued on a GPU are in the window only once finished
            elapsed = time.perf_counter() - t0
            if elapsed >= window_s:
                break
            chunk = max(1, math.ceil((window_s - elapsed) / elapsed * passes))
    except BaseException:
        _close_quietly(meter)  # a pass failed (OOM, Ctrl-C): no sampler thread may outlive the window
        raise
    total_mj = meter.stop()
    dynamic_mj = total_mj - idle_power_w * meter.window_s * 1e3
    if total_mj <= 0 or dynamic_mj <= 0:
        raise EnergyMeasurementError(
            f"the {meter.method} meter read {total_mj:.1f} mJ over {meter.window_s:.3f} s of {passes} passes, "
            f"not above idle ({idle_power_w:.2f} W); lengthen measure.energy_window_s or measure.batch_size")
    return EnergyMeasurement(dynamic_mj / passes, meter.method, idle_power_w, meter.window_s, passes, total_mj)
