"""The one place moprune talks to NVML (``import pynvml``, from the nvidia-ml-py package).

Everything else uses ``NvmlDevice``: a handle plus the few readings moprune needs, in moprune's units
(W, mJ, MHz). Tests pass a stand-in module as ``nvml=``; nothing outside this file touches pynvml's names.

The CUDA device index torch uses is not NVML's index when ``CUDA_VISIBLE_DEVICES`` reorders or hides GPUs, so a
torch device is found in NVML by its PCI bus id, which both agree on.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import torch


class NvmlUnavailable(Exception):
    """NVML cannot serve this device; the message says why (no library, no driver, no such GPU)."""


def load_nvml(nvml: ModuleType | None = None) -> ModuleType:
    if nvml is not None:
        return nvml
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        raise NvmlUnavailable("the nvidia-ml-py package (import pynvml) is not installed") from None


class NvmlDevice:
    """One GPU seen through NVML. Open with ``NvmlDevice.open(device)``; ``close()`` releases NVML."""

    def __init__(self, nvml: ModuleType, handle: Any, label: str):
        self._nvml = nvml
        self._handle = handle
        self.label = label  # how the GPU was found, e.g. "PCI 00000000:3B:00.0" or "NVML index 1"
        self._counter: bool | None = None
        self._instant: bool | None = None  # the instant power field: unknown until first read
        self._closed = False

    @classmethod
    def open(cls, device: torch.device | str, *, nvml: ModuleType | None = None) -> NvmlDevice:
        device = torch.device(device)
        if device.type != "cuda":
            raise NvmlUnavailable(f"NVML meters GPUs only, not {device}")
        nv = load_nvml(nvml)
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise NvmlUnavailable(f"NVML did not initialise ({exc}); is the NVIDIA driver loaded?") from None
        try:
            handle, label = _handle_for(nv, device.index or 0)
        except nv.NVMLError as exc:
            nv.nvmlShutdown()
            raise NvmlUnavailable(f"NVML does not know {device} ({exc})") from None
        return cls(nv, handle, label)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._nvml.nvmlShutdown()  # NVML counts init/shutdown pairs: this releases only our init

    def __enter__(self) -> NvmlDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- readings -------------------------------------------------------------------------------------------------

    def name(self) -> str:
        return _text(self._nvml.nvmlDeviceGetName(self._handle))

    def driver_version(self) -> str:
        return _text(self._nvml.nvmlSystemGetDriverVersion())

    def sm_clock_mhz(self) -> int | None:
        """The SM clock now (MHz); None where the GPU does not report it. A drop during a measurement = throttling."""
        try:
            return int(self._nvml.nvmlDeviceGetClockInfo(self._handle, self._nvml.NVML_CLOCK_SM))
        except self._nvml.NVMLError:
            return None

    def power_w(self) -> float:
        """Power draw now, in W: NVML's instant power field where the driver has it (on Ampere and newer
        ``nvmlDeviceGetPowerUsage`` is a one-second average, which smears a sampled window), else the usage."""
        nv = self._nvml
        if self._instant is not False:
            try:
                field = nv.nvmlDeviceGetFieldValues(self._handle, [nv.NVML_FI_DEV_POWER_INSTANT])[0]
                if field.nvmlReturn == 0:
                    self._instant = True
                    return field.value.uiVal / 1e3
            except (AttributeError, nv.NVMLError):
                pass
            self._instant = False
        return nv.nvmlDeviceGetPowerUsage(self._handle) / 1e3

    # NVML's clock event ("throttle") reason bits, as documented in nvml.h
    CLOCK_REASONS = {0x1: "idle", 0x2: "applications clocks", 0x4: "power cap", 0x8: "hardware slowdown",
                     0x10: "sync boost", 0x20: "software thermal", 0x40: "hardware thermal",
                     0x80: "power brake", 0x100: "display clock"}

    def clock_reasons(self) -> list[str] | None:
        """Why the clocks are below their maximum now (empty: they are not held back); None where not reported."""
        nv = self._nvml
        get = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
               or getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
        try:
            mask = int(get(self._handle)) if get is not None else None
        except nv.NVMLError:
            return None
        return None if mask is None else [name for bit, name in self.CLOCK_REASONS.items() if mask & bit]

    def temperature_c(self) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetTemperature(self._handle, self._nvml.NVML_TEMPERATURE_GPU))
        except (AttributeError, self._nvml.NVMLError):
            return None

    def power_limit_w(self) -> float | None:
        try:
            return self._nvml.nvmlDeviceGetEnforcedPowerLimit(self._handle) / 1e3
        except (AttributeError, self._nvml.NVMLError):
            return None

    def compute_processes(self) -> int | None:
        """Processes with a compute context on this GPU now (ours among them), or None where NVML cannot list them.
        More than one during a measurement means time-sliced kernels and a shared energy counter."""
        nv = self._nvml
        get = (getattr(nv, "nvmlDeviceGetComputeRunningProcesses_v3", None)
               or getattr(nv, "nvmlDeviceGetComputeRunningProcesses", None))
        try:
            return len(get(self._handle)) if get is not None else None
        except nv.NVMLError:
            return None

    def mig_enabled(self) -> bool | None:
        """True on a MIG partition's parent with MIG on: its energy counter covers every instance, not ours."""
        try:
            return bool(self._nvml.nvmlDeviceGetMigMode(self._handle)[0])
        except (AttributeError, self._nvml.NVMLError):
            return None

    def total_energy_mj(self) -> int:
        """Energy since the driver loaded, in mJ (Volta and newer); updated about every 100 ms."""
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def has_energy_counter(self) -> bool:
        """Volta and newer have the total-energy counter; older GPUs (and some boards) answer NotSupported.

        Probed once: a known pre-Volta architecture is taken at its word; otherwise one read of the counter decides.
        """
        if self._counter is None:
            nv = self._nvml
            try:
                arch = nv.nvmlDeviceGetArchitecture(self._handle)
            except (nv.NVMLError, AttributeError):
                arch = None  # an old driver without the call: let the counter itself answer
            unknown = getattr(nv, "NVML_DEVICE_ARCH_UNKNOWN", 0xFFFFFFFF)
            if arch is not None and arch != unknown and arch < nv.NVML_DEVICE_ARCH_VOLTA:
                self._counter = False
            else:
                try:
                    self.total_energy_mj()
                    self._counter = True
                except nv.NVMLError_NotSupported:
                    self._counter = False
        return self._counter

    def can_read_power(self) -> bool:
        try:
            self.power_w()
            return True
        except self._nvml.NVMLError:
            return False


def _handle_for(nv: ModuleType, cuda_index: int) -> tuple[Any, str]:
    """The NVML handle of torch's ``cuda:<cuda_index>``: by PCI bus id when torch can see the GPU, else by index."""
    bus_id = _pci_bus_id(cuda_index)
    if bus_id is not None:
        return nv.nvmlDeviceGetHandleByPciBusId(bus_id), f"PCI {bus_id}"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if cuda_index < len(visible):
        entry = visible[cuda_index]
        if entry.isdigit():
            return nv.nvmlDeviceGetHandleByIndex(int(entry)), f"NVML index {entry}"
        return nv.nvmlDeviceGetHandleByUUID(entry), f"UUID {entry}"
    return nv.nvmlDeviceGetHandleByIndex(cuda_index), f"NVML index {cuda_index}"


def _pci_bus_id(cuda_index: int) -> str | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(cuda_index)
    if not hasattr(props, "pci_bus_id"):
        return None
    return f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
