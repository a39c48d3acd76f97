"""Checks of a spec against this machine, run before any compute: device, checkpoint, data root, energy meters."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SpecError
from ..measure import NoEnergyMeter, energy_meter_for
from ..spec import DATASETS_WITH_ROOT, StudySpec


def preflight(spec: StudySpec) -> None:
    """Checks that depend on this machine, run before any compute: device, checkpoint, data root, meters."""
    if spec.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"device: {spec.device!r} but no CUDA device is visible here; use device: cpu or auto")
        index = int(spec.device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise SpecError(
                f"device: {spec.device!r} but only {torch.cuda.device_count()} CUDA device(s) exist; use cuda:0"
            )
    ckpt = spec.model.checkpoint
    if ckpt is not None and not ckpt.is_file():
        raise SpecError(
            f"model.checkpoint: no file at {str(ckpt)!r} (relative paths resolve against {Path.cwd()}); "
            "fix the path or set checkpoint: null to pretrain"
        )
    data = spec.data
    if data.name in DATASETS_WITH_ROOT and not data.root.exists():
        if data.name == "imagefolder" or not data.download:
            fix = "set data.download: true" if data.name != "imagefolder" else "point it at your image folders"
            raise SpecError(f"data.root: {str(data.root)!r} does not exist for data set {data.name!r}; {fix}")
    # Energy is measured or absent, never estimated: asking for it on a device without a meter is a spec error.
    energy_key = ("objectives: energy_mj" if "energy_mj" in spec.objectives else
                  f"constraints.max_energy_mj: {spec.constraints.max_energy_mj}"
                  if spec.constraints.max_energy_mj is not None else None)
    if energy_key is not None:
        device = "cuda:0" if spec.device in ("auto", "cuda") and torch.cuda.is_available() else spec.device
        device = "cpu" if device == "auto" else device
        try:
            energy_meter_for(torch.device(device), sample_ms=spec.measure.power_sample_ms)
        except NoEnergyMeter as exc:
            looked = [*exc.looked_for, *(["NVML: no CUDA GPU visible, so device: auto is the CPU"]
                                         if spec.device == "auto" else [])]
            raise SpecError(
                f"{energy_key} needs an energy meter on device {device!r}, and there is none here "
                f"(looked for {'; '.join(looked)}). moprune measures energy or leaves it out, never "
                "estimates it: drop energy_mj from objectives and constraints.max_energy_mj (optimise latency_ms "
                "instead), or run on a device with a meter: an NVIDIA GPU through NVML, or a Linux CPU with readable "
                "RAPL (/sys/class/powercap/intel-rapl:N)"
            ) from None
