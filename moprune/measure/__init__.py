"""Meters: model complexity (MACs, params), device-correct latency, and energy from real meters only.

``measure_architecture`` is the one call for a model's latency (paired against the dense model) and, where asked,
energy per pass, with the study's ``MeasureSettings``. The pieces: ``timers`` (perf_counter, CUDA events, CUDA
graphs), ``rounds`` and ``disturbance`` (alternating rounds, other processes' CPU use), ``energy`` with ``nvml`` (the
only pynvml user), ``rapl`` and ``integrate`` (trapezoid rule), ``cache`` (by kept-channel signature), ``device``
(names, clocks), ``allocator`` (glibc's malloc thresholds fixed for steady CPU timing). Meters know nothing of studies, pruning or training.
"""

from .allocator import steady_cpu_allocator
from .architecture import ArchitectureMeasurement, DeviceState, energy_per_pass, measure_architecture
from .cache import ArchitectureCache, architecture_signature
from .complexity import Complexity, count_complexity
from .device import device_name, resolve_device
from .energy import (ENERGY_METHODS, EnergyMeasurement, EnergyMeasurementError, NoEnergyMeter, energy_meter_for,
                     measure_energy, open_energy_meter)
from .latency_model import FEATURES, LatencyModel, cost_features, fit_latency_model
from .latency import LatencyResult, PairedLatency, RoundsInfo, SingleLatency, measure_latency, measure_paired, measure_single
from .settings import MeasureSettings

__all__ = ["ArchitectureCache", "ArchitectureMeasurement", "Complexity", "DeviceState", "ENERGY_METHODS",
           "EnergyMeasurement", "EnergyMeasurementError", "FEATURES", "LatencyModel", "LatencyResult", "MeasureSettings", "NoEnergyMeter",
           "PairedLatency", "RoundsInfo", "SingleLatency", "architecture_signature", "cost_features", "count_complexity", "device_name",
           "energy_meter_for", "energy_per_pass", "fit_latency_model", "measure_architecture", "measure_energy", "measure_latency",
           "measure_paired", "measure_single", "open_energy_meter", "resolve_device", "steady_cpu_allocator"]
