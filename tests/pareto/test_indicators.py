"""Front indicators: hypervolume against the dense baseline (moocore), its history, the knee point."""

from __future__ import annotations

import pandas as pd
import pytest

from moprune.pareto import hypervolume, hypervolume_history, knee_point, reference_point

BASE = {"accuracy": 0.9, "latency_ms": 10.0, "macs": 100.0}
OBJ, DIRS = ["accuracy", "latency_ms"], ["maximize", "minimize"]


def frame(rows):
    return pd.DataFrame([{"number": i, "state": "COMPLETE", "feasible": f, "accuracy": a, "latency_ms": l}
                         for i, (a, l, f) in enumerate(rows)])


def test_reference_point_is_relative_to_dense():
    ref = reference_point(["accuracy", "latency_ms", "macs"], BASE, 0.02)
    assert ref == {"accuracy": pytest.approx((0.9 - 0.04) / 0.9), "latency_ms": 1.1, "macs": 1.1}


def test_hypervolume_of_one_point_is_its_box_to_the_reference():
    # normalised point (1.0, 0.5); reference (0.86/0.9, 1.1): box = (1 - 0.9556) x (1.1 - 0.5)
    hv = hypervolume(frame([(0.9, 5.0, True)]), OBJ, DIRS, BASE, 0.02)
    assert hv == pytest.approx((1 - 0.86 / 0.9) * 0.6)


def test_infeasible_and_dominated_points_add_nothing():
    one = hypervolume(frame([(0.9, 5.0, True)]), OBJ, DIRS, BASE, 0.02)
    more = hypervolume(frame([(0.9, 5.0, True), (0.89, 6.0, True), (0.95, 1.0, False)]), OBJ, DIRS, BASE, 0.02)
    assert more == pytest.approx(one)


def test_hypervolume_history_never_decreases():
    f = frame([(0.88, 9.0, True), (0.5, 1.0, True), (0.9, 5.0, True), (0.95, 1.0, False), (0.89, 2.0, True)])
    hist = hypervolume_history(f, OBJ, DIRS, BASE, 0.02)
    assert list(hist["number"]) == [0, 1, 2, 3, 4]
    assert hist["hypervolume"].is_monotonic_increasing and hist["hypervolume"].iloc[-1] > 0


def test_knee_is_the_point_farthest_from_the_line_between_extremes():
    # accuracy vs latency: the bend of the front is trial 2
    f = frame([(0.70, 1.0, True), (0.80, 1.5, True), (0.88, 2.0, True), (0.89, 6.0, True), (0.90, 10.0, True)])
    assert knee_point(f, OBJ, DIRS) == 2


def test_knee_in_three_objectives_bulges_toward_the_ideal():
    f = pd.DataFrame({"number": [0, 1, 2, 3, 4], "accuracy": [0.9, 0.5, 0.5, 0.85, 0.7],
                      "latency_ms": [10.0, 1.0, 10.0, 3.0, 6.0], "macs": [100.0, 100.0, 10.0, 30.0, 60.0]})
    assert knee_point(f, ["accuracy", "latency_ms", "macs"], ["maximize", "minimize", "minimize"]) == 3
