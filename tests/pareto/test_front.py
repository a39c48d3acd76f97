"""The front of a real study: Optuna's best trials, and re-evaluated means that move trials off it."""

from __future__ import annotations

import pytest

from helpers import copy_with_best
from moprune.pareto import pareto_frame, trials_frame


def test_front_of_the_tiny_study_is_optunas(tiny_study):
    _, study = tiny_study
    front = pareto_frame(study)
    assert set(front["number"]) == {t.number for t in study.best_trials}
    assert (front["accuracy_n"] == 1).all()
    everything = trials_frame(study)
    assert len(everything) == len(study.trials)


def test_reevaluated_means_replace_accuracy_and_move_the_front(tiny_study):
    copy, best = copy_with_best(tiny_study[1])
    copy.set_user_attr(f"reeval:{best.number}", [0.0, 0.0])  # fresh seeds say it was luck
    f = trials_frame(copy).set_index("number")
    assert f.loc[best.number, "accuracy"] == pytest.approx(best.values[0] / 3)
    assert f.loc[best.number, "accuracy_n"] == 3 and f.loc[best.number, "accuracy_first"] == best.values[0]
    assert not f.loc[best.number, "feasible"] and not f.loc[best.number, "on_front"]
