"""``moprune status``: what a study holds, computed as data first, then formatted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from .pareto import hypervolume, is_feasible, knee_point, objective_names, reference_point, trials_frame
from .spec import StudySpec
from .trials import counts_as_result, fail_reason


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


def _brief(trial: optuna.trial.FrozenTrial, names: list[str]) -> dict[str, Any]:
    out = {"number": trial.number, **dict(zip(names, trial.values))}
    out["speedup"] = trial.user_attrs.get("speedup")
    out["latency_ms"] = trial.user_attrs.get("latency_ms", out.get("latency_ms"))
    return out


def study_status(study: optuna.Study, spec: StudySpec) -> StudyStatus:
    names = objective_names(study)
    trials = study.get_trials(deepcopy=False)
    feasible = [t for t in trials if is_feasible(t)]
    best = fastest = None
    if feasible and "accuracy" in names:
        i = names.index("accuracy")
        # among equally accurate trials the fastest: the dense seed trial should not win a tie with a pruned one
        best = _brief(max(feasible, key=lambda t: (t.values[i], -t.user_attrs.get("latency_ms", float("inf")),
                                                   -t.number)), names)
    timed = [t for t in feasible if t.user_attrs.get("latency_ms") is not None]
    if timed:
        fastest = _brief(min(timed, key=lambda t: (t.user_attrs["latency_ms"], t.number)), names)
    failures = [(t.number, _failure(t)) for t in trials if t.state == optuna.trial.TrialState.FAIL]
    # How the trials' numbers were taken, from their own attrs (kept beside the study's environment).
    from .measure.summary import measured_with

    environment = {**study.user_attrs.get("environment", {}),
                   "measured_with": measured_with(t.user_attrs for t in trials)}
    baseline = study.user_attrs.get("baseline", {})
    frame = trials_frame(study)  # the front as `moprune pareto` shows it (re-evaluated means where present)
    front = frame[frame["on_front"]]
    directions = [d.name.lower() for d in study.directions]
    hv = reference = None
    if baseline and all(baseline.get(n) for n in names):
        drop = spec.constraints.max_accuracy_drop
        hv = hypervolume(frame, names, directions, baseline, drop)
        reference = reference_point(names, baseline, drop)
    knee_number = knee_point(front, names, directions)
    knee = None
    if knee_number is not None:
        knee = _brief(next(t for t in trials if t.number == knee_number), names)
    return StudyStatus(
        name=study.study_name, storage=spec.storage_url, states=dict(Counter(_state(t) for t in trials)),
        target=spec.search.n_trials, baseline=baseline, environment=environment, front_size=len(front),
        best_accuracy=best, fastest_feasible=fastest, failures=failures, hypervolume=hv, reference=reference,
        knee=knee,
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
    from .measure.summary import format_measured_with

    lines += [f"  {line}" for line in format_measured_with(used, env)]
    if base:
        lines.append(f"  dense baseline: accuracy {base['accuracy']:.4f}, latency {base['latency_ms']:.2f} ms "
                     f"[p10 {base['latency_ms_p10']:.2f}, p90 {base['latency_ms_p90']:.2f}], "
                     f"{base['macs'] / 1e6:.2f}M MACs, {base['params'] / 1e6:.2f}M params ({base['source']})")
    lines.append(f"  Pareto front: {s.front_size} feasible trials")
    if s.hypervolume is not None and s.reference:
        ref = ", ".join(f"{k} {v:.3g}" for k, v in s.reference.items())
        lines.append(f"  hypervolume: {s.hypervolume:.4f} (objectives divided by dense; reference point {ref})")
    lines.append(f"  knee point: {_trial_line(s.knee) if s.knee else '-'}")
    lines.append(f"  best accuracy: {_trial_line(s.best_accuracy) if s.best_accuracy else '-'}")
    lines.append(f"  fastest feasible: {_trial_line(s.fastest_feasible) if s.fastest_feasible else '-'}")
    for number, reason in s.failures[-5:]:
        lines.append(f"  failed trial {number}: {reason}")
    return "\n".join(lines)
