"""Indicators of a front: hypervolume (moocore, normalised by the dense baseline), its history, the knee point."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


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
