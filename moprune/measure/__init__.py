"""Meters: model complexity (MACs, params), device-correct latency, and energy from real meters only.

``measure_architecture`` is what a trial calls: paired latency against the dense model and, where asked, energy per
pass, cached by the pruned shape. The pieces: ``timers`` (perf_counter, CUDA events, CUDA graphs), ``rounds`` and
``disturbance`` (alternating rounds, other processes' CPU use), ``energy`` with ``nvml`` (the only pynvml user),
``rapl`` and ``integrate`` (trapezoid rule), ``cache`` (by kept-channel signature), ``device`` (names, clocks).
"""

from .architecture import ArchitectureMeasurement, DeviceState, measure_architecture
from .cache import ARCHITECTURE_CACHE, ArchitectureCache, architecture_signature
from .complexity import Complexity, count_complexity
from .energy import (ENERGY_METHODS, EnergyMeasurement, EnergyMeasurementError, NoEnergyMeter, energy_meter_for,
                     measure_energy, open_energy_meter)
from .latency import (LatencyResult, PairedLatency, RoundsInfo, SingleLatency, latency_options, measure_latency,
                      measure_paired, measure_single)

__all__ = ["ARCHITECTURE_CACHE", "ArchitectureCache", "ArchitectureMeasurement", "Complexity", "DeviceState",
           "ENERGY_METHODS", "EnergyMeasurement", "EnergyMeasurementError", "LatencyResult", "NoEnergyMeter",
           "PairedLatency", "RoundsInfo", "SingleLatency", "architecture_signature", "count_complexity",
           "energy_meter_for", "latency_options", "measure_architecture", "measure_energy", "measure_latency",
           "measure_paired", "measure_single", "open_energy_meter"]
