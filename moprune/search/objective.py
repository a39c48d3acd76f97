"""One trial: plan -> prune -> measure -> (reject early | fine-tune -> evaluate) -> objective values.

Latency and energy depend only on the pruned architecture, so they are measured before the fine-tune and a plan
that misses a hard budget is rejected without spending the fine-tune on it. What the trial learns is written as
one ``TrialRecord``, step by step, so a trial that fails keeps its plan and what was measured before the failure.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import optuna
import torch

from ..errors import DeviceLost, MeasurementUnreliable, TrialFailed
from ..measure import ArchitectureMeasurement, EnergyMeasurementError
from ..pruning import PrunedModel, PrunePlan, suggest_plan
from ..record import DEVICE_LOST, MEASUREMENT_FAILED, REJECTED_PREFIX, Baseline, TrialRecord, bounded_traceback
from .context import StudyContext, finetune_seed

CONSTRAINT_NAMES = ("accuracy_drop", "latency_ms", "energy_mj", "macs")
#: Energy windows that may fail in a row (each trial uncounted, its plan re-run on resume) before the run stops.
MAX_MEASUREMENT_FAILURES = 3
_OOM_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory")
#: CUDA errors that poison the context: after one, every CUDA call of the process fails (CUDA's "sticky" errors).
_STICKY_CUDA_TEXTS = ("illegal memory access", "device-side assert", "unspecified launch failure",
                      "misaligned address", "illegal instruction", "an illegal address")


def is_sticky_cuda_error(exc: BaseException) -> bool:
    """An error after which this process cannot use its GPU again (not an out-of-memory, which is recoverable)."""
    text = str(exc).lower()
    return "cuda error" in text and any(t in text for t in _STICKY_CUDA_TEXTS)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError (or MemoryError) of a CPU allocation that failed."""
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXTS))


