"""Front analysis: hypervolume against the dense baseline (moocore), knee point, re-evaluated means."""

from __future__ import annotations

import pandas as pd
import pytest

from moprune.pareto import (hypervolume, hypervolume_history, knee_point, pareto_frame, reference_point,
                            trials_frame)

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


def test_front_of_the_tiny_study_is_optunas(tiny_study):
    _, study = tiny_study
    front = pareto_frame(study)
    assert set(front["number"]) == {t.number for t in study.best_trials}
    assert (front["accuracy_n"] == 1).all()
    everything = trials_frame(study)
    assert len(everything) == len(study.trials)


def copy_with_best(study):
    """An in-memory copy of the (shared, read-only) tiny study, and its most accurate front trial."""
    import optuna

    copy = optuna.create_study(directions=study.directions)
    copy.set_metric_names(study.metric_names)
    for t in study.trials:
        copy.add_trial(t)
    return copy, max(copy.best_trials, key=lambda t: t.values[0])


def test_reevaluated_means_replace_accuracy_and_move_the_front(tiny_study):
    copy, best = copy_with_best(tiny_study[1])
    copy.set_user_attr(f"reeval:{best.number}", [0.0, 0.0])  # fresh seeds say it was luck
    f = trials_frame(copy).set_index("number")
    assert f.loc[best.number, "accuracy"] == pytest.approx(best.values[0] / 3)
    assert f.loc[best.number, "accuracy_n"] == 3 and f.loc[best.number, "accuracy_first"] == best.values[0]
    assert not f.loc[best.number, "feasible"] and not f.loc[best.number, "on_front"]


def test_the_measured_note_names_device_timer_and_energy(tiny_study):
    from moprune.report import measured_note

    _, study = tiny_study
    text = "\n".join(measured_note(study))
    assert f"measured on cpu ({study.user_attrs['environment']['device_name']}): {len(study.trials)} trials" in text
    assert "latency: perf_counter" in text and "paired rounds against dense" in text
    assert "energy: not measured; no meter here" in text


def test_pareto_table_and_json_show_the_spread_of_reevaluated_accuracy(tiny_study):
    from moprune.pareto import pareto_frame
    from moprune.report import format_table, to_records

    copy, best = copy_with_best(tiny_study[1])
    copy.set_user_attr(f"reeval:{best.number}", [best.values[0], best.values[0] - 0.02])
    frame = pareto_frame(copy, include_all=True)
    objectives = ["accuracy", "latency_ms", "macs"]
    line = next(l for l in format_table(frame, objectives).splitlines() if l.split()[0] == str(best.number))
    mean = (3 * best.values[0] - 0.02) / 3
    assert f"{mean:.4f} ± 0.0115 (n=3)" in line  # sd of (a, a, a - 0.02) = 0.02 / sqrt(3)
    record = next(r for r in to_records(frame, objectives) if r["number"] == best.number)
    assert record["accuracy_n"] == 3 and record["accuracy_first"] == best.values[0]
    assert record["values"]["accuracy"] == pytest.approx(mean)
