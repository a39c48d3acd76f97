"""What the numbers were measured on: device name, driver, SM clock; read once per process where possible."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

from .nvml import NvmlDevice, NvmlUnavailable


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first CUDA device when one is visible, else the CPU; ``cuda`` is ``cuda:0``."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda:0" if device == "cuda" else device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name from /proc/cpuinfo (platform.processor() is often just "x86_64")."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model() or platform.processor() or platform.machine() or "cpu"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def nvml_device(device: str) -> NvmlDevice | None:
    """The process's NVML handle on a CUDA device, or None (no NVML, or not a GPU); opened once, kept open."""
    if not device.startswith("cuda"):
        return None
    try:
        return NvmlDevice.open(device)
    except NvmlUnavailable:
        return None


def sm_clock_mhz(device: torch.device) -> int | None:
    gpu = nvml_device(str(device))
    return gpu.sm_clock_mhz() if gpu is not None else None


def driver_version(device: torch.device) -> str | None:
    gpu = nvml_device(str(device))
    return gpu.driver_version() if gpu is not None else None


def gpu_conditions(device: torch.device) -> dict[str, object]:
    """What may have disturbed a GPU measurement, read at its end: clock event reasons, temperature, enforced power
    limit, MIG mode, processes with a compute context (empty on the CPU or without NVML; unreported values left
    out). In a container NVML may list no processes at all: then the count says nothing and is left out too."""
    gpu = nvml_device(str(device))
    if gpu is None:
        return {}
    found = {"clock_reasons": gpu.clock_reasons(), "temperature_c": gpu.temperature_c(),
             "power_limit_w": gpu.power_limit_w(), "mig": gpu.mig_enabled(),
             "compute_processes": gpu.compute_processes()}
    if not found["compute_processes"]:
        found["compute_processes"] = None  # we hold a context ourselves: zero means NVML cannot see processes here
    return {k: v for k, v in found.items() if v is not None}