def free_memory(device: torch.device) -> None:
    """Return what a finished or failed trial held: Python objects first, then the CUDA allocator's cached blocks."""
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class Timings:
    """Seconds spent per phase of a trial (``timings_s``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def constraint_values(spec_constraints, baseline: Baseline, measured: dict[str, float]) -> dict[str, float]:
    """Optuna constraint values (feasible when <= 0) for every budget, in a fixed set of names.

    Budgets the spec leaves unset read 0 (always feasible), so every trial carries the same constraint names.
    """
    c = spec_constraints
    values = {name: 0.0 for name in CONSTRAINT_NAMES}
    if c.max_accuracy_drop is not None and "accuracy" in measured:
        values["accuracy_drop"] = (baseline.accuracy - measured["accuracy"]) - c.max_accuracy_drop
    if c.max_latency_ms is not None:
        values["latency_ms"] = measured["latency_ms"] - c.max_latency_ms
    if c.max_energy_mj is not None and "energy_mj" in measured:
        values["energy_mj"] = measured["energy_mj"] - c.max_energy_mj
    if c.max_macs is not None:
        values["macs"] = measured["macs"] - c.max_macs
    return values


class Objective:
    """The callable Optuna runs for each trial; it holds the per-process StudyContext."""

    def __init__(self, ctx: StudyContext, baseline: Baseline,
                 on_trained: Callable[[optuna.Trial, PrunedModel], None] | None = None):
        self.ctx = ctx
        self.baseline = baseline
        self.on_trained = on_trained  # e.g. keeps the fine-tuned weights for export
        self.measurement_failures = 0  # energy windows failed in a row

    def __call__(self, trial: optuna.Trial) -> list[float]:
        try:
            # which process ran the trial: with several workers or hosts, the one to look at when it fails
            TrialRecord(fidelity="fine-tuned", worker=f"{platform.node()}:{os.getpid()}").write(trial)
            values = self._run(trial)
            self.measurement_failures = 0
            return values
        except EnergyMeasurementError as exc:
            # the meter, not the plan: the trial does not count and its plan runs again on resume
            TrialRecord(fail_reason=MEASUREMENT_FAILED, fail_traceback=_traceback(exc)).write(trial)
            self.measurement_failures += 1
            if self.measurement_failures >= MAX_MEASUREMENT_FAILURES:
                raise MeasurementUnreliable(
                    f"the energy measurement failed {self.measurement_failures} trials in a row (last: {exc}); "
                    f"lengthen measure.energy_window_s or measure.batch_size, then run again: those plans run "
                    f"again") from exc
            raise TrialFailed(f"{MEASUREMENT_FAILED}: {exc}") from exc
        except TrialFailed as exc:
            TrialRecord(fail_reason=str(exc), fail_traceback=_traceback(exc)).write(trial)
            raise
        except Exception as exc:
            if is_sticky_cuda_error(exc):
                # not a result about the plan: stop this process (each further trial would fail in milliseconds
                # and count) and re-run the plan on resume
                TrialRecord(fail_reason=DEVICE_LOST, fail_traceback=_traceback(exc)).write(trial)
                raise DeviceLost(f"trial {trial.number}: the CUDA context of {self.ctx.device} is lost "
                                 f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]}); every later CUDA call "
                                 f"of this process would fail, so it stops. Run `moprune run` again to continue: "
                                 f"the plan of trial {trial.number} runs again") from exc
            oom = is_out_of_memory(exc)
            reason = ("out of memory: " if oom else "") + f"{type(exc).__name__}: {exc}"
            TrialRecord(fail_reason=reason[:2000], fail_traceback=_traceback(exc)).write(trial)
            if oom:
                # The traceback's frames hold the pruned model, its gradients and activations: drop them, or they
                # are still alive when free_memory empties the CUDA cache below, and the memory is not given back
                # (other workers on the same GPU cannot have it).
                traceback.clear_frames(exc.__traceback__)
                raise TrialFailed(reason) from None
            raise TrialFailed(reason) from exc
        finally:
            free_memory(self.ctx.device)

    def _run(self, trial: optuna.Trial) -> list[float]:
        ctx, spec, timings = self.ctx, self.ctx.spec, Timings()
        plan = suggest_plan(trial, ctx.units, spec.prune, ctx.blocks)
        # a starting plan the parameters only approximate (global pruning's allocation) is pruned as it was made
        plan = TrialRecord.of(trial).fixed_plan or plan
        TrialRecord(plan=plan).write(trial)
        with timings.phase("prune"):
            pruned = ctx.prune(plan)
        model = pruned.model
        with timings.phase("measure"):
            cx = ctx.complexity(model)
            arch = self._screen(model, cx.macs) or ctx.measure(model)
        base = self.baseline
        latency = TrialRecord.measured(arch, base.latency_ms if base else None, base.energy_mj if base else None)
        measured: dict[str, float] = {"latency_ms": latency.latency_ms, "macs": cx.macs, "params": cx.params,
                                      **({"energy_mj": latency.energy_mj} if latency.energy_mj is not None else {})}
        latency.write(trial)
        TrialRecord(channels=pruned.channels, macs=cx.macs, params=cx.params).write(trial)
        with timings.phase("evaluate"):
            measured["accuracy_pre_ft"] = ctx.evaluate(model)
        TrialRecord(accuracy_pre_ft=measured["accuracy_pre_ft"]).write(trial)

        budgets = constraint_values(spec.constraints, self.baseline, measured)
        missed = [name for name in ("latency_ms", "energy_mj", "macs") if budgets[name] > 0]
        if missed:  # reject before the fine-tune: the plan is infeasible whatever the accuracy
            measured["accuracy"] = measured["accuracy_pre_ft"]
            TrialRecord(fail_reason=REJECTED_PREFIX + ", ".join(missed),
                        rejected=True).write(trial)
        else:
            seed = finetune_seed(spec.seed, trial.number)
            TrialRecord(finetune_seed=seed).write(trial)
            if spec.prune.iterative:
                pruned = self._stepped(plan, seed, pruned, timings)
                model = pruned.model
            with timings.phase("finetune"):
                ctx.finetune(model, seed, pruned.masks)
            with timings.phase("evaluate"):
                measured["accuracy"] = ctx.evaluate(model)
        bad = [f"{name}={measured[name]}" for name in (*spec.objectives, "accuracy")
               if not math.isfinite(measured[name])]
        if bad:  # Optuna would fail the trial without saying why (or refuse the NaN constraint)
            raise TrialFailed(f"non-finite objective value: {', '.join(dict.fromkeys(bad))}")
        for name, value in constraint_values(spec.constraints, self.baseline, measured).items():
            trial.set_constraint(name, value)
        TrialRecord(timings_s=timings.seconds).write(trial)
        if self.on_trained is not None and not missed:
            self.on_trained(trial, pruned)
        return [float(measured[name]) for name in spec.objectives]

    def _stepped(self, plan: PrunePlan, seed: int, one_shot: PrunedModel, timings: Timings) -> PrunedModel:
        """The plan pruned again by ``prune.schedule`` (fine-tunes between steps) for the fine-tune that follows.

        The one-shot model was measured and budget-checked (the widths decide both, and it costs no fine-tune); the
        stepped one must end at its widths, or it is not the model that was measured.
        """
        with timings.phase("prune"):
            stepped = self.ctx.prune(plan, seed=seed)
        if stepped.channels != one_shot.channels:
            differ = sorted(k for k in one_shot.channels if one_shot.channels[k] != stepped.channels.get(k))
            raise TrialFailed(f"iterative pruning ended at other widths than one-shot pruning ({differ[:3]}...)")
        return stepped

    def _screen(self, model: torch.nn.Module, macs: int) -> ArchitectureMeasurement | None:
        """A quick measurement that already shows the plan over a hard MACs or latency budget, else None.

        The precise measurement takes as long as the brief fine-tune (it repeats rounds until the median is tight),
        so a rejection after it would save only half a trial. MACs are exact; latency is over the budget when even
        the screen's p10 is: a plan near the limit gets the precise measurement and the ordinary check.
        """
        c = self.ctx.spec.constraints
        over_macs = c.max_macs is not None and macs > c.max_macs
        if not over_macs and c.max_latency_ms is None:
            return None  # nothing the screen could reject: go straight to the precise measurement
        # measured even when MACs alone decide: a rejected trial records its latency and speedup like every other
        screen = self.ctx.measure(model, energy=False, screen=True)
        over_latency = c.max_latency_ms is not None and screen.latency.candidate.p10_ms > c.max_latency_ms
        return screen if over_macs or over_latency else None


def _traceback(exc: BaseException) -> str:
    return bounded_traceback("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
