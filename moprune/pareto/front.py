"""The one definition of feasible, the Pareto front and the best trials, as a DataFrame of every trial.

Everything that shows or acts on "the front" reads it here: ``moprune pareto``, ``status``, the report, export's
pick rules, the weight keeper and the benches. Where trials were re-evaluated on fresh fine-tune seeds, their
``accuracy`` is the mean over all their fine-tunes and feasibility and the front are judged on that mean.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ..record import TrialRecord, origin, reevaluations

OBJECTIVE_COLUMNS = ("accuracy", "latency_ms", "energy_mj", "macs", "params")
#: Record fields shown beside the objectives (objectives take their value from the trial's values).
ATTR_COLUMNS = ("latency_ms", "energy_mj", "macs", "params", "speedup", "speedup_p10", "speedup_p90",
                "latency_ms_p10", "latency_ms_p90", "accuracy_pre_ft", "energy_method", "device_name", "latency_noisy",
                "fail_reason")


def is_feasible(trial: FrozenTrial) -> bool:
    """Complete, and every constraint met (Optuna's convention: a constraint value <= 0)."""
    return trial.state == TrialState.COMPLETE and all(v <= 0 for v in trial.constraints.values())


def objective_names(study: optuna.Study) -> list[str]:
    return list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])


def directions_of(study: optuna.Study) -> list[str]:
    """``maximize`` / ``minimize`` per objective, in objective order."""
    return [d.name.lower() for d in study.directions]


def nondominated(points: np.ndarray, directions: list[str]) -> np.ndarray:
    """Boolean mask of the points no other point dominates (ties kept: two equal points are both on the front)."""
    import moocore

    points = np.atleast_2d(np.asarray(points, dtype=float))
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, maximise=[d == "maximize" for d in directions],
                                              keep_weakly=True), dtype=bool)


def pareto_ranks(points: np.ndarray, directions: list[str]) -> np.ndarray:
    """Non-dominated sorting: 1 for the front, 2 for the front of what is left, and so on."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    ranks = np.zeros(len(points), dtype=int)
    rank = 0
    while (ranks == 0).any():
        rank += 1
        left = np.flatnonzero(ranks == 0)
        ranks[left[nondominated(points[left], directions)]] = rank
    return ranks


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial: number, state, feasible, on_front, pareto_rank, objective values, plan, origin, measured fields.

    Re-evaluated trials carry ``accuracy`` as the mean over all their fine-tunes (``accuracy_first`` keeps the
    trial's own value; ``accuracy_std`` and ``accuracy_n`` the spread), and their accuracy-drop constraint moves by
    as much as the mean did. ``pareto_rank`` is 1 on the feasible front, 2 on the next, None when infeasible.
    """
    names = objective_names(study)
    reevals = reevaluations(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        record = TrialRecord.of(t)
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "feasible": is_feasible(t)}
        for key in ATTR_COLUMNS:
            row[key] = getattr(record, key)
        for i, name in enumerate(names):
            row[name] = t.values[i] if t.values is not None else None
        row["plan"] = record.plan or {}
        row["channels"] = record.channels or {}
        row["fine_tuned"] = record.fine_tuned
        row["origin"] = origin(t)
        row["constraints"] = dict(t.constraints)
        _merge_reevaluation(row, reevals.get(t.number), "accuracy" in names)
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    columns = ["number", "state", "feasible", "on_front", "pareto_rank", *names, "accuracy_first", "accuracy_std",
               "accuracy_n", *[c for c in ATTR_COLUMNS if c not in names], "plan", "channels", "fine_tuned",
               "origin", "constraints", "duration_s"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["pareto_rank"] = _ranks(frame, names, directions_of(study))
    frame["on_front"] = frame["pareto_rank"] == 1
    return frame


def _merge_reevaluation(row: dict[str, Any], extra: list[float] | None, has_accuracy: bool) -> None:
    first = row.get("accuracy") if has_accuracy else None
    row["accuracy_first"], row["accuracy_std"], row["accuracy_n"] = first, None, 1 if first is not None else None
    if not extra or first is None:
        return
    values = [first, *extra]
    mean = statistics.fmean(values)
    row.update(accuracy=mean, accuracy_std=statistics.stdev(values), accuracy_n=len(values))
    if "accuracy_drop" in row["constraints"] and row["state"] == "COMPLETE":
        # the accuracy-drop constraint is linear in accuracy: shift it by how much the mean moved
        row["constraints"] = {**row["constraints"],
                              "accuracy_drop": row["constraints"]["accuracy_drop"] + (first - mean)}
        row["feasible"] = all(v <= 0 for v in row["constraints"].values())


def _ranks(frame: pd.DataFrame, names: list[str], directions: list[str]) -> pd.Series:
    ranks = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    feasible = frame[frame["feasible"]]
    if not feasible.empty:
        for index, rank in zip(feasible.index, pareto_ranks(feasible[names].to_numpy(dtype=float), directions)):
            ranks.at[index] = int(rank)
    return ranks


def pareto_frame(study: optuna.Study, *, include_all: bool = False) -> pd.DataFrame:
    """The feasible Pareto set sorted by the first objective (all trials with ``include_all``)."""
    return sort_by_first(trials_frame(study), objective_names(study), directions_of(study), include_all)


def sort_by_first(frame: pd.DataFrame, names: list[str], directions: list[str], include_all: bool = False
                  ) -> pd.DataFrame:
    if not include_all:
        frame = frame[frame["on_front"]]
    ascending = directions[0] == "minimize"
    return frame.sort_values([names[0], "number"], ascending=[ascending, True], na_position="last"
                             ).reset_index(drop=True)


def best_feasible(frame: pd.DataFrame, objective: str, direction: str) -> pd.Series | None:
    """The feasible trial best on ``objective``; ties go to the lower latency, then the lower trial number.

    (Among equally accurate trials the fastest: the dense seed trial should not win a tie with a pruned one.)
    """
    feasible = frame[frame["feasible"] & frame[objective].notna()]
    if feasible.empty:
        return None
    latency = feasible["latency_ms"].astype(float).fillna(np.inf)
    ordered = feasible.assign(_v=feasible[objective].astype(float) * (-1 if direction == "maximize" else 1),
                              _lat=latency).sort_values(["_v", "_lat", "number"])
    return ordered.iloc[0].drop(["_v", "_lat"])


def front_numbers(frame: pd.DataFrame, *, ranks: int = 1) -> set[int]:
    """Trial numbers within the first ``ranks`` Pareto ranks (1: the front itself)."""
    kept = frame[frame["pareto_rank"].notna()]
    return {int(n) for n, r in zip(kept["number"], kept["pareto_rank"]) if int(r) <= ranks}
