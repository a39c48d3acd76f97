"""Pick rules: which trial to export. ``trial:N``, ``knee``, ``best:OBJECTIVE``, ``OBJECTIVE@NAME<=VALUE[,...]``."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import pandas as pd

from .errors import SpecError
from .pareto import knee_point

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
RULES_HELP = "trial:N, knee, best:OBJECTIVE, or OBJECTIVE@NAME<=VALUE (e.g. accuracy@latency_ms<=2.5)"


@dataclass(frozen=True)
class Pick:
    number: int
    reason: str  # how the rule chose it, for the user


def _closest(frame: pd.DataFrame, objectives: list[str], k: int = 3) -> str:
    rows = frame.head(k)
    parts = []
    for _, row in rows.iterrows():
        vals = ", ".join(f"{o}={row[o]:.4g}" for o in objectives if pd.notna(row.get(o)))
        parts.append(f"trial {int(row['number'])} ({vals})")
    return "; ".join(parts) or "none"


def pick_trial(rule: str, frame: pd.DataFrame, objectives: list[str], directions: list[str]) -> Pick:
    """Apply ``rule`` to the trials in ``frame`` (from ``trials_frame``); raises SpecError when nothing matches."""
    rule = rule.strip()
    feasible = frame[frame["feasible"]]
    if rule.startswith("trial:"):
        try:
            number = int(rule.removeprefix("trial:"))
        except ValueError:
            raise SpecError(f"--pick {rule!r}: the trial number must be an integer") from None
        row = frame[frame["number"] == number]
        if row.empty or row.iloc[0]["state"] != "COMPLETE":
            raise SpecError(f"--pick {rule!r}: trial {number} did not complete; completed trials on the front: "
                            f"{_closest(frame[frame['on_front']], objectives)}")
        return Pick(number, f"trial {number} as asked")
    if rule == "knee":
        number = knee_point(frame[frame["on_front"]], objectives, directions)
        if number is None:
            raise SpecError("--pick knee: the study has no feasible Pareto front yet")
        return Pick(number, "knee of the feasible Pareto front")
    if rule.startswith("best:"):
        name = rule.removeprefix("best:")
        _check_objective(name, objectives, rule)
        return _best(feasible, name, objectives, directions, rule, frame)
    if "@" in rule:
        name, _, conditions = rule.partition("@")
        _check_objective(name, objectives, rule)
        subset = feasible
        for cond in conditions.split(","):
            match = _CONDITION.match(cond)
            if not match:
                raise SpecError(f"--pick {rule!r}: cannot read condition {cond!r}; write NAME<=VALUE")
            col, op, value = match.group(1), match.group(2), float(match.group(3))
            if col not in frame.columns:
                raise SpecError(f"--pick {rule!r}: no measured column {col!r}; use one of {', '.join(objectives)}")
            subset = subset[subset[col].map(lambda v, op=op, value=value: pd.notna(v) and _OPS[op](v, value))]
        if subset.empty:
            col = _CONDITION.match(conditions.split(",")[0]).group(1)
            near = feasible.assign(_gap=(feasible[col] - float(_CONDITION.match(conditions.split(",")[0]).group(3))
                                         ).abs()).sort_values("_gap")
            raise SpecError(f"--pick {rule!r}: no feasible trial meets {conditions}; closest: "
                            f"{_closest(near, objectives)}")
        return _best(subset, name, objectives, directions, rule, frame, why=f" with {conditions}")
    raise SpecError(f"--pick {rule!r}: unknown rule; use {RULES_HELP}")


def _check_objective(name: str, objectives: list[str], rule: str) -> None:
    if name not in objectives:
        raise SpecError(f"--pick {rule!r}: {name!r} is not an objective of this study ({', '.join(objectives)})")


def _best(subset: pd.DataFrame, name: str, objectives: list[str], directions: list[str], rule: str,
          frame: pd.DataFrame, why: str = "") -> Pick:
    if subset.empty:
        raise SpecError(f"--pick {rule!r}: no feasible trial; all trials: {_closest(frame, objectives)}")
    maximize = directions[objectives.index(name)] == "maximize"
    ordered = subset.sort_values([name, "number"], ascending=[not maximize, True])
    number = int(ordered.iloc[0]["number"])
    return Pick(number, f"{'highest' if maximize else 'lowest'} {name} among feasible trials{why}")
