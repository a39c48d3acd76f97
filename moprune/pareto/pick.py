"""Pick rules: which trial to export. ``trial:N``, ``knee``, ``best:OBJECTIVE``, ``OBJECTIVE@NAME<=VALUE[,...]``,
``weighted:NAME=WEIGHT[,...]``.

Rules read the frame of ``moprune.pareto.trials_frame``. A rule that matches nothing raises SpecError (exit 2) and
names the trials that came closest, so the user can relax the rule or pick one of them by number.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

import pandas as pd

from ..errors import SpecError
from ..record import Baseline
from .indicators import knee_point
from .weighted import parse_weights

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONDITION = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
RULES_HELP = ("trial:N, knee, best:OBJECTIVE, OBJECTIVE@NAME<=VALUE[,NAME<=VALUE] (e.g. accuracy@latency_ms<=2.5), "
              "or weighted:NAME=WEIGHT[,...] (e.g. weighted:accuracy=1,latency_ms=0.5)")


@dataclass(frozen=True)
class Pick:
    number: int
    reason: str  # how the rule chose it, for the user


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: float

    def holds(self, v) -> bool:
        return v is not None and pd.notna(v) and _OPS[self.op](float(v), self.value)

    def miss(self, v) -> float:
        """How far ``v`` is from meeting the condition, relative to its bound (0 when it holds; inf when unknown)."""
        if v is None or pd.isna(v):
            return math.inf
        if self.holds(v):
            return 0.0
        return abs(float(v) - self.value) / (abs(self.value) or 1.0)

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value:g}"


def format_value(name: str, value) -> str:
    """A value as the tables print it: accuracy 0.9528, latency_ms 9.42 ms, macs 1.80M."""
    if value is None or pd.isna(value):
        return f"{name}=-"
    if name == "accuracy" or name.startswith("accuracy"):
        return f"{name}={value:.4f}"
    if name in ("macs", "params"):
        return f"{name}={value / 1e6:.2f}M"
    return f"{name}={value:.3g}"


def describe_trials(frame: pd.DataFrame, objectives: list[str], k: int = 3) -> str:
    """``trial 4 (accuracy=0.9528, latency_ms=9.42, macs=1.80M); ...`` for the first ``k`` rows of ``frame``."""
    parts = []
    for _, row in frame.head(k).iterrows():
        values = ", ".join(format_value(o, row.get(o)) for o in objectives)
        flag = "" if row.get("feasible", True) else ", infeasible"
        parts.append(f"trial {int(row['number'])} ({values}{flag})")
    return "; ".join(parts) or "none"


def parse_conditions(rule: str, text: str, frame: pd.DataFrame, objectives: list[str]) -> list[Condition]:
    conditions = []
    for part in text.split(","):
        match = _CONDITION.match(part)
        if not match:
            raise SpecError(f"--pick {rule!r}: cannot read condition {part.strip()!r}; write NAME<=VALUE, "
                            f"e.g. latency_ms<=2.5")
        column, op, value = match.group(1), match.group(2), float(match.group(3))
        if column not in frame.columns or column in ("number", "state", "feasible", "on_front", "plan", "channels",
                                                       "constraints", "fine_tuned", "fail_reason"):
            usable = [*objectives, *(c for c in ("macs", "params", "speedup") if c not in objectives)]
            raise SpecError(f"--pick {rule!r}: {column!r} is not a measured value of this study; use one of "
                            f"{', '.join(usable)}")
        conditions.append(Condition(column, op, value))
    return conditions


def _violation(constraints) -> float:
    """Total constraint violation of a trial (0 when feasible), to rank infeasible trials by how close they came."""
    if not isinstance(constraints, dict):
        return math.inf
    return sum(max(0.0, float(v)) for v in constraints.values())


def _least_infeasible(frame: pd.DataFrame) -> pd.DataFrame:
    done = frame[frame["state"] == "COMPLETE"]
    return done.assign(_v=done["constraints"].map(_violation)).sort_values(["_v", "number"])


def pick_trial(rule: str, frame: pd.DataFrame, objectives: list[str], directions: list[str],
               baseline: Baseline | None = None) -> Pick:
    """Apply ``rule`` to the trials in ``frame`` (from ``trials_frame``); raises SpecError when nothing matches.

    ``baseline`` (the dense model) is needed only by ``weighted:``, which normalises every objective by it.
    """
    rule = rule.strip()
    feasible = frame[frame["feasible"]]
    if rule.startswith("trial:"):
        return _pick_number(rule, frame, objectives)
    if rule.startswith("weighted:"):
        return _pick_weighted(rule, feasible, frame, objectives, directions, baseline)
    if rule == "knee":
        number = knee_point(frame[frame["on_front"]], objectives, directions)
        if number is None:
            raise SpecError(f"--pick knee: the study has no feasible Pareto front yet; closest (least constraint "
                            f"violation): {describe_trials(_least_infeasible(frame), objectives)}")
        return Pick(number, "knee of the feasible Pareto front")
    if rule.startswith("best:"):
        name = rule.removeprefix("best:").strip()
        _check_objective(name, objectives, rule)
        return _best(feasible, name, objectives, directions, rule, frame)
    if "@" in rule:
        name, _, text = rule.partition("@")
        name = name.strip()
        _check_objective(name, objectives, rule)
        conditions = parse_conditions(rule, text, frame, objectives)
        subset = feasible[feasible.apply(lambda row: all(c.holds(row[c.column]) for c in conditions), axis=1)] \
            if not feasible.empty else feasible
        if subset.empty:
            if feasible.empty:
                raise SpecError(f"--pick {rule!r}: the study has no feasible trial; closest (least constraint "
                                f"violation): {describe_trials(_least_infeasible(frame), objectives)}")
            miss = feasible.apply(lambda row: sum(c.miss(row[c.column]) for c in conditions), axis=1)
            near = feasible.assign(_miss=miss).sort_values(["_miss", "number"])
            shown = list(dict.fromkeys([*objectives, *(c.column for c in conditions)]))
            raise SpecError(f"--pick {rule!r}: no feasible trial has {', '.join(map(str, conditions))}; closest: "
                            f"{describe_trials(near, shown)}")
        return _best(subset, name, objectives, directions, rule, frame,
                     why=f" with {', '.join(map(str, conditions))}")
    raise SpecError(f"--pick {rule!r}: unknown rule; use {RULES_HELP}")


def _pick_weighted(rule: str, feasible: pd.DataFrame, frame: pd.DataFrame, objectives: list[str],
                   directions: list[str], baseline: Baseline | None) -> Pick:
    weights = parse_weights(rule, objectives, directions, baseline)
    if feasible.empty:
        raise SpecError(f"--pick {rule!r}: the study has no feasible trial; closest (least constraint violation): "
                        f"{describe_trials(_least_infeasible(frame), objectives)}")
    scored = feasible.assign(_score=weights.scores(feasible)).dropna(subset=["_score"])
    if scored.empty:
        raise SpecError(f"--pick {rule!r}: no feasible trial has every weighted value measured")
    best = scored.sort_values(["_score", "number"], ascending=[False, True]).iloc[0]
    return Pick(int(best["number"]), f"highest weighted score {best['_score']:.4f} ({weights}) among feasible trials")


def _pick_number(rule: str, frame: pd.DataFrame, objectives: list[str]) -> Pick:
    try:
        number = int(rule.removeprefix("trial:"))
    except ValueError:
        raise SpecError(f"--pick {rule!r}: the trial number must be an integer, e.g. trial:7") from None
    row = frame[frame["number"] == number]
    if not row.empty and row.iloc[0]["state"] == "COMPLETE":
        feasible = bool(row.iloc[0]["feasible"])
        return Pick(number, "as asked" + ("" if feasible else " (infeasible: it violates a constraint)"))
    done = frame[frame["state"] == "COMPLETE"]
    near = done.assign(_d=(done["number"] - number).abs()).sort_values(["_d", "number"])
    what = "does not exist" if row.empty else f"is {row.iloc[0]['state']}, not COMPLETE"
    raise SpecError(f"--pick {rule!r}: trial {number} {what}; nearest completed trials: "
                    f"{describe_trials(near, objectives)}")


def _check_objective(name: str, objectives: list[str], rule: str) -> None:
    if name not in objectives:
        raise SpecError(f"--pick {rule!r}: {name!r} is not an objective of this study ({', '.join(objectives)})")


def _best(subset: pd.DataFrame, name: str, objectives: list[str], directions: list[str], rule: str,
          frame: pd.DataFrame, why: str = "") -> Pick:
    if subset.empty:
        raise SpecError(f"--pick {rule!r}: the study has no feasible trial; closest (least constraint violation): "
                        f"{describe_trials(_least_infeasible(frame), objectives)}")
    maximize = directions[objectives.index(name)] == "maximize"
    ordered = subset.sort_values([name, "number"], ascending=[not maximize, True])
    number = int(ordered.iloc[0]["number"])
    return Pick(number, f"{'highest' if maximize else 'lowest'} {name} among feasible trials{why}")
