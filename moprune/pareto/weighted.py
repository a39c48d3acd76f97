"""Weighted scores: one number per trial from ``accuracy=1,latency_ms=0.5,energy_mj=0.2``.

A user who must ship one model often has a price for each objective. The score is
``sum(weight * sign * value / dense value)``: every objective is divided by the dense model's value (so a weight
means "one dense model's worth of this"), and the sign comes from the objective's direction (+ for accuracy,
- for latency, energy, MACs and parameters), so weights are magnitudes and must not be negative. Higher is better.
``export --pick weighted:...``, ``pareto --rank-by`` and the report's marked pick read these scores.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from ..errors import SpecError
from ..record import Baseline

#: Values with a dense counterpart, and their direction when the study does not make them an objective.
WEIGHTABLE = {"accuracy": "maximize", "latency_ms": "minimize", "energy_mj": "minimize", "macs": "minimize",
              "params": "minimize"}
_TERM = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Weights:
    """Parsed weights, with the direction and dense value each one is scored against."""

    terms: tuple[tuple[str, float, str, float], ...]  # (name, weight, direction, dense value)

    def score(self, row: pd.Series | dict) -> float:
        """The trial's score; NaN when one weighted value is missing (such a trial is never picked)."""
        total = 0.0
        for name, weight, direction, dense in self.terms:
            value = row.get(name)
            if value is None or pd.isna(value):
                return math.nan
            total += weight * (1.0 if direction == "maximize" else -1.0) * float(value) / dense
        return total

    def scores(self, frame: pd.DataFrame) -> pd.Series:
        return pd.Series([self.score(row) for _, row in frame.iterrows()], index=frame.index, dtype=float)

    def __str__(self) -> str:
        return " ".join(f"{'+' if d == 'maximize' else '-'}{w:g}*{n}/{dense:.4g}" for n, w, d, dense in self.terms)


def parse_weights(text: str, objectives: list[str], directions: list[str], baseline: Baseline | None,
                  *, flag: str = "--pick") -> Weights:
    """``accuracy=1,latency_ms=0.5`` (a leading ``weighted:`` is allowed) into Weights; SpecError naming the fix."""
    shown = text.strip()
    body = shown.removeprefix("weighted:")
    if baseline is None:
        raise SpecError(f"{flag} {shown!r}: the study has no dense baseline yet to normalise by; run trials first")
    usable = [*objectives, *(n for n in WEIGHTABLE if n not in objectives and n in ("macs", "params"))]
    terms, seen = [], set()
    for part in body.split(","):
        match = _TERM.match(part)
        if not match:
            raise SpecError(f"{flag} {shown!r}: cannot read {part.strip()!r}; write NAME=WEIGHT with a weight >= 0, "
                            f"e.g. weighted:accuracy=1,latency_ms=0.5 (signs come from each objective's direction)")
        name, weight = match.group(1), float(match.group(2))
        if name not in usable:
            raise SpecError(f"{flag} {shown!r}: {name!r} cannot be weighted in this study; use one of "
                            f"{', '.join(usable)}")
        if name in seen:
            raise SpecError(f"{flag} {shown!r}: {name!r} is weighted twice; give each name once")
        seen.add(name)
        dense = baseline.value(name)
        if dense is None or not math.isfinite(float(dense)) or float(dense) == 0:
            raise SpecError(f"{flag} {shown!r}: the dense model has no {name} to normalise by "
                            f"(got {dense!r}); leave {name} out of the weights")
        direction = directions[objectives.index(name)] if name in objectives else WEIGHTABLE[name]
        terms.append((name, weight, direction, float(dense)))
    if not any(w > 0 for _, w, _, _ in terms):
        raise SpecError(f"{flag} {shown!r}: every weight is 0; give at least one a positive weight")
    return Weights(tuple(terms))


def rank_by(frame: pd.DataFrame, weights: Weights) -> pd.DataFrame:
    """``frame`` with a ``score`` column, best first (infeasible trials after every feasible one, unscored last)."""
    scored = frame.assign(score=weights.scores(frame))
    order = scored.assign(_infeasible=~scored["feasible"].astype(bool), _neg=-scored["score"])
    order = order.sort_values(["_infeasible", "_neg", "number"], na_position="last")
    return order.drop(columns=["_infeasible", "_neg"]).reset_index(drop=True)
