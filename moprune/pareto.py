"""The study's trials as a DataFrame: feasibility, the Pareto front (Optuna's ``best_trials``), and summaries."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

OBJECTIVE_COLUMNS = ("accuracy", "latency_ms", "energy_mj", "macs", "params")
ATTR_COLUMNS = ("macs", "params", "speedup", "speedup_p10", "speedup_p90", "latency_ms_p10", "latency_ms_p90",
                "accuracy_pre_ft", "energy_method", "device_name", "fail_reason")


REEVAL_PREFIX = "reeval:"  # study user attr per re-evaluated trial: accuracies on fresh fine-tune seeds


def is_feasible(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE and all(v <= 0 for v in trial.constraints.values())


def reevaluations(study: optuna.Study) -> dict[int, list[float]]:
    """Trial number -> accuracies of its re-evaluation fine-tunes (see moprune.reevaluate)."""
    return {int(k.removeprefix(REEVAL_PREFIX)): list(v) for k, v in study.user_attrs.items()
            if k.startswith(REEVAL_PREFIX)}


def objective_names(study: optuna.Study) -> list[str]:
    return list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial: number, state, feasible, on_front, objective values, plan and measured attributes.

    Where trials were re-evaluated on fresh seeds, ``accuracy`` is the mean over all their fine-tunes
    (``accuracy_first`` keeps the trial's own value; ``accuracy_std`` and ``accuracy_n`` the spread), feasibility
    is judged on that mean, and the front is recomputed on it. Otherwise the front is Optuna's ``best_trials``.
    """
    names = objective_names(study)
    reevals = reevaluations(study)
    front = {t.number for t in study.best_trials}
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "feasible": is_feasible(t),
                               "on_front": t.number in front}
        for i, name in enumerate(names):
            row[name] = t.values[i] if t.values is not None else None
        for key in ATTR_COLUMNS:
            if key not in row or row[key] is None:
                row[key] = t.user_attrs.get(key)
        row["plan"] = t.user_attrs.get("plan", {})
        row["constraints"] = dict(t.constraints)
        _merge_reevaluation(row, reevals.get(t.number), "accuracy" in names)
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    columns = ["number", "state", "feasible", "on_front", *names, "accuracy_first", "accuracy_std", "accuracy_n",
               *[c for c in ATTR_COLUMNS if c not in names], "plan", "constraints", "duration_s"]
    frame = pd.DataFrame(rows, columns=columns)
    if reevals:
        frame["on_front"] = _front_mask(frame, names, [d.name.lower() for d in study.directions])
    return frame


def _merge_reevaluation(row: dict[str, Any], extra: list[float] | None, has_accuracy: bool) -> None:
    first = row.get("accuracy") if has_accuracy else None
    row["accuracy_first"], row["accuracy_std"], row["accuracy_n"] = first, None, 1 if first is not None else None
    if not extra or first is None:
        return
    import statistics

    values = [first, *extra]
    mean = statistics.fmean(values)
    row.update(accuracy=mean, accuracy_std=statistics.stdev(values), accuracy_n=len(values))
    if "accuracy_drop" in row["constraints"] and row["state"] == "COMPLETE":
        # the accuracy-drop constraint is linear in accuracy: shift it by how much the mean moved
        row["constraints"] = {**row["constraints"],
                              "accuracy_drop": row["constraints"]["accuracy_drop"] + (first - mean)}
        row["feasible"] = all(v <= 0 for v in row["constraints"].values())


def _front_mask(frame: pd.DataFrame, names: list[str], directions: list[str]) -> pd.Series:
    """Non-dominated feasible rows (moocore), for fronts recomputed on re-evaluated means."""
    import moocore
    import numpy as np

    mask = pd.Series(False, index=frame.index)
    feasible = frame[frame["feasible"]]
    if feasible.empty:
        return mask
    points = feasible[names].to_numpy(dtype=float)
    keep = moocore.is_nondominated(points, maximise=[d == "maximize" for d in directions], keep_weakly=True)
    mask.loc[feasible.index[np.asarray(keep)]] = True
    return mask


def pareto_frame(study: optuna.Study, *, include_all: bool = False) -> pd.DataFrame:
    """The feasible Pareto set sorted by the first objective (all trials with ``include_all``)."""
    frame = trials_frame(study)
    if not include_all:
        frame = frame[frame["on_front"]]
    first = objective_names(study)[0]
    ascending = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    return frame.sort_values([first, "number"], ascending=[ascending, True], na_position="last").reset_index(drop=True)


def plan_summary(plan: dict[str, float]) -> str:
    """``mean 0.42 [0.00-0.80] over 12 groups``: a one-glance view of a per-group plan."""
    if not plan:
        return "dense"
    values = list(plan.values())
    if max(values) == min(values):
        return f"uniform {values[0]:.2f}" if values[0] else "dense"
    return f"mean {sum(values) / len(values):.2f} [{min(values):.2f}-{max(values):.2f}] over {len(values)} groups"


def to_records(frame: pd.DataFrame, objectives: list[str]) -> list[dict[str, Any]]:
    """JSON-ready rows: ``values`` maps objective name to value; measured attributes beside it."""
    records = []
    for row in frame.to_dict(orient="records"):
        rec: dict[str, Any] = {"number": int(row["number"]), "state": row["state"], "feasible": bool(row["feasible"]),
                               "values": {o: _plain(row[o]) for o in objectives}}
        for key in ("macs", "params", "speedup", "speedup_p10", "speedup_p90", "latency_ms_p10", "latency_ms_p90",
                    "accuracy_pre_ft", "accuracy_first", "accuracy_std", "accuracy_n", "energy_method", "device_name",
                    "fail_reason"):
            rec[key] = _plain(row.get(key))
        rec["plan"] = row["plan"]
        records.append(rec)
    return records


