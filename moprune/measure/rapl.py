"""CPU package energy from RAPL through Linux's powercap files (Intel, and AMD on recent kernels).

Layout (``/sys/class/powercap``)::

    intel-rapl:0/name                  "package-0"
    intel-rapl:0/energy_uj             cumulative energy, µJ; wraps to 0 after max_energy_range_uj
    intel-rapl:0/max_energy_range_uj
    intel-rapl:0:0/...                 sub-zones (core, uncore, dram): inside the package's energy, not added

Only top-level zones named ``package-N`` are summed: a ``psys`` zone (the whole platform) would count the packages
twice. Since Linux 5.10 ``energy_uj`` is readable by root only; we say so rather than read nothing.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")


class RaplUnavailable(Exception):
    """No readable RAPL package zone; the message says what was found instead."""


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str  # e.g. "package-0"
    max_energy_range_uj: int  # the counter wraps to 0 past this value

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def find_packages(root: Path = POWERCAP) -> list[RaplZone]:
    """The readable package zones under ``root``; raises RaplUnavailable with the reason when there are none."""
    if not root.is_dir():
        raise RaplUnavailable(f"{root} does not exist (no powercap driver: not Linux, a VM, or RAPL not exposed)")
    tops = sorted((p for p in root.iterdir() if _TOP_ZONE.match(p.name)), key=lambda p: int(p.name.split(":")[1]))
    zones: list[RaplZone] = []
    unreadable: list[str] = []
    for path in tops:
        name = (path / "name").read_text().strip() if (path / "name").is_file() else ""
        if not name.startswith("package"):
            continue
        energy = path / "energy_uj"
        if not os.access(energy, os.R_OK):
            unreadable.append(str(energy))
            continue
        zones.append(RaplZone(path, name, int((path / "max_energy_range_uj").read_text().strip())))
    if zones:
        return zones
    if unreadable:
        raise RaplUnavailable(f"{unreadable[0]} is not readable by this user (root only since Linux 5.10); "
                              "run as root or grant read access to energy_uj")
    raise RaplUnavailable(f"no intel-rapl:N package zone under {root}")


def counter_delta_uj(start_uj: int, end_uj: int, max_energy_range_uj: int) -> int:
    """Energy between two readings of a counter that wraps to 0 after ``max_energy_range_uj`` (at most one wrap).

    One wrap is all a window can see: the smallest ranges (~2^32 µJ = 4295 J) take over 20 s at 200 W to pass.
    """
    if end_uj >= start_uj:
        return end_uj - start_uj
    return end_uj + max_energy_range_uj - start_uj


class RaplMeter:
    """Energy of all CPU packages over a window (mJ); RAPL updates about every millisecond."""

    method = "rapl"
    unit = "mJ"
    update_period_s = 0.001

    def __init__(self, zones: list[RaplZone]):
        if not zones:
            raise ValueError("RaplMeter needs at least one package zone")
        self.zones = zones
        self.window_s = 0.0  # the span of the last reading, for idle-power subtraction
        self._start: tuple[list[int], float] | None = None

    @classmethod
    def open(cls, root: Path = POWERCAP) -> RaplMeter:
        return cls(find_packages(root))

    def start(self) -> None:
        self._start = ([z.read_uj() for z in self.zones], time.perf_counter())

    def stop(self) -> float:
        end, t_end = [z.read_uj() for z in self.zones], time.perf_counter()
        if self._start is None:
            raise RuntimeError("RaplMeter.stop() called without start()")
        (start, t_start), self._start = self._start, None
        self.window_s = t_end - t_start
        total_uj = sum(counter_delta_uj(s, e, z.max_energy_range_uj) for s, e, z in zip(start, end, self.zones))
        return total_uj / 1e3
