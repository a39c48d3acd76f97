"""Meters: model complexity (MACs, params) and device-correct latency. Energy joins here (see energy.py)."""

from .complexity import Complexity, count_complexity
from .latency import LatencyResult, PairedLatency, measure_latency, measure_paired

__all__ = ["Complexity", "LatencyResult", "PairedLatency", "count_complexity", "measure_latency", "measure_paired"]
