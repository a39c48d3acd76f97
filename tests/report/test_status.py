"""``moprune status``: the numbers it prints are the front's, computed the way `pareto` and `export` compute them."""

from __future__ import annotations

import pytest

from moprune.pareto import hypervolume, knee_point, trials_frame
from moprune.report import format_status, study_status


def test_status_reports_the_fronts_hypervolume_and_knee(tiny_study):
    spec, study = tiny_study
    status = study_status(study, spec)
    frame = trials_frame(study)
    names, directions = list(spec.objectives), [d.name.lower() for d in study.directions]
    expected = hypervolume(frame, names, directions, study.user_attrs["baseline"],
                           spec.constraints.max_accuracy_drop)
    assert status.hypervolume == pytest.approx(expected)
    assert status.front_size == int(frame["on_front"].sum())
    assert status.knee["number"] == knee_point(frame[frame["on_front"]], names, directions)
    text = format_status(status)
    assert f"hypervolume: {expected:.4f}" in text
    assert f"knee point: trial {status.knee['number']}," in text


def test_best_accuracy_breaks_ties_by_latency(tiny_study):
    import optuna

    spec, study = tiny_study
    copy = optuna.create_study(directions=study.directions)
    copy.set_metric_names(study.metric_names)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    top = max(t.values[0] for t in complete)
    for t in complete:
        copy.add_trial(t)
    slow, fast = (optuna.trial.create_trial(
        values=[top, ms, *t.values[2:]], constraints={k: 0.0 for k in t.constraints},
        user_attrs={**t.user_attrs, "latency_ms": ms}, params=t.params, distributions=t.distributions)
        for t, ms in ((complete[0], 50.0), (complete[0], 5.0)))
    copy.add_trial(slow)
    copy.add_trial(fast)
    best = study_status(copy, spec).best_accuracy
    assert best["accuracy"] == top and best["latency_ms"] == 5.0
