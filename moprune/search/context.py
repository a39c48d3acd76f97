"""Everything a trial needs that is computed once per process, and the one trial step built on it.

The step is ``prune(plan)`` -> ``measure(model)`` -> ``finetune(model, seed)`` -> ``evaluate(model)``, with one
``MeasureSettings`` made from the spec. The objective, the dense baseline, the sensitivity scan, re-evaluation and
export's re-run all call these methods, so a plan is pruned, timed and fine-tuned the same way wherever it is.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..measure import (ArchitectureCache, ArchitectureMeasurement, Complexity, MeasureSettings, count_complexity,
                       device_name, measure_architecture, resolve_device, steady_cpu_allocator)
from ..measure.runtimes import DTYPES
from ..pruning import (PruneGroup, PrunedModel, PrunePlan, SearchUnit, apply_plan, apply_sparsity, discover_groups,
                       droppable_blocks, find_sites, global_plan, mask_holder, nonzero_params, prunable_form,
                       search_units, semi_structured_linears)
from ..record import Baseline
from ..spec import StudySpec
from ..train import (DataBundle, DenseModel, Distillation, TrainResult, evaluate, load_data, load_dense,
                     train)
from ..train.proxy import Proxy, adaptive_bn, proxy_accuracy
from ..version import __version__

log = logging.getLogger(__name__)


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
    settings: MeasureSettings
    cache: ArchitectureCache = field(default_factory=ArchitectureCache)  # this process's measurements by shape
    blocks: tuple[str, ...] = ()  # the residual blocks a plan may drop (prune.drop_blocks), in forward order

    @property
    def wants_energy(self) -> bool:
        """The study optimises or constrains energy, so every trial measures it."""
        spec = self.spec
        return "energy_mj" in spec.objectives or spec.constraints.max_energy_mj is not None

    def _calibration(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The batch Taylor importance takes its gradients from (None for the other importances)."""
        spec = self.spec
        return next(self.data.train.batches(spec.finetune.batch_size)) if spec.prune.importance == "taylor" else None

    def prune(self, plan: PrunePlan, *, seed: int | None = None) -> PrunedModel:
        """A pruned copy of the dense model (the dense model is untouched).

        With ``prune.schedule`` and the ``seed`` of the fine-tune that follows, the plan is reached in steps with
        ``schedule.finetune_steps`` of fine-tune between them; without a seed (the cheap look of screening, the
        budget check, the sensitivity scan) in one shot. Both end at the same widths.
        """
        spec = self.spec
        if spec.prune.zeroes_weights:
            return apply_sparsity(self.dense.model, plan, self.groups, method=spec.prune.method, nm=spec.prune.nm)
        schedule = spec.prune.schedule
        stepped = spec.prune.iterative and seed is not None
        between = None
        if stepped:
            def between(model: nn.Module, k: int) -> None:
                self._train(model, schedule.finetune_steps, (seed + 7_919 * (k + 1)) % (2**31 - 1))
        return apply_plan(self.dense.model, plan, self.trace_inputs, importance=spec.prune.importance,
                          round_to=spec.prune.round_to, calibration=self._calibration(),
                          steps=schedule.steps if stepped else 1, between=between)

    def global_plan(self, ratio: float) -> PrunePlan:
        """Torch-Pruning's global pruning of the dense model at ``ratio``, capped per group at ``ratio.high``."""
        spec = self.spec
        return global_plan(self.dense.model, self.groups, self.trace_inputs, ratio, importance=spec.prune.importance,
                           max_ratio=spec.prune.ratio.high, round_to=spec.prune.round_to,
                           calibration=self._calibration())

    def complexity(self, model: nn.Module) -> Complexity:
        """MACs and parameters of one sample; with zeroed weights (unstructured, N:M) the parameters that are not
        zero, while the MACs stay what a dense kernel executes: zeros are multiplied too."""
        cx = count_complexity(model, self.trace_inputs)
        if self.spec.prune.zeroes_weights:
            return dataclasses.replace(cx, params=nonzero_params(model))
        return cx

    def measure(self, model: nn.Module, *, energy: bool | None = None, screen: bool = False
                ) -> ArchitectureMeasurement:
        """Latency paired against the dense model (and energy, by default when the study wants it).

        Zeroed weights (unstructured, N:M) leave every shape as it was, so those measurements are never shared by
        shape; a 2:4 model on a GPU with sparse tensor cores is timed as it deploys, its 2:4 Linear weights in
        torch's semi-structured format.
        """
        sparse = self.spec.prune.zeroes_weights
        if sparse and self._sparse_kernels():
            runtime = self.settings.runtime
            model, converted = semi_structured_linears(model, DTYPES[runtime.dtype],
                                                       channels_last=runtime.channels_last)
            log.debug("timing %d Linear layers as 2:4 semi-structured tensors", len(converted))
        return measure_architecture(model, self.dense.model, self.measure_inputs, self.settings, device=self.device,
                                    want_energy=self.wants_energy if energy is None else energy, screen=screen,
                                    cache=None if sparse else self.cache)

    def _sparse_kernels(self) -> bool:
        """2:4 on an Ampere-or-newer CUDA device in half precision: where torch's semi-structured kernels run
        (cuSPARSELt takes float16 and bfloat16 only; ``build_context`` says when float32 keeps 2:4 timed dense)."""
        return (_two_four_on_cuda(self.spec, self.device) and torch.cuda.get_device_capability(self.device) >= (8, 0)
                and self.settings.runtime.dtype != "float32")

    def finetune(self, model: nn.Module, seed: int, masks: dict[str, torch.Tensor] | None = None) -> TrainResult:
        """The brief fine-tune of the spec, in place, with data order ``seed`` (the dense model teaches, if asked);
        ``masks`` (a sparse plan's, ``PrunedModel.masks``) keep the zeroed weights zero after every step.

        Then ``finetune.recalibrate_bn`` batches re-estimate the BatchNorm statistics (``adaptive_bn``): the running
        averages a brief fine-tune leaves mix the network's states along the way, and a model evaluated with them
        reads far below what its weights give (bench/recalibration.py measures both, on every bench task).
        """
        ft = self.spec.finetune
        result = self._train(model, ft.steps, seed, masks)
        if ft.recalibrate_bn:
            adaptive_bn(model, self.data.train, batches=ft.recalibrate_bn, batch_size=ft.batch_size, seed=seed + 1)
        return result

    def _train(self, model: nn.Module, steps: int, seed: int, masks: dict[str, torch.Tensor] | None = None
               ) -> TrainResult:
        ft = self.spec.finetune
        distill = (Distillation(self.dense.model, ft.distill.alpha, ft.distill.temperature)
                   if ft.distill is not None else None)
        return train(model, self.data.train, steps=steps, lr=ft.lr, batch_size=ft.batch_size,
                     optimizer=ft.optimizer, seed=seed, warmup=min(ft.warmup_steps, steps), distill=distill, after_step=mask_holder(model, masks or {}))

    def proxy(self, model: nn.Module, seed: int) -> Proxy:
        """The screen's proxy of ``model``'s accuracy after the fine-tune (``search.screen``: method, batches), with
        the fine-tune's batch size, learning rate and optimizer; ``model`` is changed in place."""
        s = self.spec
        return proxy_accuracy(model, self.data.train, self.data.val, method=s.search.screen.proxy,
                              batches=s.search.screen.batches, batch_size=s.finetune.batch_size, seed=seed,
                              lr=s.finetune.lr, optimizer=s.finetune.optimizer)

    def evaluate(self, model: nn.Module) -> float:
        """Top-1 accuracy on the validation split."""
        return evaluate(model, self.data.val)

    def refinetuned(self, plan: PrunePlan, seed: int) -> PrunedModel:
        """``plan`` pruned and fine-tuned with ``seed``: a trial's model again (re-evaluation, export's re-run)."""
        pruned = self.prune(plan, seed=seed)
        self.finetune(pruned.model, seed, pruned.masks)
        pruned.model.eval()
        return pruned

    def baseline(self) -> Baseline:
        """The dense model measured exactly as a trial is: a copy in paired rounds against the dense model.

        Alternating two models evicts each one's weights from the CPU caches, so a model timed alone reads faster
        (7-13% for resnet18 at 16 px here) and the dense seed trial would not reproduce its own baseline.
        """
        twin = copy.deepcopy(self.dense.model)
        arch = self.measure(twin)
        del twin
        lat, cx = arch.latency.candidate, self.complexity(self.dense.model)
        return Baseline(self.evaluate(self.dense.model), lat.median_ms, lat.p10_ms, lat.p90_ms, cx.macs, cx.params,
                        self.dense.source, self.dense.sha256, arch.energy_mj, arch.energy_method,
                        self.dense.trained_from)


