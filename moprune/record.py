"""The one record of a trial, and of a study, in Optuna's storage: the only module that names a user attr.

A trial's measurements are Optuna user attrs. ``TrialRecord`` is the typed view of them: the objective writes it
(``write``), and pareto, report, ship and status read it (``TrialRecord.of``); no other module spells an attr name,
so a field cannot be written under one name and read under another. The study's own attrs (resolved spec, dense
baseline, environment, sensitivity scan, re-evaluations) are read and written through the functions below.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from .measure import ArchitectureMeasurement

INTERRUPTED = "interrupted"
WORKER_DIED = "worker died (no heartbeat within the grace period)"
DEVICE_LOST = "device lost (a sticky CUDA error; the plan runs again when the run is resumed)"
MEASUREMENT_FAILED = "energy measurement failed (not a result about the plan; it runs again when the run is resumed)"
#: A fine-tuned trial's plan over a hard budget (MACs, latency, energy) is not fine-tuned; its accuracy value is the
#: one before any fine-tune, which tables must not show beside fine-tuned accuracies.
REJECTED_PREFIX = "rejected before fine-tune: over budget on "
_NOT_RESULTS = (INTERRUPTED, WORKER_DIED, DEVICE_LOST, MEASUREMENT_FAILED)
#: Failures that say nothing about the plan: they do not count, and the plan is queued again on resume.
RERUN_REASONS = (INTERRUPTED, DEVICE_LOST, MEASUREMENT_FAILED)
#: Optuna's system attr naming the trial a heartbeat retry re-runs.
_OPTUNA_RETRY_ATTR = "failed_trial"
_REEVAL_PREFIX = "reeval:"  # study user attr per re-evaluated trial: accuracies on fresh fine-tune seeds
#: The screened plans of study NAME live in the same storage as study NAME + SCREEN_SUFFIX (moprune.search.screen).
SCREEN_SUFFIX = ".screen"
#: A failed trial keeps at most this many characters of its traceback (the end, where the error is).
TRACEBACK_CHARS = 4000


@dataclass(frozen=True)
class TrialRecord:
    """Everything moprune records about one trial besides Optuna's values and constraints; None = not recorded."""

    fidelity: str | None = None  # "screened" (pruned, proxy-scored, never fine-tuned) | "fine-tuned"
    worker: str | None = None  # host:pid of the process that ran it
    retry_of: int | None = None  # the interrupted trial whose plan this one re-runs
    plan: dict[str, float] | None = None  # group root -> pruning ratio
    channels: dict[str, int] | None = None  # layer -> kept out-channels
    macs: int | None = None
    params: int | None = None
    latency_ms: float | None = None  # the study's dense latency / this plan's paired speedup (see ``measured``)
    latency_ms_rounds: float | None = None  # the plan's own median in its rounds (drifts with the machine's state)
    latency_ms_p10: float | None = None
    latency_ms_p90: float | None = None
    dense_latency_ms: float | None = None  # the dense model in the same rounds
    speedup: float | None = None  # median of per-round dense / candidate
    speedup_p10: float | None = None
    speedup_p90: float | None = None
    speedup_ci95: list[float] | None = None
    latency_noisy: bool | None = None  # True: clean rounds could not be had; None: rounds not checked (GPU)
    latency_timer: str | None = None
    torch_threads: int | None = None
    latency_rounds: int | None = None  # rounds used
    latency_rounds_taken: int | None = None
    latency_rounds_clean: int | None = None
    latency_disturbance_check: str | None = None
    latency_other_cpu: float | None = None  # mean share of our CPUs other processes used in the used rounds
    latency_other_cpu_max: float | None = None
    latency_screen: bool | None = None  # the quick budget measurement, not the precise one
    latency_passes_per_call: int | None = None  # GPU: passes per timed call (the launch gap amortised)
    latency_host_bound: bool | None = None  # GPU: launching a pass took about as long as running it
    latency_runtime: str | None = None  # what ran the timed passes: "eager float32", "onnxruntime 1.22.0 CPU..."
    runtime_prepare_s: float | None = None  # compiling / exporting for that runtime (recorded, never timed)
    latency_predicted_ms: float | None = None  # a screened plan's latency by the study's latency model: never measured
    # what the latency model reads of a screened plan (moprune.measure.latency_model.FEATURES): each round re-predicts
    # its latency with the model refitted since, instead of trusting the prediction of the round that screened it
    cost_features: list[float] | None = None
    measure_cached: bool | None = None  # reused from an earlier trial of the same shape
    device: str | None = None
    device_name: str | None = None
    driver: str | None = None
    sm_clock_mhz_start: int | None = None
    sm_clock_mhz_end: int | None = None
    gpu_conditions: dict[str, Any] | None = None  # at the end of the rounds: clock_reasons, temperature_c, ...
    cudnn_benchmark: bool | None = None
    energy_mj: float | None = None  # the study's dense energy / this plan's paired energy ratio (see ``measured``)
    energy_mj_window: float | None = None  # the plan's own window, per pass
    dense_energy_mj: float | None = None  # the dense model's window right after it, per pass
    energy_saving: float | None = None  # dense / plan energy per pass, from the two windows
    energy_method: str | None = None
    idle_power_w: float | None = None
    energy_window_s: float | None = None
    energy_passes: int | None = None
    accuracy_pre_ft: float | None = None  # right after pruning, before any fine-tune
    accuracy_proxy: float | None = None  # a screened plan's proxy of its accuracy after fine-tuning: never accuracy
    proxy_method: str | None = None  # adaptive_bn | finetune | none (the method actually used)
    screen_trial: int | None = None  # the screened trial this fine-tuned trial was promoted from
    start: str | None = None  # a starting plan: "dense", "uniform 0.40", "global 0.40", "sensitivity 0.40"; on a
    # screened plan (and the trial it was promoted to), the sweep level it was screened as
    fixed_plan: dict[str, float] | None = None  # the exact plan of a starting trial its parameters only approximate
    # what proposed a screened plan (and the trial it was promoted to): "allocation" (the screen's additive model,
    # moprune.search.allocate) or "neighbour" (of a fine-tuned front plan); None: a sweep level or the sampler
    proposer: str | None = None
    finetune_seed: int | None = None
    rejected: bool | None = None  # over a hard budget: never fine-tuned
    timings_s: dict[str, float] | None = None  # prune / measure / finetune / evaluate
    fail_reason: str | None = None
    fail_traceback: str | None = None

    def attrs(self) -> dict[str, Any]:
        """The recorded fields as user attrs (JSON-able)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def write(self, trial: optuna.Trial) -> None:
        """Set every recorded field as a user attr of the running ``trial`` (unrecorded ones are left alone)."""
        for key, value in self.attrs().items():
            trial.set_user_attr(key, value)

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a stored trial; attrs this version does not know are ignored."""
        known = _FIELD_NAMES
        return cls(**{k: v for k, v in trial.user_attrs.items() if k in known})

    @staticmethod
    def merged(first: TrialRecord, second: TrialRecord) -> TrialRecord:
        """``first`` with every field ``second`` recorded."""
        return dataclasses.replace(first, **{k: v for k, v in second.attrs().items()})

    def values_only(self) -> TrialRecord:
        """The latency values, spread and speedup of a measurement, without how it was taken (a screened plan's
        quick timing: the study's fine-tuned trials record the full account)."""
        keep = ("latency_ms", "latency_ms_rounds", "latency_ms_p10", "latency_ms_p90", "dense_latency_ms", "speedup",
                "latency_noisy", "latency_screen", "measure_cached")
        return TrialRecord(**{k: getattr(self, k) for k in keep})

    @classmethod
    def measured(cls, arch: ArchitectureMeasurement, baseline_latency_ms: float | None = None,
                 baseline_energy_mj: float | None = None) -> TrialRecord:
        """The fields of a latency (and energy) measurement: values, spread, and how they were taken.

        With the study's ``baseline_latency_ms`` and a paired measurement, ``latency_ms`` (and its p10/p90) is the
        dense latency over the paired speedup: the plan's own median moves with clocks, load and the GPU a worker
        got (a dense-shaped plan read 14.8-22.9 ms against a 14.64 ms baseline on a busy CPU, at 0.99-1.01x
        paired), while the ratio in alternating rounds does not. Its own median is kept as ``latency_ms_rounds``.
        """
        lat, info, dev, e = arch.latency, arch.latency.info, arch.device, arch.energy
        raw = lat.candidate.median_ms
        scale = 1.0
        if baseline_latency_ms and arch.paired and lat.speedup and math.isfinite(lat.speedup) and raw > 0:
            scale = baseline_latency_ms / lat.speedup / raw
        out = cls(
            latency_ms=raw * scale, latency_ms_rounds=raw, latency_ms_p10=lat.candidate.p10_ms * scale,
            latency_ms_p90=lat.candidate.p90_ms * scale,
            dense_latency_ms=lat.reference.median_ms if arch.paired else None,
            speedup=lat.speedup if arch.paired else None, speedup_p10=lat.speedup_p10 if arch.paired else None,
            speedup_p90=lat.speedup_p90 if arch.paired else None,
            speedup_ci95=list(lat.speedup_ci95) if lat.speedup_ci95 and arch.paired else None,
            latency_noisy=arch.latency_noisy, device=dev.device, device_name=dev.device_name,
            measure_cached=arch.cached, latency_screen=arch.screen, latency_runtime=arch.runtime,
            runtime_prepare_s=arch.prepare_s,
        )
        if info is not None:
            out = dataclasses.replace(
                out, latency_timer=info.timer, torch_threads=info.threads, latency_rounds=info.rounds,
                latency_rounds_taken=info.taken, latency_rounds_clean=info.clean,
                latency_disturbance_check=info.disturbance_check, latency_other_cpu=info.other_cpu,
                latency_other_cpu_max=info.other_cpu_max, latency_passes_per_call=info.passes_per_call,
                latency_host_bound=info.host_bound)
        if dev.device.startswith("cuda"):
            out = dataclasses.replace(out, driver=dev.driver, sm_clock_mhz_start=dev.sm_clock_mhz_start,
                                      sm_clock_mhz_end=dev.sm_clock_mhz_end, cudnn_benchmark=True,
                                      gpu_conditions=dict(dev.conditions) or None)
        if e is not None:
            ratio = arch.energy_ratio
            paired_mj = baseline_energy_mj / ratio if baseline_energy_mj and ratio else None
            out = dataclasses.replace(out, energy_mj=paired_mj if paired_mj is not None else e.energy_mj,
                                      energy_mj_window=e.energy_mj, energy_saving=ratio,
                                      dense_energy_mj=arch.dense_energy.energy_mj if arch.dense_energy else None,
                                      energy_method=e.method, idle_power_w=e.idle_power_w,
                                      energy_window_s=e.window_s, energy_passes=e.passes)
        return out

    def how_measured(self) -> dict[str, Any]:
        """The fields that say how latency and energy were taken (for an export's metrics.json)."""
        return {k: v for k, v in self.attrs().items() if k in MEASURE_FIELDS}

    @property
    def fine_tuned(self) -> bool:
        return self.finetune_seed is not None and not self.rejected


