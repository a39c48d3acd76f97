"""Stand-ins for the hardware interfaces moprune reads, at their outermost boundary only.

- ``FakeNvml``: a module object with the pynvml names moprune's adapter calls, reproducing how NVML behaves on a
  Volta-or-newer GPU (total-energy counter that moves in 100 ms steps), a pre-Volta GPU (counter NotSupported,
  power readable), a board that supports neither, and a machine without the library.
- ``FakePowercap``: a directory laid out as /sys/class/powercap whose counters, like the kernel's, are computed when
  read (from an energy function of real time), wrapping at max_energy_range_uj as the real files do.
- ``FakeProc``: /proc/stat and /proc/self/stat files whose tick counters a test advances.

Power is a function of real time, so the meters under test run their own timing code unchanged.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

KEPLER, MAXWELL, PASCAL, VOLTA, TURING, AMPERE = 2, 3, 4, 5, 6, 7
ARCH_UNKNOWN = 0xFFFFFFFF


class PowerTrace:
    """Piecewise-constant power over real time; ``energy_j(t)`` is its exact integral since creation."""

    def __init__(self, watts: float):
        self._lock = threading.Lock()
        self.t0 = time.perf_counter()
        self._segments: list[tuple[float, float]] = [(self.t0, watts)]  # (start time, watts)

    def set(self, watts: float) -> None:
        with self._lock:
            self._segments.append((time.perf_counter(), watts))

    def now_w(self) -> float:
        with self._lock:
            return self._segments[-1][1]

    def energy_j(self, t: float) -> float:
        with self._lock:
            segs = list(self._segments)
        total = 0.0
        for k, (start, watts) in enumerate(segs):
            end = segs[k + 1][0] if k + 1 < len(segs) else t
            total += watts * max(0.0, min(end, t) - start)
        return total

    def busy_energy_j(self, idle_w: float) -> float:
        """Energy above ``idle_w`` so far: what a meter should report with idle power subtracted."""
        now = time.perf_counter()
        with self._lock:
            segs = list(self._segments)
        total = 0.0
        for k, (start, watts) in enumerate(segs):
            end = segs[k + 1][0] if k + 1 < len(segs) else now
            total += (watts - idle_w) * (end - start)
        return total


def fake_work(trace: PowerTrace, *, busy_w: float, idle_w: float, seconds: float) -> Callable[[], None]:
    """A "forward pass": the device draws ``busy_w`` for ``seconds``, then falls back to ``idle_w``."""
    def run() -> None:
        trace.set(busy_w)
        time.sleep(seconds)
        trace.set(idle_w)
    return run


class FakeNvml(types.ModuleType):
    """``pynvml`` as moprune's adapter uses it. ``kind``: volta | pascal | unsupported | no-library."""

    NVML_DEVICE_ARCH_KEPLER, NVML_DEVICE_ARCH_PASCAL, NVML_DEVICE_ARCH_VOLTA = KEPLER, PASCAL, VOLTA
    NVML_DEVICE_ARCH_AMPERE, NVML_DEVICE_ARCH_UNKNOWN = AMPERE, ARCH_UNKNOWN
    NVML_CLOCK_SM = 1
    COUNTER_PERIOD_S = 0.1

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's name)
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
        pass

    class NVMLError_InvalidArgument(NVMLError):  # noqa: N801
        pass

    def __init__(self, kind: str = "volta", *, watts: float = 60.0, gpus: int = 2, arch: int | None = None):
        super().__init__("pynvml")
        self.kind = kind
        self.trace = PowerTrace(watts)
        self.gpus = gpus
        self.arch = arch if arch is not None else {"volta": AMPERE, "pascal": PASCAL}.get(kind, ARCH_UNKNOWN)
        self.inits = 0
        self.lookups: list[tuple[str, object]] = []
        self.clock_mask = 0  # NVML clock event reason bits the GPU reports now
        self.processes = 1  # processes with a compute context (ours)

    # library lifetime
    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        if self.kind == "no-library":
            raise self.NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        self.inits += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.inits -= 1

    def nvmlSystemGetDriverVersion(self) -> bytes:  # noqa: N802
        return b"550.54.15"

    # handles
    def _handle(self, index: int) -> tuple[str, int]:
        if not 0 <= index < self.gpus:
            raise self.NVMLError_InvalidArgument("Invalid Argument")
        return ("gpu", index)

    def nvmlDeviceGetHandleByIndex(self, index: int):  # noqa: N802
        self.lookups.append(("index", index))
        return self._handle(index)

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str):  # noqa: N802
        self.lookups.append(("pci", bus_id))
        return self._handle(int(bus_id.split(":")[1], 16))

    def nvmlDeviceGetHandleByUUID(self, uuid: str):  # noqa: N802
        self.lookups.append(("uuid", uuid))
        return self._handle(int(uuid.rsplit("-", 1)[1]))

    # readings
    def nvmlDeviceGetName(self, handle) -> bytes:  # noqa: N802
        return {"volta": b"NVIDIA A100-SXM4-40GB", "pascal": b"Tesla P100-PCIE-16GB"}.get(self.kind, b"Quadro K600")

    def nvmlDeviceGetArchitecture(self, handle) -> int:  # noqa: N802
        if self.arch == ARCH_UNKNOWN and self.kind == "unsupported":
            raise self.NVMLError_NotSupported("Not Supported")
        return self.arch

    def nvmlDeviceGetClockInfo(self, handle, clock: int) -> int:  # noqa: N802
        assert clock == self.NVML_CLOCK_SM
        return 1410

    NVML_TEMPERATURE_GPU = 0

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle) -> int:  # noqa: N802
        return self.clock_mask

    def nvmlDeviceGetComputeRunningProcesses(self, handle) -> list[object]:  # noqa: N802
        return [object()] * self.processes

    def nvmlDeviceGetTemperature(self, handle, sensor: int) -> int:  # noqa: N802
        return 61

    def nvmlDeviceGetEnforcedPowerLimit(self, handle) -> int:  # noqa: N802
        return 400_000  # mW

    def nvmlDeviceGetMigMode(self, handle) -> list[int]:  # noqa: N802
        if self.kind != "volta":
            raise self.NVMLError_NotSupported("Not Supported")
        return [0, 0]  # current, pending

    def nvmlDeviceGetPowerUsage(self, handle) -> int:  # noqa: N802
        if self.kind == "unsupported":
            raise self.NVMLError_NotSupported("Not Supported")
        return int(round(self.trace.now_w() * 1e3))  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, handle) -> int:  # noqa: N802
        if self.kind != "volta":
            raise self.NVMLError_NotSupported("Not Supported")
        # the counter holds the energy up to its last update; it updates every COUNTER_PERIOD_S
        now = time.perf_counter()
        steps = int((now - self.trace.t0) / self.COUNTER_PERIOD_S)
        return int(self.trace.energy_j(self.trace.t0 + steps * self.COUNTER_PERIOD_S) * 1e3)  # mJ