def finetune_seed(study_seed: int, trial_number: int, repeat: int = 0) -> int:
    """The data-order seed of a trial's fine-tune: explicit, recorded, and fresh for each re-evaluation."""
    return (study_seed * 1_000_003 + trial_number * 101 + repeat) % (2**31 - 1)


def prepare_context(spec: StudySpec, *, device: torch.device | None = None) -> StudyContext:
    """Load data and the dense model and discover the search units (pretraining the dense model if needed)."""
    device = device or resolve_device(spec.device)
    if device.type == "cpu":
        steady_cpu_allocator()  # before data, pretraining and timing: moprune.measure.allocator says why
    data = load_data(spec.data, seed=spec.seed, device=device)
    dense = load_dense(spec, data, device)
    prunable_form(dense.model)  # attention prunable by head; the dense model measured in the same form as trials
    trace = data.example_inputs(1)
    groups = discover_groups(dense.model, trace)
    units = search_units(dense.model, groups, spec.prune.granularity, trace)
    blocks: tuple[str, ...] = ()
    if spec.prune.drop_blocks:
        if find_sites(dense.model):
            log.warning("prune.drop_blocks: %s is searched by heads and neurons, no block is dropped",
                        type(dense.model).__name__)
        else:
            blocks = tuple(droppable_blocks(dense.model, trace))
            if not blocks:
                log.warning("prune.drop_blocks: %s has no residual block to drop (a block of a Sequential that "
                            "keeps its input's shape and returns its input when its weights are zero)",
                            type(dense.model).__name__)
            log.info("prune.drop_blocks: %d residual blocks may be dropped: %s", len(blocks), ", ".join(blocks))
    if _two_four_on_cuda(spec, device) and spec.measure.dtype == "float32":
        log.warning("2:4 plans are timed dense in float32: torch's 2:4 sparse kernels (cuSPARSELt) take float16 or "
                    "bfloat16 weights; set measure.dtype: bfloat16 to time them sparse")
    return StudyContext(spec, device, data, dense, groups, units, data.example_inputs(spec.measure.batch_size), trace,
                        MeasureSettings.from_spec(spec.measure), blocks=blocks)


