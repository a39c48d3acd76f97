"""``moprune status``: what a study holds, computed as data first, then formatted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from ..pareto import best_feasible, directions_of, hypervolume, knee_point, objective_names, reference_point, trials_frame
from ..record import TrialRecord, baseline_of, counts_as_result, environment_of, fail_reason
from ..spec import StudySpec
from .measured import format_measured_with, measured_with


@dataclass(frozen=True)
class StudyStatus:
    name: str
    storage: str
    states: dict[str, int]
    target: int
    baseline: dict[str, Any]
    environment: dict[str, Any]
    front_size: int
    best_accuracy: dict[str, Any] | None  # number, accuracy, speedup of the most accurate feasible trial
    fastest_feasible: dict[str, Any] | None  # number, latency_ms, speedup, accuracy
    failures: list[tuple[int, str]] = field(default_factory=list)
    hypervolume: float | None = None  # of the feasible front, normalised by dense; None without a full baseline
    reference: dict[str, float] | None = None  # the hypervolume's reference point (normalised units)
    knee: dict[str, Any] | None = None  # the front's knee point: what `export --pick knee` would take
    screen: ScreenStatus | None = None  # the screened plans, when the study screens


@dataclass(frozen=True)
class ScreenStatus:
    """The screen study beside a study: how many plans were screened, promoted, and how well the proxy ranked."""

    plans: int
    scored: int
    rejected: int  # over a hard budget: never scored
    failed: int
    proxy_methods: dict[str, int]
    promoted: int  # fine-tuned in the study
    spearman: float | None  # proxy vs accuracy after the fine-tune, over the promoted plans (None below 3)
    # who proposed the scored plans: sweep, allocation (the screen's model), neighbour, sampler
    proposers: dict[str, int] = field(default_factory=dict)


def screen_status(screened: optuna.Study, study: optuna.Study) -> ScreenStatus:
    """Counts of ``screened`` and the proxy's rank correlation with what the fine-tune of its promoted plans gave."""
    States = optuna.trial.TrialState
    trials = [t for t in screened.get_trials(deepcopy=False) if t.state.is_finished()]  # not the queued ones
    from .screen import proposer_of, screen_frame, spearman

    proxies = {t.number: TrialRecord.of(t).proxy_method for t in trials if t.state == States.COMPLETE}
    frame, _ = screen_frame(screened, study)
    paired = frame[frame["promoted_as"].notna() & frame["accuracy"].notna()]
    promoted = {TrialRecord.of(t).screen_trial for t in study.get_trials(deepcopy=False)} - {None}
    rho = spearman(paired["proxy"].tolist(), paired["accuracy"].tolist())
    return ScreenStatus(
        plans=len(trials), scored=len(proxies), rejected=sum(t.state == States.PRUNED for t in trials),
        failed=sum(t.state == States.FAIL for t in trials),
        proxy_methods=dict(Counter(m for m in proxies.values() if m)), promoted=len(promoted), spearman=rho,
        proposers=dict(Counter(proposer_of(t) for t in trials if t.state == States.COMPLETE)))


def _brief(row: pd.Series | None, names: list[str]) -> dict[str, Any] | None:
    """Number, objective values (re-evaluated means where there are), latency and speedup of one frame row."""
    if row is None:
        return None
    out: dict[str, Any] = {"number": int(row["number"]), **{n: _plain(row[n]) for n in names}}
    out["speedup"] = _plain(row["speedup"])
    out["latency_ms"] = _plain(row["latency_ms"])
    return out


def _plain(value: Any) -> Any:
    return None if value is None or pd.isna(value) else (value.item() if hasattr(value, "item") else value)


def study_status(study: optuna.Study, spec: StudySpec, screened: optuna.Study | None = None) -> StudyStatus:
    """Every number from the one front (``moprune.pareto.trials_frame``): re-evaluated means where there are.

    ``screened``: the study's screen study, whose plans are counted apart (they were never fine-tuned)."""
    names = objective_names(study)
    directions = directions_of(study)
    trials = study.get_trials(deepcopy=False)
    frame = trials_frame(study)
    best = _brief(best_feasible(frame, "accuracy", "maximize"), names) if "accuracy" in names else None
    fastest = _brief(best_feasible(frame, "latency_ms", "minimize"), names)
    failures = [(t.number, _failure(t)) for t in trials if t.state == optuna.trial.TrialState.FAIL]
    # How the trials' numbers were taken, from their own records (kept beside the study's environment).
    environment = {**environment_of(study), "measured_with": measured_with(TrialRecord.of(t) for t in trials)}
    found = baseline_of(study)
    baseline = found.as_dict() if found is not None else {}
    front = frame[frame["on_front"]]
    hv = reference = None
    if found is not None and all(found.value(n) for n in names):
        drop = spec.constraints.max_accuracy_drop
        hv = hypervolume(frame, names, directions, baseline, drop)
        reference = reference_point(names, baseline, drop)
    knee_number = knee_point(front, names, directions)
    knee = _brief(frame[frame["number"] == knee_number].iloc[0], names) if knee_number is not None else None
    return StudyStatus(
        name=study.study_name, storage=spec.storage_url, states=dict(Counter(_state(t) for t in trials)),
        target=spec.search.n_trials, baseline=baseline, environment=environment, front_size=len(front),
        best_accuracy=best, fastest_feasible=fastest, failures=failures, hypervolume=hv, reference=reference,
        knee=knee, screen=screen_status(screened, study) if screened is not None else None,
    )


