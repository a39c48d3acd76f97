"""What the screen learns from the plans it fine-tuned: their measured latency, and what their proxy became.

Screening scores plans with two cheap stand-ins, a predicted latency and a proxy of accuracy, and both are
calibrated on this study's precisely measured, fine-tuned trials, refitted every round:

- ``LatencyCalibration`` fits the latency model (``moprune.measure.latency_model``) on the dense model and every
  fine-tuned plan's paired latency.
- ``ProxyCalibration`` maps the proxy onto the accuracy the fine-tune gave (a least-squares line on the log-odds
  scale, its slope shrunk toward 1, each plan weighed by how far it may scatter, over the fine-tuned plans, whose
  proxy is the screened one or, for starting plans, computed once), so promotion can skip plans the line puts below
  the accuracy budget (below the proxies it was fitted on it falls at least as steeply as the proxy: ``bent``).
  Without it, promoting evenly along the proxy x latency front spends every fine-tune at the fast end, where on the
  bench's MobileNetV2 no plan was feasible (14 of 14 promoted plans infeasible, seed 0).

Neither is a measurement: they decide what is measured next, and only the fine-tuned trials' numbers are results.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import TrialState

from ..measure import LatencyModel, cost_features, fit_latency_model
from ..pruning import dropped_count
from ..record import TrialRecord, baseline_of
from .context import StudyContext, finetune_seed
from .proxy_line import PRIOR_RESIDUAL, ProxyLine, fit_line

log = logging.getLogger(__name__)


def _measured(study: optuna.Study) -> list[tuple[int, TrialRecord]]:
    """Fine-tuned, measured trials with the plan they pruned."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = TrialRecord.of(t)
        if record.speedup and (record.fixed_plan or record.plan) and not record.rejected:
            out.append((t.number, record))
    return out


class LatencyCalibration:
    """The study's latency model, refitted on the dense model, every fine-tuned plan measured so far and every
    screened plan the screen timed (those the model did not cover: ``LatencyModel.covers``).

    A plan's latency is the dense latency over its paired speedup (what the front and the bench use: the rounds'
    drift cancels); a fine-tuned plan's features are counted once per trial, on the plan pruned again, a screened
    plan's were stored when it was screened.
    """

    def __init__(self, ctx: StudyContext):
        self.ctx = ctx
        self.dense = cost_features(ctx.dense.model, ctx.trace_inputs)
        self.features: dict[int, tuple[float, ...]] = {}

    def fit(self, study: optuna.Study, screened: optuna.Study | None = None) -> LatencyModel | None:
        base = baseline_of(study)
        if base is None:
            return None
        xs, ys = [self.dense], [base.latency_ms]
        for number, record in _measured(study):
            if number not in self.features:
                plan = record.fixed_plan or record.plan
                self.features[number] = cost_features(self.ctx.prune(plan).model, self.ctx.trace_inputs)
            xs.append(self.features[number])
            ys.append(base.latency_ms / record.speedup)
        for record in _timed(screened):
            xs.append(tuple(record.cost_features or ()))
            ys.append(base.latency_ms / record.speedup)
        return fit_latency_model(xs, ys, dense=(self.dense, base.latency_ms))


def _timed(screened: optuna.Study | None) -> list[TrialRecord]:
    """Screened plans the screen timed (the quick paired measurement) with the features they were screened with."""
    if screened is None:
        return []
    records = (TrialRecord.of(t) for t in screened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return [r for r in records if r.speedup and r.cost_features and r.latency_predicted_ms is None]


class ProxyCalibration:
    """accuracy after the fine-tune ~ a + b * proxy, over the fine-tuned plans; ``floor`` inverts it at the budget."""

    def __init__(self, ctx: StudyContext):
        self.ctx = ctx
        self.computed: dict[int, float] = {}  # starting plans' proxies, computed once

    def _proxy(self, number: int, record: TrialRecord, screened: dict[int, float]) -> float:
        if record.screen_trial is not None and record.screen_trial in screened:
            return screened[record.screen_trial]
        if number not in self.computed:
            pruned = self.ctx.prune(record.fixed_plan or record.plan)
            self.computed[number] = self.ctx.proxy(pruned.model, finetune_seed(self.ctx.spec.seed, number)).accuracy
        return self.computed[number]

    def floor(self, study: optuna.Study, screened: optuna.Study) -> float | None:
        """The proxy at the accuracy budget (``ProxyLine.floor``); None only when the study has no accuracy budget."""
        line = self.line(study, screened)
        return None if line is None else line.floor

    def line(self, study: optuna.Study, screened: optuna.Study) -> ProxyLine | None:
        """The line from proxy to accuracy over the fine-tuned plans (None without an accuracy budget).

        Least squares shrunk toward slope 1 (``PRIOR_SPREAD``): the fine-tuned plans' proxies often lie close
        together (promotion picks them near the floor), and there a plain fit's slope is noise. On the bench's
        MobileNetV2 (seed 0, 2026-12-03) four promoted plans with proxies 0.78-0.82 fitted a falling line, the floor
        was dropped, and the next round promoted the uniform 0.85 plan, whose proxy read chance. With no plan yet,
        the proxy is read as an accuracy (a few fine-tune steps reach less than the whole fine-tune).
        """
        base, drop = baseline_of(study), self.ctx.spec.constraints.max_accuracy_drop
        if base is None or drop is None or "accuracy" not in self.ctx.spec.objectives:
            return None
        accuracy_at = self.ctx.spec.objectives.index("accuracy")
        proxies = {t.number: t.values[0] for t in screened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        xs, ys, dropped = [], [], []
        trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        for number, record in _measured(study):
            xs.append(self._proxy(number, record, proxies))
            ys.append(trials[number].values[accuracy_at])
            dropped.append(dropped_count(record.fixed_plan or record.plan))
        budget = base.accuracy - drop
        if not xs:
            log.info("proxy calibration: no fine-tuned plan yet; promoting on proxy >= the accuracy budget %.4f",
                     budget)
            return ProxyLine(1.0, 0.0, PRIOR_RESIDUAL, budget, budget)
        line = fit_line(xs, ys, budget, dropped)
        log.info("proxy calibration over %d fine-tuned plan(s): log-odds of accuracy = %.3f + %.3f x log-odds of the "
                 "proxy (a fine-tune scatters %.4f of accuracy, the proxy %.2f log-odds; sd %.3f log-odds at the "
                 "budget)%s; the accuracy budget %.4f is a proxy of %.3f (the line's %.3f)", len(xs), line.intercept,
                 line.slope, line.spread, line.proxy_noise, line.scatter_at(budget),
                 f", proxy {line.per_block:+.3f} per dropped block" if line.blocks_tried else "", budget, line.floor,
                 line.proxy_at(budget))
        return line
