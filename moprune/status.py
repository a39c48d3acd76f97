"""``moprune status``: what a study holds, computed as data first, then formatted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna

from .pareto import is_feasible, objective_names
from .spec import StudySpec


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
        best = _brief(max(feasible, key=lambda t: (t.values[i], -t.number)), names)
    timed = [t for t in feasible if t.user_attrs.get("latency_ms") is not None]
    if timed:
        fastest = _brief(min(timed, key=lambda t: (t.user_attrs["latency_ms"], t.number)), names)
    failures = [(t.number, t.user_attrs.get("fail_reason", "no reason recorded"))
                for t in trials if t.state == optuna.trial.TrialState.FAIL]
    return StudyStatus(
        name=study.study_name, storage=spec.storage_url, states=dict(Counter(t.state.name for t in trials)),
        target=spec.search.n_trials, baseline=study.user_attrs.get("baseline", {}),
        environment=study.user_attrs.get("environment", {}), front_size=len(study.best_trials),
        best_accuracy=best, fastest_feasible=fastest, failures=failures,
    )


def _trial_line(brief: dict[str, Any]) -> str:
    parts = [f"trial {brief['number']}"]
    if brief.get("accuracy") is not None:
        parts.append(f"accuracy {brief['accuracy']:.4f}")
    if brief.get("latency_ms") is not None:
        parts.append(f"{brief['latency_ms']:.2f} ms")
    if brief.get("speedup") is not None:
        parts.append(f"{brief['speedup']:.2f}x faster than dense")
    return ", ".join(parts)


def format_status(s: StudyStatus) -> str:
    env, base = s.environment, s.baseline
    finished = sum(n for k, n in s.states.items() if k in ("COMPLETE", "FAIL", "PRUNED"))
    lines = [
        f"study {s.name!r} in {s.storage}",
        f"  trials: {finished} finished of {s.target} "
        f"({', '.join(f'{n} {k.lower()}' for k, n in sorted(s.states.items())) or 'none yet'})",
        f"  device: {env.get('device', '?')} ({env.get('device_name', '?')}), torch {env.get('torch', '?')}, "
        f"{env.get('threads', '?')} threads; latency timer: "
        f"{'CUDA events' if str(env.get('device', '')).startswith('cuda') else 'perf_counter'}",
    ]
    if base:
        lines.append(f"  dense baseline: accuracy {base['accuracy']:.4f}, latency {base['latency_ms']:.2f} ms "
                     f"[p10 {base['latency_ms_p10']:.2f}, p90 {base['latency_ms_p90']:.2f}], "
                     f"{base['macs'] / 1e6:.2f}M MACs, {base['params'] / 1e6:.2f}M params ({base['source']})")
    lines.append(f"  Pareto front: {s.front_size} feasible trials")
    lines.append(f"  best accuracy: {_trial_line(s.best_accuracy) if s.best_accuracy else '-'}")
    lines.append(f"  fastest feasible: {_trial_line(s.fastest_feasible) if s.fastest_feasible else '-'}")
    for number, reason in s.failures[-5:]:
        lines.append(f"  failed trial {number}: {reason}")
    return "\n".join(lines)
