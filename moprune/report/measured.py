"""How a study's numbers were measured, summarised from the trials' own user attrs, for status and Pareto output.

Kept apart from any one command so that ``moprune status``, the Pareto table and the dashboard
say the same thing: the device the numbers came from, the timer and thread count, how many trials could not get
clean rounds, how many reused a measurement of an identical shape, and the energy meter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ..record import TrialRecord


def measured_with(records: Iterable[TrialRecord]) -> dict[str, Any]:
    """Counts over the trials that were measured (JSON-able): devices, timers, threads, noisy, cached, energy."""
    measured = [r for r in records if r.latency_ms is not None]
    return {
        "trials": len(measured),
        "devices": dict(Counter(f"{r.device or '?'} ({r.device_name or '?'})" for r in measured)),
        "timers": dict(Counter(str(r.latency_timer or "unrecorded") for r in measured)),
        "threads": sorted({r.torch_threads for r in measured if r.torch_threads is not None}),
        "noisy": sum(1 for r in measured if r.latency_noisy is True),
        "cached": sum(1 for r in measured if r.measure_cached is True),
        "energy_methods": dict(Counter(r.energy_method for r in measured if r.energy_method)),
    }


def format_measured_with(used: Mapping[str, Any], environment: Mapping[str, Any]) -> list[str]:
    """Lines (no indent) saying where and how the numbers were measured; ``environment`` is the study's."""
    lines = []
    devices = used.get("devices") or {}
    if devices:
        lines.append("measured on " + ", ".join(f"{d}: {n} trials" for d, n in devices.items()))
    if used.get("trials"):
        timers = ", ".join(used.get("timers") or {})
        threads = "/".join(str(t) for t in used.get("threads") or []) or "?"
        check = ("each round checked for other processes' CPU use" if environment.get("disturbance_check")
                 else "rounds not checked for load")
        if str(environment.get("device", "")).startswith("cuda"):
            check = "CUDA events around each pass"
        lines.append(f"latency: {timers}, {threads} threads, paired rounds against dense, {check}; "
                     f"{used.get('noisy', 0)} of {used['trials']} trials noisy (no clean rounds), "
                     f"{used.get('cached', 0)} reused from an identical shape")
    energy = used.get("energy_methods") or {}
    if energy:
        lines.append("energy: " + ", ".join(f"{m} ({n} trials)" for m, n in energy.items())
                     + ", idle power subtracted")
    elif environment.get("energy_meter"):
        lines.append(f"energy: not asked for (meter available: {environment['energy_meter']})")
    else:
        lines.append(f"energy: not measured; no meter here ({environment.get('energy_meter_missing', 'not probed')})")
    return lines