_FIELD_NAMES = frozenset(f.name for f in fields(TrialRecord))
MEASURE_FIELDS = ("latency_runtime", "runtime_prepare_s", "latency_passes_per_call", "latency_host_bound", "latency_timer", "torch_threads", "latency_rounds",
                  "latency_rounds_taken", "latency_rounds_clean",
                  "latency_noisy", "latency_disturbance_check", "latency_other_cpu", "latency_other_cpu_max",
                  "latency_screen", "dense_latency_ms", "energy_window_s", "energy_passes", "idle_power_w", "driver",
                  "sm_clock_mhz_start", "sm_clock_mhz_end", "gpu_conditions", "cudnn_benchmark",
                  "measure_cached")


def bounded_traceback(text: str, limit: int = TRACEBACK_CHARS) -> str:
    """The end of a traceback (where the error is), at most ``limit`` characters."""
    return text if len(text) <= limit else "...\n" + text[-limit:]


# --- what a finished trial means for the study ------------------------------------------------------------------------

def fail_reason(trial: FrozenTrial) -> str | None:
    """The recorded reason; a FAIL without one was failed by the heartbeat check (its worker could not say why)."""
    from optuna.trial import TrialState

    reason = trial.user_attrs.get("fail_reason")
    if trial.state == TrialState.FAIL and not reason:
        return WORKER_DIED
    return reason


