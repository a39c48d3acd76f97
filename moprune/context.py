"""Everything a trial needs that is computed once per process: device, data, dense model, groups, baseline."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from typing import Any

import torch

from . import __version__
from .data import DataBundle, load_data
from .measure import count_complexity, latency_options, measure_paired
from .measure.device import device_name  # noqa: F401  (one naming of devices, also for evaluate and objective)
from .models import DenseModel, load_dense
from .space import PruneGroup, SearchUnit, discover_groups, search_units
from .spec import StudySpec
from .train import evaluate


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first CUDA device when one is visible, else the CPU."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda:0" if device == "cuda" else device)


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware the numbers were measured on (stored with the study and every export).

    Also which meters this device offers: the timer, whether CPU rounds are checked for other processes' load, and
    the energy meter (or why there is none), so a reader of the study knows how every number was taken.
    """
    import os

    import torch_pruning
    import torchvision

    from .measure.device import cpu_model, driver_version, sm_clock_mhz
    from .measure.disturbance import default_probe
    from .measure.energy import NoEnergyMeter, energy_meter_for

    env: dict[str, Any] = {
        "moprune": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "torch_pruning": torch_pruning.__version__, "python": platform.python_version(),
        "device": str(device), "device_name": device_name(device), "threads": torch.get_num_threads(),
        "host": platform.node(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["latency_timer"] = "cuda-events"
        env["driver"] = driver_version(device) or "unknown (NVML unavailable)"  # say so rather than guess
        env["sm_clock_mhz"] = sm_clock_mhz(device)
    else:
        env["latency_timer"] = "perf_counter"
        probe = default_probe()
        env["disturbance_check"] = probe.name if probe is not None else None
    try:
        env["energy_meter"] = energy_meter_for(device).method
    except NoEnergyMeter as exc:
        env["energy_meter"] = None
        env["energy_meter_missing"] = "; ".join(exc.looked_for)
    return env


@dataclass(frozen=True)
class Baseline:
    """The dense model's measurements; constraints and speedups are relative to these."""

    accuracy: float
    latency_ms: float
    latency_ms_p10: float
    latency_ms_p90: float
    macs: int
    params: int
    source: str
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StudyContext:
    spec: StudySpec
    device: torch.device
    data: DataBundle
    dense: DenseModel
    groups: list[PruneGroup]
    units: list[SearchUnit]
    measure_inputs: torch.Tensor  # a real batch of measure.batch_size images on the device
    trace_inputs: torch.Tensor  # one image, for tracing the dependency graph

    def baseline(self) -> Baseline:
        import copy

        # Timed exactly as a trial is: a copy in alternating rounds against the dense model. Alternating two models
        # evicts each one's weights from the CPU caches, so a model timed alone reads faster (7-13% for resnet18 at
        # 16 px here) and the dense seed trial would not reproduce its own baseline.
        twin = copy.deepcopy(self.dense.model)
        options = latency_options(self.spec.measure)
        lat = measure_paired(twin, self.dense.model, self.measure_inputs, **options).candidate
        del twin
        cx = count_complexity(self.dense.model, self.trace_inputs)
        return Baseline(evaluate(self.dense.model, self.data.val), lat.median_ms, lat.p10_ms, lat.p90_ms,
                        cx.macs, cx.params, self.dense.source, self.dense.sha256)


def prepare_context(spec: StudySpec, *, device: torch.device | None = None, log=print) -> StudyContext:
    """Load data and the dense model and discover the search units (pretraining the dense model if needed)."""
    device = device or resolve_device(spec.device)
    if spec.measure.threads:
        torch.set_num_threads(spec.measure.threads)
    data = load_data(spec.data, seed=spec.seed, device=device)
    dense = load_dense(spec, data, device, log=log)
    trace = data.example_inputs(1)
    groups = discover_groups(dense.model, trace)
    units = search_units(dense.model, groups, spec.prune.granularity, trace, warn=log)
    return StudyContext(spec, device, data, dense, groups, units, data.example_inputs(spec.measure.batch_size), trace)
