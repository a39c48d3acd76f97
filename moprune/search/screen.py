"""Screening: many plans cheaply, then only those on or near the screened Pareto front are fine-tuned.

A screened plan is pruned, counted (MACs, params), given a latency and scored by a proxy of its accuracy after
fine-tuning (``moprune.train.proxy``: a few fine-tune steps, then adaptive BN for BatchNorm models). Its latency is
predicted by a model fitted on the plans this study measured (``moprune.measure.latency_model``, refitted every
round, stored as ``latency_predicted_ms``) where that model covers the plan, and otherwise timed with the quick
screen measurement (``repeats`` paired rounds, no energy; stored as a measured ``latency_ms``), which the next fit
learns from: the first round's plans, and each plan that goes past what was measured (drops more blocks, or is
cheaper by more than ``latency_model.REACH`` of the range). With ``screen.latency: measure`` every plan is timed:
timing cost more than the proxy on small models. Screened plans live in the same storage as a study of their own,
``<name>.screen``, whose first objective is ``accuracy_proxy``: its values are never an accuracy, and the fine-tuned
study holds only fine-tuned trials.
Screening runs in rounds: each round screens a batch of plans, promotes those not yet promoted that are expected to
add most to the fine-tuned front, then the best by Pareto rank (``moprune.search.promotion``; never a weighted sum),
and fine-tunes them in the main study; a round's quota that only plans far under the accuracy budget could fill
waits for the next round's plans. A screened plan's latency is re-predicted each round by the model refitted since
(``first_cost``).
A round's plans come first from the allocation model (``moprune.search.allocate``: what each unit's ratio does to
the proxy and the cost, fitted on every plan screened so far, and of the plans that trade them best those expected
to add most to the fine-tuned front, as promotion weighs a screened plan, then those near the accuracy budget), then
neighbours of the fine-tuned front's plans, then the spec's sampler, which always has ``screen.explore`` of the
round (without that share the neighbours filled every round) and learns from the proxies and from where the budget
lies: a plan whose proxy is below the line's aim is marked infeasible (``Trial.set_constraint``), or TPE and NSGA-II
explore the fast end of the proxy x cost front, where every plan reads chance (bench MobileNetV2 seed 2, 2026-12-03:
the sampler's 16 screened plans had proxies of 0.28-0.63, while every plan that met the budget after its fine-tune
had screened at 0.82 or more).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable

import optuna
import torch
from optuna.trial import TrialState

from ..measure import LatencyModel, cost_features
from ..pruning import dropped_count, suggest_plan
from ..record import SCREEN_SUFFIX, TrialRecord
from ..spec import StudySpec
from .calibration import LatencyCalibration, ProxyCalibration
from .proxy_line import ProxyLine
from .context import StudyContext, finetune_seed
from .promotion import Outlook, outlook_of, promote
from .proposals import feed_back, queue_allocations, queue_sweeps

log = logging.getLogger(__name__)

PROXY_NAME = "accuracy_proxy"
PREDICTED = "latency_predicted_ms"


def screen_objectives(spec: StudySpec) -> list[str]:
    """The screen study's objectives: the proxy, then the study's costs that a screen gives (energy -> latency;
    latency predicted by the latency model unless the screen measures it)."""
    latency = PREDICTED if spec.search.screen.latency == "model" else "latency_ms"
    costs = [latency if o in ("energy_mj", "latency_ms") else o for o in spec.objectives if o != "accuracy"]
    return [PROXY_NAME, *dict.fromkeys(costs)]


def screen_directions(spec: StudySpec) -> list[str]:
    return ["maximize", *("minimize" for _ in screen_objectives(spec)[1:])]


class ScreenObjective:
    """One screened plan: prune, count, latency (predicted or quick paired), proxy; values in ``screen_objectives``."""

    def __init__(self, ctx: StudyContext, baseline_latency_ms: float | None = None):
        self.ctx = ctx
        self.objectives = screen_objectives(ctx.spec)
        self.latency_model: LatencyModel | None = None  # set by run_screened before each round
        # the proxy the line reads as the accuracy budget (ProxyLine.aim), set by run_screened before each round: a
        # plan below it is marked infeasible (Trial.set_constraint), so the sampler learns where the budget lies
        # instead of exploring the fast end of the proxy x cost front, where plans read chance and none is promoted
        self.aim: float | None = None
        self.per_block = 0.0  # ProxyLine.per_block: a plan's proxy is read plus this for each block it dropped
        # the study's dense latency: a timed plan's latency is it over the paired speedup, as a fine-tuned trial's
        self.baseline_latency_ms = baseline_latency_ms

    def _timed(self, model: torch.nn.Module) -> TrialRecord:
        """The quick screen measurement of ``model``, paired like a fine-tuned trial's (dense latency over the
        speedup): screened plans are timed minutes apart, and a plan's own median moves with the clocks and the load
        between them, the ratio does not."""
        timed = TrialRecord.measured(self.ctx.measure(model, energy=False, screen=True), self.baseline_latency_ms)
        if timed.latency_ms is None:
            raise RuntimeError("the quick screen measurement gave no latency")
        return timed

    def __call__(self, trial: optuna.Trial) -> list[float]:
        ctx, s = self.ctx, self.ctx.spec
        plan = suggest_plan(trial, ctx.units, s.prune, ctx.blocks)
        queued = TrialRecord.of(trial)  # a sweep plan: its level, and global pruning's exact plan
        plan = queued.fixed_plan or plan
        pruned = ctx.prune(plan)
        cx = ctx.complexity(pruned.model)
        measured: dict[str, float] = {"macs": cx.macs, "params": cx.params}
        record = TrialRecord(fidelity="screened", plan=plan, channels=pruned.channels, macs=cx.macs,
                             params=cx.params, start=queued.start)
        if s.constraints.max_macs is not None and cx.macs > s.constraints.max_macs:
            # never promoted, and not worth a proxy or a timing: pruned (not failed), with the reason
            dataclasses.replace(record, rejected=True, fail_reason="rejected: over budget on macs").write(trial)
            trial.set_constraint("macs", cx.macs / s.constraints.max_macs - 1.0)
            raise optuna.TrialPruned("over budget on macs")
        if PREDICTED in self.objectives:
            features = cost_features(pruned.model, ctx.trace_inputs)
            record = dataclasses.replace(record, cost_features=list(features))
            if self.latency_model is not None and self.latency_model.covers(features):
                predicted = round(self.latency_model.predict(features), 6)
                measured[PREDICTED] = predicted
                record = dataclasses.replace(record, latency_predicted_ms=predicted)
            else:
                # the model cannot vouch for this plan (not fitted yet, or the plan lies outside what it was
                # fitted on): timed, and the timing joins the next fit (``LatencyCalibration``)
                timed = self._timed(pruned.model)
                measured[PREDICTED] = timed.latency_ms
                record = TrialRecord.merged(record, timed.values_only())
        elif "latency_ms" in self.objectives:
            timed = self._timed(pruned.model)
            measured["latency_ms"] = timed.latency_ms
            record = TrialRecord.merged(record, timed.values_only())
        proxy = ctx.proxy(pruned.model, finetune_seed(s.seed, trial.number))
        measured[PROXY_NAME] = proxy.accuracy
        # written once, at the end: each attr is a storage write, and a screened plan should cost little more than
        # its proxy (a failure before here still records why, in _Recorded)
        dataclasses.replace(record, accuracy_proxy=proxy.accuracy, proxy_method=proxy.method).write(trial)
        if self.aim is not None:
            read = proxy.accuracy + self.per_block * dropped_count(plan)
            trial.set_constraint("accuracy_proxy_aim", self.aim - read)
        return [float(measured[name]) for name in self.objectives]


def open_screen_study(spec: StudySpec, storage: optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler
                      ) -> optuna.Study:
    """The screen study of ``spec`` in ``storage`` (created on first use)."""
    study = optuna.create_study(study_name=spec.name + SCREEN_SUFFIX, storage=storage, load_if_exists=True,
                                directions=screen_directions(spec), sampler=sampler)
    if not study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(screen_objectives(spec))
    return study


def _calibrated(study: optuna.Study, screened: optuna.Study, proxies: ProxyCalibration, spec: StudySpec
                ) -> tuple[ProxyLine | None, Outlook | None]:
    """The proxy line (its floor splits promotion, its aim steers the proposals) and the promotion outlook from the
    fine-tuned plans so far."""
    line = proxies.line(study, screened)
    costs = screen_objectives(spec)[1:]
    if line is None or not costs:
        return line, None
    cost = "latency_ms" if costs[0] == PREDICTED else costs[0]
    return line, outlook_of(study, line, cost, spec.objectives.index("accuracy"),
                            examples=len(proxies.ctx.data.val))


def first_cost(model: LatencyModel | None) -> Callable[[optuna.trial.FrozenTrial], float]:
    """A screened plan's first cost for promotion and the allocation model: its latency re-predicted by ``model``
    (the latest fit) from the features it was screened with, else its stored value.

    A stored prediction is the fit of the round that screened the plan, fitted on fewer plans. A plan the latest
    model does not cover (``LatencyModel.covers``) keeps its stored value: the plan was timed when it was screened,
    as a plan the model does not cover is. (Until 2026-12-05 round 1's was the dense latency scaled by MACs, and on
    the bench's ResNet-20, seed 4, it put the uniform 0.85 plan at 0.45 ms, measured 7.2 ms.)
    """
    def cost(trial: optuna.trial.FrozenTrial) -> float:
        features = TrialRecord.of(trial).cost_features if model is not None else None
        if model is not None and features and model.covers(tuple(features)):
            return model.predict(tuple(features))
        return trial.values[1]  # its own timing, or the prediction it was screened with

    return cost


def round_sizes(plans: int, rounds: int, fine_tunes: int) -> tuple[int, list[int]]:
    """(plans screened per round, plans promoted in each round).

    The promotions are spread over every round (9 over 4: 2, 2, 2, 3), not rounded up per round: rounded up (3, 3, 3)
    the fine-tunes ran out after three rounds, and the last round's screening, where the allocation model's plans
    are, never ran.
    """
    rounds = max(1, min(rounds, fine_tunes))
    cuts = [fine_tunes * r // rounds for r in range(rounds + 1)]
    return max(1, math.ceil(plans / rounds)), [max(1, b - a) for a, b in zip(cuts, cuts[1:])]


def queue_room(screened: optuna.Study, next_round: int, explore: float) -> int:
    """How many plans the allocation model and the neighbours may queue for a round of ``next_round`` plans: what
    is already waiting (sweep levels, earlier proposals) comes first, and ``explore`` of the round is the sampler's."""
    waiting = len(screened.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    return max(0, next_round - math.ceil(next_round * explore - 1e-9) - waiting)


class _Recorded:
    """Wraps the screen objective: a failure keeps its reason (and the screening goes on)."""

    def __init__(self, objective: ScreenObjective):
        self.objective = objective

    def __call__(self, trial: optuna.Trial) -> list[float]:
        try:
            return self.objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            TrialRecord(fidelity="screened", fail_reason=f"{type(exc).__name__}: {exc}"[:2000]).write(trial)
            raise


def run_screened(study: optuna.Study, ctx: StudyContext, storage: optuna.storages.BaseStorage, *, target: int,
                 run_until: Callable[[int], None], sampler: optuna.samplers.BaseSampler,
                 baseline_latency_ms: float | None = None) -> None:
    """Fine-tune until ``target`` trials count: the starting plans, then screen -> promote -> fine-tune rounds.

    ``run_until(n)`` runs fine-tuned trials (queued ones first) until ``n`` count. When the screen has nothing new
    to promote (every screened plan promoted, or the screening budget spent and no plan left that is expected to add
    to the fine-tuned front), the spec's sampler proposes the remaining fine-tuned trials as without screening.
    ``baseline_latency_ms`` (the study's dense latency) turns the paired speedup of a plan the screen times
    (``screen.latency: measure``) into its latency.
    """
    from .loop import finished_count

    spec, s = ctx.spec, ctx.spec.search.screen
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    run_until(min(target, finished_count(study) + waiting))  # dense, uniform, ...: the baselines first
    screened = open_screen_study(spec, storage, sampler)
    if not screened.get_trials(deepcopy=False):
        log.info("queued %d sweep plans to be screened first", queue_sweeps(screened, ctx))
    remaining = target - finished_count(study)
    per_round, promote_n = round_sizes(s.plans, s.rounds, remaining)
    scorer = ScreenObjective(ctx, baseline_latency_ms)
    objective = _Recorded(scorer)
    calibration = LatencyCalibration(ctx) if PREDICTED in scorer.objectives else None
    proxies = ProxyCalibration(ctx)
    feedback_seed = spec.seed
    # promotion splits the screened plans at the line's floor; the allocation model and the sampler aim at its aim
    line, outlook = _calibrated(study, screened, proxies, spec)
    round_no, carried = 0, 0
    while finished_count(study) < target:
        floor, aim = (line.floor, line.aim) if line is not None else (None, None)
        scorer.aim = aim
        scorer.per_block = outlook.line.per_block if outlook is not None else 0.0
        done = len(screened.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                               TrialState.PRUNED)))
        n = 0
        if done < s.plans:
            n = min(per_round, s.plans - done)
            latency = "quick paired latency"
            if calibration is not None:
                scorer.latency_model = calibration.fit(study, screened)
                latency = "latency model " + (scorer.latency_model.describe() if scorer.latency_model else "-")
            allocated = sum(1 for t in screened.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                            if TrialRecord.of(t).proposer == "allocation")
            t0 = time.monotonic()
            screened.optimize(objective, n_trials=n, catch=(Exception,))
            log.info("screened %d plans in %.0f s (%s proxy; %s; %d proposed by the allocation model); %d screened "
                     "in all", n, time.monotonic() - t0, s.proxy, latency, allocated, done + n)
        quota = promote_n[min(round_no, len(promote_n) - 1)] + carried
        round_no += 1
        more = done + n < s.plans  # screening left: a quota this round's plans cannot use well waits for it
        cost = first_cost(scorer.latency_model if calibration is not None else None)
        chosen = promote(screened, study, min(quota, target - finished_count(study)), floor=floor, outlook=outlook,
                         probing=s.probe, cost=cost)
        carried = quota - len(chosen) if more else 0
        if not chosen and not more:
            log.info("no screened plan left that is expected to add to the fine-tuned front; the sampler proposes "
                     "the remaining trials")
            break
        if chosen:
            log.info("promoting screened plan(s) %s (expected gain to the fine-tuned front, then Pareto rank on %s)%s",
                     ", ".join(map(str, chosen)), " x ".join(screen_objectives(spec)[:2]),
                     f"; {carried} promotion(s) wait for the next round's plans" if carried else "")
            run_until(finished_count(study) + len(chosen))
            # refitted with the plans just fine-tuned
            line, outlook = _calibrated(study, screened, proxies, spec)
            floor, aim = (line.floor, line.aim) if line is not None else (None, None)
        if more:  # what the next round screens first: the allocation model's plans, then neighbours
            feedback_seed += 1
            room = queue_room(screened, min(per_round, s.plans - done - n), s.explore)
            if s.allocate and room > 0:
                room -= queue_allocations(screened, ctx, min(room, int(round(per_round * s.allocate))), floor=aim,
                                          seed=feedback_seed, cost=cost, outlook=outlook)
            if s.neighbours and room > 0:
                feed_back(study, screened, spec, per_plan=s.neighbours, seed=feedback_seed, limit=room)
    if finished_count(study) < target:
        run_until(target)
