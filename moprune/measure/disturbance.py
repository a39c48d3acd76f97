"""How much CPU *other* processes took while we were timing: the disturbance check of CPU latency rounds.

Linux charges every scheduler tick to the task running on that CPU. ``/proc/stat`` sums the busy ticks of every
task per CPU; ``/proc/self/stat`` sums the ticks of this process (all threads). Their difference over a round is the
CPU time other processes (and the hypervisor, as *steal*) took from the CPUs this process may run on. Both counters
come from the same sampling, so an idle machine reads exactly zero ticks of others, and any competitor that ran
during a round shows up with the probability of being on a CPU at a tick.

Only the CPUs in this process's affinity set count: a busy CPU we are not allowed on does not slow us down.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest time is already inside user)


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative tick counters at one instant (units: clock ticks, ``os.sysconf('SC_CLK_TCK')`` per second)."""

    wall_s: float
    busy_ticks: int  # every task, on the CPUs we may run on
    own_ticks: int  # this process, all threads


@dataclass(frozen=True)
class Disturbance:
    """Other processes' CPU use between two snapshots."""

    wall_s: float
    other_cpu_s: float  # CPU seconds that other tasks ran on our CPUs
    cpus: int
    resolution_s: float = 0.01  # one clock tick: the two counters round separately, so +-1 tick is noise

    @property
    def other_fraction(self) -> float:
        """Share of our CPUs' capacity that other tasks used during the interval (0 = undisturbed), at most 1.

        The counters move in whole ticks (10 ms): over a block shorter than a tick, one tick charged to another
        task would read as several times the whole capacity. That is rounding, not a measurement, so the share is
        capped at 1 (every CPU taken).
        """
        capacity = self.wall_s * self.cpus
        return min(1.0, self.other_cpu_s / capacity) if capacity > 0 else 0.0

    def exceeds(self, max_other_cpu: float) -> bool:
        """Other processes used more than ``max_other_cpu`` of our CPUs, by more than the counters' rounding.

        On an idle machine the difference of the two counters reads -1, 0 or +1 tick: one tick proves nothing.
        ``max_other_cpu`` 1 accepts every round (others cannot take more than all of our CPUs).
        """
        if max_other_cpu >= 1.0:
            return False
        return self.other_cpu_s > max(self.resolution_s, max_other_cpu * self.wall_s * self.cpus)


class CpuDisturbanceProbe:
    """Reads /proc/stat against /proc/self/stat; ``available`` is False where they do not exist (not Linux)."""

    name = "proc-stat"

    def __init__(self, proc: Path = Path("/proc"), cpus: set[int] | None = None):
        self.proc = proc
        self.cpus = cpus if cpus is not None else _affinity()
        self.ticks_per_s = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.available = (proc / "stat").is_file() and (proc / "self" / "stat").is_file()

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(time.perf_counter(), self._busy_ticks(), self._own_ticks())

    def between(self, start: CpuSnapshot, end: CpuSnapshot) -> Disturbance:
        other_ticks = max(0, (end.busy_ticks - start.busy_ticks) - (end.own_ticks - start.own_ticks))
        return Disturbance(end.wall_s - start.wall_s, other_ticks / self.ticks_per_s, max(1, len(self.cpus)),
                           1.0 / self.ticks_per_s)

    def _busy_ticks(self) -> int:
        total = 0
        with open(self.proc / "stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break  # the cpu lines come first
                label, *fields = line.split()
                if label == "cpu" or int(label[3:]) not in self.cpus:
                    continue
                values = [int(v) for v in fields]
                total += sum(values[i] for i in _BUSY_FIELDS if i < len(values))
        return total

    def _own_ticks(self) -> int:
        text = (self.proc / "self" / "stat").read_text()
        # the command name (field 2) may contain spaces and parentheses: split after its closing parenthesis
        fields = text[text.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the full line)


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def default_probe() -> CpuDisturbanceProbe | None:
    """The probe for this machine, or None where the counters are missing (then rounds cannot be checked)."""
    probe = CpuDisturbanceProbe()
    return probe if probe.available else None