def _plain(value: Any) -> Any:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value


def format_table(frame: pd.DataFrame, objectives: list[str]) -> str:
    """A fixed-width table for terminals: one line a trial, units in the headers."""
    if frame.empty:
        return "(no trials)"
    shown = pd.DataFrame({"trial": frame["number"]})
    for o in objectives:
        col = frame[o]
        if o in ("macs", "params"):
            shown[f"{o} (M)"] = col.map(lambda v: f"{v / 1e6:.2f}" if pd.notna(v) else "-")
        elif o == "accuracy":
            shown[o] = col.map(lambda v: f"{v:.4f}" if pd.notna(v) else "-")
            n = frame.get("accuracy_n")
            if n is not None and (n.fillna(1) > 1).any():  # re-evaluated: the mean over seeds, with its spread
                shown[o] = [f"{v:.4f} ± {sd:.4f} (n={int(k)})" if pd.notna(k) and k > 1 else text
                            for v, sd, k, text in zip(col, frame["accuracy_std"], n, shown[o])]
        else:
            shown[o] = col.map(lambda v: f"{v:.3f}" if pd.notna(v) else "-")
    for extra in ("macs", "params"):
        if extra not in objectives:
            shown[f"{extra} (M)"] = frame[extra].map(lambda v: f"{v / 1e6:.2f}" if pd.notna(v) else "-")
    shown["speedup"] = frame["speedup"].map(lambda v: f"{v:.2f}x" if pd.notna(v) else "-")
    if not frame["feasible"].all():
        shown["feasible"] = frame["feasible"].map({True: "yes", False: "no"})
    shown["plan"] = frame["plan"].map(plan_summary)
    return shown.to_string(index=False)


def measured_note(study: optuna.Study) -> list[str]:
    """Where and how the table's numbers were measured (device, timer, threads, energy meter): lines for a footer."""
    from .measure.summary import format_measured_with, measured_with

    used = measured_with(t.user_attrs for t in study.get_trials(deepcopy=False))
    return format_measured_with(used, study.user_attrs.get("environment", {}))


# --- hypervolume and knee --------------------------------------------------------------------------------------------

def reference_point(objectives: list[str], baseline: dict[str, Any], max_accuracy_drop: float | None
                    ) -> dict[str, float]:
    """The hypervolume reference in normalised units (values divided by the dense baseline's).

    Cost objectives: 1.1 x dense. Accuracy: dense - 2 x max_accuracy_drop (0.1 when no drop is set).
    """
    ref = {}
    for name in objectives:
        if name == "accuracy":
            drop = 2 * max_accuracy_drop if max_accuracy_drop else 0.1
            ref[name] = (baseline["accuracy"] - drop) / baseline["accuracy"]
        else:
            ref[name] = 1.1
    return ref


def normalised_values(frame: pd.DataFrame, objectives: list[str], baseline: dict[str, Any]) -> pd.DataFrame:
    """Objective columns divided by the dense baseline's value (1.0 = dense)."""
    out = pd.DataFrame(index=frame.index)
    for name in objectives:
        scale = baseline.get(name) or frame[name].abs().max() or 1.0
        out[name] = frame[name].astype(float) / float(scale)
    return out


def hypervolume(frame: pd.DataFrame, objectives: list[str], directions: list[str], baseline: dict[str, Any],
                max_accuracy_drop: float | None) -> float:
    """Hypervolume (moocore) of the feasible trials in ``frame``, normalised by the dense baseline."""
    import moocore
    import numpy as np

    feasible = frame[frame["feasible"]]
    if feasible.empty:
        return 0.0
    points = normalised_values(feasible, objectives, baseline).to_numpy(dtype=float)
    ref = reference_point(objectives, baseline, max_accuracy_drop)
    maximise = [d == "maximize" for d in directions]
    return float(moocore.hypervolume(np.atleast_2d(points), ref=[ref[o] for o in objectives], maximise=maximise))


def hypervolume_history(frame: pd.DataFrame, objectives: list[str], directions: list[str],
                        baseline: dict[str, Any], max_accuracy_drop: float | None) -> pd.DataFrame:
    """Hypervolume of the feasible front after each finished trial, in trial-number order."""
    done = frame[frame["state"] == "COMPLETE"].sort_values("number")
    rows = [{"number": int(n), "hypervolume": hypervolume(done[done["number"] <= n], objectives, directions,
                                                            baseline, max_accuracy_drop)}
            for n in done["number"]]
    return pd.DataFrame(rows, columns=["number", "hypervolume"])


def knee_point(front: pd.DataFrame, objectives: list[str], directions: list[str]) -> int | None:
    """The trial number of the front point farthest from the hyperplane (a line in 2-D) through the extremes.

    Objectives are scaled to [0, 1] over the front and turned into minimisation first; with fewer than three points,
    or extremes that span no plane, the point nearest the ideal corner is returned instead.
    """
    import numpy as np

    if front.empty:
        return None
    pts = front[objectives].to_numpy(dtype=float)
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    pts = pts * signs
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (pts - lo) / span
    numbers = front["number"].to_numpy()
    if len(z) >= 3:
        extremes = np.unique(z[np.argmin(z, axis=0)], axis=0)
        if len(extremes) >= len(objectives):
            # plane through the extremes: n . x = 1 (least squares when there are more than needed)
            normal, *_ = np.linalg.lstsq(extremes, np.ones(len(extremes)), rcond=None)
            norm = np.linalg.norm(normal)
            if norm > 0:
                distance = (1.0 - z @ normal) / norm  # > 0 on the ideal side of the plane
                return int(numbers[int(np.argmax(distance))])
    return int(numbers[int(np.argmin(np.linalg.norm(z, axis=1)))])