def _two_four_on_cuda(spec: StudySpec, device: torch.device) -> bool:
    """A 2:4 study on a CUDA device: where torch's semi-structured kernels may time its plans sparse."""
    return spec.prune.method == "nm" and spec.prune.nm == "2:4" and device.type == "cuda"


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware the numbers were measured on (stored with the study and every export).

    Also which meters this device offers: the timer, whether CPU rounds are checked for other processes' load, and
    the energy meter (or why there is none), so a reader of the study knows how every number was taken.
    """
    import torch_pruning
    import torchvision

    from ..measure.device import cpu_model, driver_version, sm_clock_mhz
    from ..measure.disturbance import default_probe
    from ..measure.energy import NoEnergyMeter, energy_meter_for

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
        env["cpu_allocator"] = steady_cpu_allocator()
        probe = default_probe()
        env["disturbance_check"] = probe.name if probe is not None else None
    try:
        meter = energy_meter_for(device)
        env["energy_meter"] = meter.method
        # how often the meter's reading moves: measured for NVML's counter, a property of the interface otherwise
        env["energy_update_ms"] = round(meter.update_period_s * 1e3, 2)
        if getattr(meter, "period_measured", None) is False:
            env["energy_update_ms_assumed"] = True  # the counter stood still while it was timed
    except NoEnergyMeter as exc:
        env["energy_meter"] = None
        env["energy_meter_missing"] = "; ".join(exc.looked_for)
    return env