def _state(trial: FrozenTrial) -> str:
    """Counted as ``run`` counts: a trial that is not a result (interrupted, dead worker) is ``RE-RUN``, not FAIL."""
    return "RE-RUN" if trial.state.is_finished() and not counts_as_result(trial) else trial.state.name


def _failure(trial: FrozenTrial) -> str:
    reason = fail_reason(trial) or "no reason recorded"
    return reason if counts_as_result(trial) else f"{reason} (not counted; its plan runs again)"


def _trial_line(brief: dict[str, Any]) -> str:
    parts = [f"trial {brief['number']}"]
    if brief.get("accuracy") is not None:
        parts.append(f"accuracy {brief['accuracy']:.4f}")
    if brief.get("latency_ms") is not None:
        parts.append(f"{brief['latency_ms']:.2f} ms")
    if brief.get("speedup") is not None:
        parts.append(f"speedup {brief['speedup']:.2f}x vs dense")
    return ", ".join(parts)


def format_status(s: StudyStatus) -> str:
    env, base = s.environment, s.baseline
    used = env.get("measured_with") or {}
    finished = sum(n for k, n in s.states.items() if k in ("COMPLETE", "FAIL", "PRUNED"))
    on_gpu = str(env.get("device", "")).startswith("cuda")
    timers = ", ".join(used.get("timers") or {}) or env.get("latency_timer") or (
        "CUDA events" if on_gpu else "perf_counter")
    threads = "/".join(str(t) for t in used.get("threads") or []) or env.get("threads", "?")
    lines = [
        f"study {s.name!r} in {s.storage}",
        f"  trials: {finished} finished of {s.target} "
        f"({', '.join(f'{n} {k.lower()}' for k, n in sorted(s.states.items())) or 'none yet'})",
        f"  device: {env.get('device', '?')} ({env.get('device_name', '?')}), torch {env.get('torch', '?')}, "
        f"{threads} threads; latency timer: {timers}",
    ]
    if on_gpu:
        lines.append(f"  GPU: driver {env.get('driver', '?')}, CUDA {env.get('cuda', '?')}, "
                     f"SM clock {env.get('sm_clock_mhz') or '?'} MHz at study creation")
    lines += [f"  {line}" for line in format_measured_with(used, env)]
    if base:
        lines.append(f"  dense baseline: accuracy {base['accuracy']:.4f}, latency {base['latency_ms']:.2f} ms "
                     f"[p10 {base['latency_ms_p10']:.2f}, p90 {base['latency_ms_p90']:.2f}], "
                     f"{base['macs'] / 1e6:.2f}M MACs, {base['params'] / 1e6:.2f}M params"
                     + (f", {base['energy_mj']:.1f} mJ ({base.get('energy_method')})" if base.get("energy_mj") else "")
                     + f" ({base['source']})")
    lines.append(f"  Pareto front: {s.front_size} feasible trials")
    if s.hypervolume is not None and s.reference:
        ref = ", ".join(f"{k} {v:.3g}" for k, v in s.reference.items())
        lines.append(f"  hypervolume: {s.hypervolume:.4f} (objectives divided by dense; reference point {ref})")
    lines.append(f"  knee point: {_trial_line(s.knee) if s.knee else '-'}")
    lines.append(f"  best accuracy: {_trial_line(s.best_accuracy) if s.best_accuracy else '-'}")
    lines.append(f"  fastest feasible: {_trial_line(s.fastest_feasible) if s.fastest_feasible else '-'}")
    if s.screen is not None:
        lines.append(f"  {_screen_line(s.screen)}")
    for number, reason in s.failures[-5:]:
        lines.append(f"  failed trial {number}: {reason}")
    return "\n".join(lines)


def _screen_line(sc: ScreenStatus) -> str:
    methods = ", ".join(sc.proxy_methods) or "no"
    rho = (f"Spearman {sc.spearman:.2f} between proxy and accuracy after the fine-tune over the promoted plans"
           if sc.spearman is not None else "too few promoted plans to rank the proxy")
    by = ", ".join(f"{n} {kind}" for kind, n in sorted(sc.proposers.items(), key=lambda kv: -kv[1]))
    return (f"screened (never fine-tuned, kept apart in their own study): {sc.plans} plans ({sc.scored} scored by "
            f"the {methods} proxy, {sc.rejected} over a budget, {sc.failed} failed)"
            + (f"; scored plans proposed by: {by}" if by else "")
            + f"; {sc.promoted} promoted and fine-tuned here; {rho}")
