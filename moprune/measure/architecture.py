"""Everything that depends only on a pruned architecture, measured once per shape: paired latency and energy.

This is the one call that trials, the dense baseline, the sensitivity scan and ``moprune evaluate`` make, with the
study's ``MeasureSettings``; the trial record (``moprune.record``) keeps with every number how it was taken.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..torch_state import torch_threads
from .allocator import steady_cpu_allocator
from .cache import ArchitectureCache, architecture_signature
from .device import device_name, driver_version, gpu_conditions, sm_clock_mhz
from .energy import EnergyMeasurement, energy_meter_for, idle_power, measure_energy
from .latency import LatencyResult, PairedLatency, measure_paired, measure_single
from .runtimes import prepare, prepare_reference
from .settings import MeasureSettings
from .timers import cuda_graph_runner, cudnn_autotune, forward_runner, min_warmup, synchronize


@dataclass(frozen=True)
class DeviceState:
    device: str  # e.g. "cpu", "cuda:0"
    device_name: str
    driver: str | None  # NVIDIA driver version (GPUs with NVML)
    sm_clock_mhz_start: int | None  # a lower clock at the end than the start means the GPU throttled meanwhile
    sm_clock_mhz_end: int | None
    conditions: tuple[tuple[str, object], ...] = ()  # GPU: clock reasons, temperature, power limit, MIG at the end


@dataclass(frozen=True)
class ArchitectureMeasurement:
    latency: PairedLatency
    energy: EnergyMeasurement | None  # None when the study does not ask for energy
    device: DeviceState
    cached: bool = False  # reused from an earlier trial with the same shape
    screen: bool = False  # a quick measurement (exactly ``repeats`` rounds, no energy) for checking budgets
    paired: bool = True  # False: timed alone (no dense reference), so there is no speedup
    # the dense model's window right after the candidate's, when paired: the energy ratio survives the GPU's drift in
    # clocks and temperature between trials the way the latency ratio does
    dense_energy: EnergyMeasurement | None = None
    runtime: str = "eager float32"  # what ran the passes (Runtime.describe, or ONNX Runtime's provider)
    prepare_s: float = 0.0  # compiling / exporting the candidate for its runtime: recorded, never timed

    @property
    def energy_mj(self) -> float | None:
        return self.energy.energy_mj if self.energy else None

    @property
    def energy_ratio(self) -> float | None:
        """Dense energy per pass / the candidate's, from back-to-back windows (None unless both were measured)."""
        if self.energy is None or self.dense_energy is None or self.energy.energy_mj <= 0:
            return None
        return self.dense_energy.energy_mj / self.energy.energy_mj

    @property
    def energy_method(self) -> str | None:
        return self.energy.method if self.energy else None

    @property
    def idle_power_w(self) -> float | None:
        return self.energy.idle_power_w if self.energy else None

    @property
    def latency_noisy(self) -> bool | None:
        """True when clean rounds could not be had (CPU: other processes' load; GPU: another process with a compute
        context on the device, which time-slices the rounds); None where nothing could check."""
        processes = dict(self.device.conditions).get("compute_processes")
        if processes is not None:
            return processes > 1
        info = self.latency.info
        if info is None or info.disturbance_check is None:
            return None
        return info.noisy


