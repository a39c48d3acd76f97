"""One trial: plan -> prune -> measure -> (reject early | fine-tune -> evaluate) -> objective values.

Latency and energy depend only on the pruned architecture, so they are measured before the fine-tune and a plan
that misses a hard budget is rejected without spending the fine-tune on it.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import time
import traceback
from contextlib import contextmanager
from collections.abc import Callable
from typing import Any

import optuna
import torch

from .context import Baseline, StudyContext, device_name
from .errors import TrialFailed
from .measure import ARCHITECTURE_CACHE, ArchitectureMeasurement, count_complexity, measure_architecture
from .prune import PrunedModel, apply_plan
from .space import suggest_plan
from .train import evaluate, train

CONSTRAINT_NAMES = ("accuracy_drop", "latency_ms", "energy_mj", "macs")


def finetune_seed(study_seed: int, trial_number: int, repeat: int = 0) -> int:
    """The data-order seed of a trial's fine-tune: explicit, recorded, and fresh for each re-evaluation."""
    return (study_seed * 1_000_003 + trial_number * 101 + repeat) % (2**31 - 1)


_OOM_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory")


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
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
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

    def __call__(self, trial: optuna.Trial) -> list[float]:
        try:
            # which process ran the trial: with several workers or hosts, the one to look at when it fails
            trial.set_user_attr("worker", f"{platform.node()}:{os.getpid()}")
            return self._run(trial)
        except TrialFailed as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        except Exception as exc:
            oom = is_out_of_memory(exc)
            reason = ("out of memory: " if oom else "") + f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason[:2000])
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
        plan = suggest_plan(trial, ctx.units, spec.prune)
        trial.set_user_attr("plan", plan)
        with timings.phase("prune"):
            calibration = next(ctx.data.train.batches(spec.finetune.batch_size)) if spec.prune.importance == "taylor" else None
            pruned = apply_plan(ctx.dense.model, plan, ctx.trace_inputs, importance=spec.prune.importance,
                                round_to=spec.prune.round_to, calibration=calibration)
        model = pruned.model
        with timings.phase("measure"):
            cx = count_complexity(model, ctx.trace_inputs)
            arch = self._screen(model, cx.macs)
            if arch is None:  # no hard budget, or not clearly over one: the precise measurement (energy too)
                want_energy = "energy_mj" in spec.objectives or spec.constraints.max_energy_mj is not None
                arch = measure_architecture(model, ctx.dense.model, ctx.measure_inputs, spec.measure,
                                            device=ctx.device, want_energy=want_energy, cache=ARCHITECTURE_CACHE)
            lat = arch.latency
        measured: dict[str, float] = {"latency_ms": lat.candidate.median_ms, "macs": cx.macs, "params": cx.params,
                                      **({"energy_mj": arch.energy_mj} if arch.energy_mj is not None else {})}
        _set_attrs(trial, {"channels": pruned.channels, "macs": cx.macs, "params": cx.params, **arch.as_attrs()})
        with timings.phase("evaluate"):
            measured["accuracy_pre_ft"] = evaluate(model, ctx.data.val)
        trial.set_user_attr("accuracy_pre_ft", measured["accuracy_pre_ft"])

        budgets = constraint_values(spec.constraints, self.baseline, measured)
        missed = [name for name in ("latency_ms", "energy_mj", "macs") if budgets[name] > 0]
        if missed:  # reject before the fine-tune: the plan is infeasible whatever the accuracy
            measured["accuracy"] = measured["accuracy_pre_ft"]
            trial.set_user_attr("fail_reason", "rejected before fine-tune: over budget on " + ", ".join(missed))
            trial.set_user_attr("rejected", True)
        else:
            seed = finetune_seed(spec.seed, trial.number)
            trial.set_user_attr("finetune_seed", seed)
            with timings.phase("finetune"):
                ft = spec.finetune
                train(model, ctx.data.train, steps=ft.steps, lr=ft.lr, batch_size=ft.batch_size,
                      optimizer=ft.optimizer, seed=seed)
            with timings.phase("evaluate"):
                measured["accuracy"] = evaluate(model, ctx.data.val)
        bad = [f"{name}={measured[name]}" for name in (*spec.objectives, "accuracy")
               if not math.isfinite(measured[name])]
        if bad:  # Optuna would fail the trial without saying why (or refuse the NaN constraint)
            raise TrialFailed(f"non-finite objective value: {', '.join(dict.fromkeys(bad))}")
        for name, value in constraint_values(spec.constraints, self.baseline, measured).items():
            trial.set_constraint(name, value)
        trial.set_user_attr("timings_s", timings.seconds)
        if self.on_trained is not None and not missed:
            self.on_trained(trial, pruned)
        return [float(measured[name]) for name in spec.objectives]


    def _screen(self, model: torch.nn.Module, macs: int) -> ArchitectureMeasurement | None:
        """A quick measurement that already shows the plan over a hard MACs or latency budget, else None.

        The precise measurement takes as long as the brief fine-tune (it repeats rounds until the median is tight),
        so a rejection after it would save only half a trial. MACs are exact; latency is over the budget when even
        the screen's p10 is: a plan near the limit gets the precise measurement and the ordinary check.
        """
        ctx, c = self.ctx, self.ctx.spec.constraints
        over_macs = c.max_macs is not None and macs > c.max_macs
        if not over_macs and c.max_latency_ms is None:
            return None  # nothing the screen could reject: go straight to the precise measurement
        # measured even when MACs alone decide: a rejected trial records its latency and speedup like every other
        screen = measure_architecture(model, ctx.dense.model, ctx.measure_inputs, ctx.spec.measure,
                                      device=ctx.device, want_energy=False, screen=True, cache=ARCHITECTURE_CACHE)
        over_latency = c.max_latency_ms is not None and screen.latency.candidate.p10_ms > c.max_latency_ms
        return screen if over_macs or over_latency else None


def _set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def trial_summary(values: dict[str, Any] | None) -> str:
    """A short human line of a trial's objective values, for progress output."""
    if not values:
        return ""
    parts = []
    for name, value in values.items():
        if name == "accuracy":
            parts.append(f"acc {value:.3f}")
        elif name == "latency_ms":
            parts.append(f"{value:.2f} ms")
        elif name == "energy_mj":
            parts.append(f"{value:.1f} mJ")
        elif name in ("macs", "params"):
            parts.append(f"{name} {value / 1e6:.2f}M")
    return "  ".join(parts)
