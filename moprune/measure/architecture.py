"""Everything that depends only on a pruned architecture, measured once per shape: paired latency and energy.

This is the one call a trial makes (``objective.py``); its ``as_attrs()`` are the trial's user attrs, so a reader of
the study sees with every number how it was taken: timer, threads, rounds, disturbance, meter, idle power, clocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .cache import ARCHITECTURE_CACHE, ArchitectureCache, architecture_signature
from .device import device_name, driver_version, sm_clock_mhz
from .energy import EnergyMeasurement, energy_meter_for, measure_energy
from .latency import PairedLatency, latency_options, measure_paired
from .timers import cuda_graph_runner, cudnn_autotune, forward_runner, min_warmup, synchronize

if TYPE_CHECKING:
    from ..spec import MeasureSpec


@dataclass(frozen=True)
class DeviceState:
    device: str  # e.g. "cpu", "cuda:0"
    device_name: str
    driver: str | None  # NVIDIA driver version (GPUs with NVML)
    sm_clock_mhz_start: int | None  # a lower clock at the end than the start means the GPU throttled meanwhile
    sm_clock_mhz_end: int | None


@dataclass(frozen=True)
class ArchitectureMeasurement:
    latency: PairedLatency
    energy: EnergyMeasurement | None  # None when the study does not ask for energy
    device: DeviceState
    cached: bool = False  # reused from an earlier trial with the same shape
    screen: bool = False  # a quick measurement (exactly ``repeats`` rounds, no energy) for checking budgets

    @property
    def energy_mj(self) -> float | None:
        return self.energy.energy_mj if self.energy else None

    @property
    def energy_method(self) -> str | None:
        return self.energy.method if self.energy else None

    @property
    def idle_power_w(self) -> float | None:
        return self.energy.idle_power_w if self.energy else None

    @property
    def latency_noisy(self) -> bool | None:
        """True when clean rounds could not be had; None where rounds are not checked (GPU)."""
        info = self.latency.info
        if info is None or info.disturbance_check is None:
            return None
        return info.noisy

    def as_attrs(self) -> dict[str, Any]:
        """The trial user attrs: values, their spread, and how they were measured (JSON-able)."""
        lat, info, dev, e = self.latency, self.latency.info, self.device, self.energy
        attrs: dict[str, Any] = {
            "latency_ms": lat.candidate.median_ms,
            "latency_ms_p10": lat.candidate.p10_ms, "latency_ms_p90": lat.candidate.p90_ms,
            "dense_latency_ms": lat.reference.median_ms,
            "speedup": lat.speedup, "speedup_p10": lat.speedup_p10, "speedup_p90": lat.speedup_p90,
            "speedup_ci95": list(lat.speedup_ci95) if lat.speedup_ci95 else None,
            "latency_noisy": self.latency_noisy,
            "device": dev.device, "device_name": dev.device_name,
            "energy_mj": self.energy_mj, "energy_method": self.energy_method, "idle_power_w": self.idle_power_w,
            "measure_cached": self.cached, "latency_screen": self.screen,
        }
        if info is not None:
            attrs.update(latency_timer=info.timer, torch_threads=info.threads, latency_rounds=info.rounds,
                         latency_rounds_taken=info.taken, latency_rounds_clean=info.clean,
                         latency_disturbance_check=info.disturbance_check, latency_other_cpu=info.other_cpu)
        if dev.device.startswith("cuda"):
            attrs.update(driver=dev.driver, sm_clock_mhz_start=dev.sm_clock_mhz_start,
                         sm_clock_mhz_end=dev.sm_clock_mhz_end, cudnn_benchmark=True)
        if e is not None:
            attrs.update(energy_window_s=e.window_s, energy_passes=e.passes)
        return attrs


def measure_architecture(model: nn.Module, reference: nn.Module, inputs: torch.Tensor, measure: MeasureSpec, *,
                         device: torch.device, want_energy: bool, screen: bool = False,
                         cache: ArchitectureCache | None = ARCHITECTURE_CACHE) -> ArchitectureMeasurement:
    """Paired latency against ``reference`` and, if ``want_energy``, energy per pass; reused for a known shape.

    ``inputs`` is a batch of ``measure.batch_size`` (moved to ``device`` first if it is elsewhere, never while
    timing). A cached measurement is reused only when it was clean (not ``latency_noisy``) and has what is asked.
    ``screen=True`` takes ``measure.repeats`` rounds (no precision target) and no energy: enough to see that a plan
    is clearly over a latency budget before paying for the precise measurement (a cached precise one is returned
    when there is one).
    Raises ``NoEnergyMeter`` when energy is asked on a device without a meter (the spec check prevents this).
    """
    if screen:
        want_energy = False
    if measure.threads:
        torch.set_num_threads(measure.threads)
    if inputs.device != device:
        inputs = inputs.to(device)
    # every measure setting is in the key: a study that changes one measures again rather than reuse
    key = (architecture_signature(model), architecture_signature(reference), str(device), tuple(inputs.shape),
           torch.get_num_threads(), measure.model_dump_json(), want_energy)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None and hit.latency_noisy is not True:
            return dataclasses.replace(hit, cached=True)

    clock_start = sm_clock_mhz(device)
    options = latency_options(measure)
    if screen:
        options.update(ci_half_width=None, max_repeats=measure.repeats)
    latency = measure_paired(model, reference, inputs, **options)
    energy = None
    if want_energy:
        meter = energy_meter_for(device, sample_ms=measure.power_sample_ms)
        # the same kernels as timed: cuDNN autotuning on, its warm-up outside the window, graphs if asked
        with torch.inference_mode(), cudnn_autotune(device):
            run = (cuda_graph_runner(model, inputs) if device.type == "cuda" and measure.cuda_graph else None
                   ) or forward_runner(model.eval(), inputs)
            for _ in range(min_warmup(device, measure.warmup)):
                run()
            energy = measure_energy(run, meter, window_s=measure.energy_window_s,
                                    pass_ms=latency.candidate.median_ms, sync=lambda: synchronize(device))
    state = DeviceState(str(device), device_name(device), driver_version(device), clock_start, sm_clock_mhz(device))
    result = ArchitectureMeasurement(latency, energy, state, screen=screen)
    if cache is not None and not screen:  # a screen is never mistaken for the precise measurement
        cache.put(key, result)
    return result


__all__ = ["ArchitectureMeasurement", "DeviceState", "measure_architecture"]