def counts_as_result(trial: FrozenTrial) -> bool:
    """Finished, and for a reason about its plan (completed, rejected, or failed on its own: NaN loss, OOM...).

    An interrupted trial, or one whose worker died, says nothing about its plan: it does not count toward
    ``n_trials``, and its plan runs again.
    """
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and fail_reason(trial) not in _NOT_RESULTS


def origin(trial: FrozenTrial) -> str:
    """Where a fine-tuned trial's plan came from: a starting plan, the screen, or the sampler."""
    record = TrialRecord.of(trial)
    if record.screen_trial is not None:  # a sweep plan the screen promoted keeps its name: "screened #3: uniform 0.55"
        label = record.start or record.proposer
        return f"screened #{record.screen_trial}" + (f": {label}" if label else "")
    if record.start:
        return f"start: {record.start}"
    return "sampler"


def requeued(trial: FrozenTrial) -> TrialRecord:
    """What the re-run of an interrupted ``trial`` carries over: where its plan came from, and the plan."""
    record = TrialRecord.of(trial)
    return TrialRecord(retry_of=trial.number, start=record.start, fixed_plan=record.fixed_plan,
                       screen_trial=record.screen_trial, proposer=record.proposer)


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial whose plan this one re-runs: after a dead worker (Optuna's attr, first: Optuna copies the dead
    trial's user attrs into the re-run) or after an interrupt (ours)."""
    number = trial.system_attrs.get(_OPTUNA_RETRY_ATTR, trial.user_attrs.get("retry_of"))
    return int(number) if number is not None else None


# --- the study's own attrs --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Baseline:
    """The dense model's measurements; constraints, speedups and the hypervolume are relative to these."""

    accuracy: float
    latency_ms: float
    latency_ms_p10: float
    latency_ms_p90: float
    macs: int
    params: int
    source: str  # checkpoint | pretrained | cache | sparsity-trained
    sha256: str
    energy_mj: float | None = None  # measured where the study asks for energy (a meter exists)
    energy_method: str | None = None
    sparsity_trained_from: str | None = None  # sha256 of the weights model.sparsity_training started from

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def value(self, objective: str) -> float | None:
        """The dense value of an objective (None when not measured)."""
        return getattr(self, objective, None)


def write_study(study: optuna.Study, *, spec: dict[str, Any], environment: dict[str, Any],
                sensitivity: list[dict[str, Any]] | None) -> None:
    """The attrs a new study gets before its baseline (which is written last: see ``write_baseline``)."""
    study.set_user_attr("spec", spec)
    study.set_user_attr("environment", environment)
    if sensitivity:
        study.set_user_attr("sensitivity", sensitivity)


def write_baseline(study: optuna.Study, baseline: Baseline) -> None:
    """Written last when a study is created: a study without it is still being created (or its creator died)."""
    study.set_user_attr("baseline", baseline.as_dict())


def baseline_of(study: optuna.Study) -> Baseline | None:
    data = study.user_attrs.get("baseline")
    if not data:
        return None
    known = {f.name for f in fields(Baseline)}
    return Baseline(**{k: v for k, v in data.items() if k in known})


def spec_of(study: optuna.Study) -> dict[str, Any] | None:
    """The resolved spec the study was created with (JSON), or None for a study that holds none."""
    return study.user_attrs.get("spec")


def environment_of(study: optuna.Study) -> dict[str, Any]:
    return dict(study.user_attrs.get("environment") or {})


def sensitivity_of(study: optuna.Study) -> list[dict[str, Any]] | None:
    return study.user_attrs.get("sensitivity")


def reevaluations(study: optuna.Study) -> dict[int, list[float]]:
    """Trial number -> accuracies of its re-evaluation fine-tunes on fresh seeds."""
    return {int(k.removeprefix(_REEVAL_PREFIX)): list(v) for k, v in study.user_attrs.items()
            if k.startswith(_REEVAL_PREFIX)}


def write_reevaluation(study: optuna.Study, number: int, accuracies: list[float]) -> None:
    """One key per trial, so that concurrent workers never overwrite each other (a trial's values cannot change)."""
    study.set_user_attr(f"{_REEVAL_PREFIX}{number}", list(accuracies))