class FakePowercap:
    """A powercap tree: package-0 and package-1 (counted), a psys zone and a dram sub-zone (not counted).

    Entered, its package counters are what the kernel's are: computed when a reader reads ``energy_uj`` (the kernel
    reads the MSR then), from ``joules(t)``, the energy drawn since ``t0`` at ``perf_counter`` time ``t``, split
    evenly between the packages and wrapped past ``max_energy_range_uj``. No writer thread, so a reading never lags
    real time, however busy the machine. Not entered, the counters stay where ``write`` puts them.
    """

    def __init__(self, root: Path, *, watts: float = 40.0, joules: Callable[[float], float] | None = None,
                 max_energy_range_uj: int = 262_143_328_850, start_uj: int = 0):
        self.root = root
        self.max_range = max_energy_range_uj
        self.start_uj = start_uj
        self.t0 = time.perf_counter()
        self.joules = joules if joules is not None else (lambda t, w=watts: w * (t - self.t0))
        self.packages = [root / "intel-rapl:0", root / "intel-rapl:1"]
        for i, path in enumerate(self.packages):
            self._zone(path, f"package-{i}", start_uj)
        self._zone(root / "intel-rapl:0:0", "dram", start_uj)
        self._zone(root / "intel-rapl:2", "psys", start_uj)
        self._counters = {path / "energy_uj": i for i, path in enumerate(self.packages)}
        self._read_text: Callable[..., str] | None = None

    def _zone(self, path: Path, name: str, start_uj: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{self.max_range}\n")
        (path / "energy_uj").write_text(f"{start_uj}\n")

    def write(self, package: int, value_uj: int) -> None:
        (self.packages[package] / "energy_uj").write_text(f"{value_uj}\n")

    def counter_uj(self, package: int) -> int:
        """Package ``package``'s counter now: half of the energy since t0, on top of ``start_uj``, wrapped."""
        del package  # the packages draw the same
        uj = self.start_uj + self.joules(time.perf_counter()) / 2 * 1e6
        return int(uj) % (self.max_range + 1)

    def __enter__(self) -> FakePowercap:
        original = self._read_text = Path.read_text
        counters = self._counters

        def read_text(path: Path, *args: object, **kwargs: object) -> str:
            package = counters.get(Path(path))
            return f"{self.counter_uj(package)}\n" if package is not None else original(path, *args, **kwargs)

        Path.read_text = read_text  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._read_text is not None:
            Path.read_text = self._read_text  # type: ignore[method-assign]
            self._read_text = None


class FakeProc:
    """/proc/stat (two CPUs) and /proc/self/stat with tick counters that a test advances."""

    def __init__(self, root: Path):
        self.root = root
        (root / "self").mkdir(parents=True, exist_ok=True)
        self.cpu = [[100, 0, 50, 1000, 5, 0, 1, 0, 0, 0], [90, 1, 40, 1100, 3, 0, 2, 0, 0, 0]]
        self.utime, self.stime = 30, 10
        self._write()

    def _write(self) -> None:
        total = [sum(col) for col in zip(*self.cpu)]
        lines = ["cpu  " + " ".join(map(str, total))]
        lines += [f"cpu{i} " + " ".join(map(str, fields)) for i, fields in enumerate(self.cpu)]
        lines += ["intr 12345 0 0", "ctxt 999"]
        (self.root / "stat").write_text("\n".join(lines) + "\n")
        # the command name may hold spaces and parentheses: the parser must split after the last ')'
        fields = ["S", "1", "1", "1", "0", "-1", "4194304", "100", "0", "0", "0", str(self.utime), str(self.stime)]
        fields += ["0"] * 40
        (self.root / "self" / "stat").write_text(f"4242 (python (worker) 1) {' '.join(fields)}\n")

    def tick(self, *, own: int = 0, other: int = 0, steal: int = 0, cpu: int = 0) -> None:
        """Advance: ``own`` ticks of this process, ``other`` ticks of other tasks, ``steal`` of the hypervisor."""
        self.cpu[cpu][0] += own + other
        self.cpu[cpu][7] += steal
        self.utime += own
        self._write()