def measure_architecture(model: nn.Module, reference: nn.Module | None, inputs: torch.Tensor,
                         settings: MeasureSettings, *, device: torch.device, want_energy: bool, screen: bool = False,
                         cache: ArchitectureCache | None = None) -> ArchitectureMeasurement:
    """Paired latency against ``reference`` and, if ``want_energy``, energy per pass; reused for a known shape.

    ``inputs`` is a batch of ``settings.batch_size`` (moved to ``device`` first if it is elsewhere, never while
    timing). ``reference=None`` times the model alone (no speedup): ``moprune evaluate`` without the dense weights.
    A cached measurement is reused only when it was clean (not ``latency_noisy``) and has what is asked.
    ``screen=True`` takes ``settings.repeats`` rounds (no precision target) and no energy: enough to see that a plan
    is clearly over a latency budget before paying for the precise measurement; a screen is never cached.
    Torch's thread count is ``settings.threads`` for the call and restored after it.
    Raises ``NoEnergyMeter`` when energy is asked on a device without a meter (the spec check prevents this).
    """
    if screen:
        want_energy = False
    if device.type == "cpu":
        steady_cpu_allocator()  # before the first timing of the process: see moprune.measure.allocator
    if inputs.device != device:
        inputs = inputs.to(device)
    with torch_threads(settings.threads) as threads:
        # every setting is in the key: a study that changes one measures again rather than reuse; a screen looks up
        # the precise measurement of its settings (which serves it), and is never stored itself
        key = (architecture_signature(model), architecture_signature(reference) if reference is not None else None,
               str(device), tuple(inputs.shape), threads, settings.key(), want_energy)
        if cache is not None:
            hit = cache.get(key)
            if hit is not None and hit.latency_noisy is not True:
                return dataclasses.replace(hit, cached=True)
        if screen:
            settings = settings.screen()
        # the runtime's form of both models (compiled, exported, cast): prepared before any timing, the dense one
        # once per study
        candidate = prepare(model, inputs, settings.runtime)
        x = candidate.inputs
        clock_start = sm_clock_mhz(device)
        if reference is not None:
            dense = prepare_reference(reference, inputs, settings.runtime)
            latency = measure_paired(candidate.model, dense.model, x, **settings.latency_options())
        else:
            single = measure_single(candidate.model, x, **settings.latency_options())
            nan = float("nan")
            latency = PairedLatency(single.latency, LatencyResult(nan, nan, nan, ()), nan, nan, nan, single.info)
        energy = dense_energy = None
        if want_energy:
            # paired: two windows of half the span each (never under ten meter updates), about the cost of one
            # window and the idle reading it replaced
            share = 0.5 if reference is not None else 1.0
            energy = energy_per_pass(candidate.model, x, settings, device, latency.candidate.median_ms, share=share)
            if reference is not None:
                dense_energy = energy_per_pass(dense.model, x, settings, device, latency.reference.median_ms,
                                               share=share)
        state = DeviceState(str(device), device_name(device), driver_version(device), clock_start,
                            sm_clock_mhz(device), tuple(gpu_conditions(device).items()))
    result = ArchitectureMeasurement(latency, energy, state, screen=screen, paired=reference is not None,
                                     dense_energy=dense_energy,
                                     runtime=candidate.runtime, prepare_s=round(candidate.prepare_s, 3))
    if cache is not None and not screen:
        cache.put(key, result)
    return result


#: A GPU's idle power is read once per process and device, this long after its last work: right after the timing
#: rounds a GPU still draws well above idle for a while (clocks and fans up), and subtracting that warm reading would
#: take real work out of every pass's energy. It also keeps a second idle window out of every trial.
GPU_IDLE_COOLDOWN_S = 2.0
_gpu_idle_w: dict[str, float] = {}


def gpu_idle_power(meter, device: torch.device, settings: MeasureSettings) -> float:
    """The device's cold idle power (W), read the first time it is asked for, then kept."""
    key = str(device)
    if key not in _gpu_idle_w:
        idle_s = max(min(settings.energy_window_s, 1.0), 5 * meter.update_period_s)
        _gpu_idle_w[key] = idle_power(meter, idle_s=idle_s, sync=lambda: synchronize(device),
                                      settle_s=GPU_IDLE_COOLDOWN_S)
    return _gpu_idle_w[key]


def energy_per_pass(model: nn.Module, inputs: torch.Tensor, settings: MeasureSettings, device: torch.device,
                    pass_ms: float, *, share: float = 1.0) -> EnergyMeasurement:
    """Energy of one forward pass, run as it was timed: cuDNN autotuning on, warm-up outside the window, CUDA
    graphs if asked. The one implementation of the energy window (trials and ``moprune evaluate`` alike)."""
    meter = energy_meter_for(device, sample_ms=settings.power_sample_ms)
    idle_w = gpu_idle_power(meter, device, settings) if device.type == "cuda" else None
    with torch.inference_mode(), cudnn_autotune(device):
        run = (cuda_graph_runner(model, inputs) if device.type == "cuda" and settings.cuda_graph else None
               ) or forward_runner(model.eval(), inputs)
        for _ in range(min_warmup(device, settings.warmup)):
            run()
        window_s = max(settings.energy_window_s * share, min(settings.energy_window_s, 10 * meter.update_period_s))
        return measure_energy(run, meter, window_s=window_s, pass_ms=pass_ms,
                              sync=lambda: synchronize(device), idle_power_w=idle_w)


__all__ = ["ArchitectureMeasurement", "DeviceState", "energy_per_pass", "measure_architecture"]
