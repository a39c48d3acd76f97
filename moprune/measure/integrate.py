"""Energy from a power trace: the trapezoid rule over irregular sample times.

Power meters without an energy counter (NVML before Volta) are sampled by a thread whose wake-ups drift, so sample
times are irregular; the trapezoid rule takes each interval at its own width. Between two samples it assumes power
moved linearly, so it is exact for constant and piecewise-linear power, and for a step when the step is sampled on
both sides at one instant (two samples with the same time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def trapezoid_energy_mj(times_s: Sequence[float], power_w: Sequence[float]) -> float:
    """Energy in mJ of the trace ``power_w`` (W) sampled at ``times_s`` (s, non-decreasing), first to last sample."""
    if len(times_s) != len(power_w):
        raise ValueError(f"{len(times_s)} sample times but {len(power_w)} power readings")
    if len(times_s) < 2:
        raise ValueError(f"a power trace needs at least 2 samples to span a window (got {len(times_s)})")
    t = np.asarray(times_s, dtype=float)
    steps = np.diff(t)
    if (steps < 0).any():
        k = int(np.argmax(steps < 0)) + 1
        raise ValueError(f"sample times must not decrease (sample {k}: {times_s[k]} after {times_s[k - 1]})")
    return float(np.trapezoid(np.asarray(power_w, dtype=float), t)) * 1e3


def power_at(times_s: Sequence[float], power_w: Sequence[float], t_s: float) -> float:
    """Power at ``t_s`` by linear interpolation between the samples around it (``t_s`` must lie within the trace)."""
    if not times_s or t_s < times_s[0] or t_s > times_s[-1]:
        raise ValueError(f"t={t_s} s lies outside the trace")
    for k in range(1, len(times_s)):
        if t_s <= times_s[k]:
            t0, t1 = times_s[k - 1], times_s[k]
            if t1 == t0:
                return power_w[k]
            return power_w[k - 1] + (power_w[k] - power_w[k - 1]) * (t_s - t0) / (t1 - t0)
    return power_w[-1]


def window_energy_mj(times_s: Sequence[float], power_w: Sequence[float], start_s: float, end_s: float) -> float:
    """Energy in mJ between ``start_s`` and ``end_s`` only, interpolating power at both edges of the window."""
    if end_s < start_s:
        raise ValueError(f"window ends ({end_s} s) before it starts ({start_s} s)")
    inside = [(t, p) for t, p in zip(times_s, power_w) if start_s < t < end_s]
    ts = [start_s, *(t for t, _ in inside), end_s]
    ps = [power_at(times_s, power_w, start_s), *(p for _, p in inside), power_at(times_s, power_w, end_s)]
    return trapezoid_energy_mj(ts, ps)
