"""Pick rules choose the trial a user means, and a rule that matches nothing names the closest trials."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from moprune.cli import main
from moprune.errors import SpecError
from moprune.pareto import knee_point, objective_names, trials_frame
from moprune.pareto import pick_trial

from helpers import DIRECTIONS, OBJECTIVES, toy_front as _frame


def pick(rule: str, frame: pd.DataFrame | None = None) -> int:
    return pick_trial(rule, _frame() if frame is None else frame, OBJECTIVES, DIRECTIONS).number


@pytest.mark.parametrize("rule, expected", [
    ("trial:3", 3),
    ("trial:4", 4),  # infeasible, but asked for by number
    ("knee", 1),  # nearest the ideal corner of the normalised front
    ("best:accuracy", 0),
    ("best:latency_ms", 2),  # trial 4 is faster but infeasible
    ("best:macs", 2),
    ("accuracy@latency_ms<=5", 1),
    ("accuracy@latency_ms<5", 2),
    ("accuracy@latency_ms<=6,macs<=30e6", 2),
    ("latency_ms@accuracy>=0.96", 1),
    (" accuracy @ latency_ms <= 10 ", 0),
])
def test_each_rule_picks_the_right_trial(rule, expected):
    assert pick(rule) == expected


def test_trial_rule_says_when_the_trial_is_infeasible():
    reason = pick_trial("trial:4", _frame(), OBJECTIVES, DIRECTIONS).reason
    assert "infeasible" in reason


@pytest.mark.parametrize("rule, says", [
    ("accuracy@latency_ms<=1.5", "closest: trial 2 (accuracy=0.9500, latency_ms=2"),
    ("accuracy@latency_ms<=4,macs<=5e6", "closest: trial 2"),
    ("trial:5", "trial 5 is FAIL, not COMPLETE; nearest completed trials: trial 4"),
    ("trial:6", "trial 6 is RUNNING"),
    ("trial:99", "trial 99 does not exist; nearest completed trials: trial 4"),
    ("trial:x", "must be an integer"),
    ("best:energy_mj", "'energy_mj' is not an objective of this study (accuracy, latency_ms, macs)"),
    ("accuracy@latency<=2", "'latency' is not a measured value"),
    ("accuracy@latency_ms=2", "cannot read condition 'latency_ms=2'"),
    ("fastest", "unknown rule"),
])
def test_a_rule_that_matches_nothing_names_the_closest_trials(rule, says):
    with pytest.raises(SpecError) as err:
        pick(rule)
    assert says in str(err.value)


def test_no_feasible_trial_names_the_least_infeasible():
    frame = _frame().assign(feasible=False, on_front=False)
    frame.loc[frame["number"] == 3, "constraints"] = [{"accuracy_drop": 0.01}]
    for rule in ("knee", "best:accuracy", "accuracy@latency_ms<=5"):
        with pytest.raises(SpecError) as err:
            pick(rule, frame)
        assert "least constraint violation): trial 0" in str(err.value)  # violation 0, then 1, 2, then 3 (0.01)


def test_rules_on_a_real_study(tiny_study):
    spec, study = tiny_study
    objectives, directions = objective_names(study), [d.name.lower() for d in study.directions]
    frame = trials_frame(study)
    feasible = [t for t in study.trials if t.number in set(frame[frame["feasible"]]["number"])]
    best = max(feasible, key=lambda t: (t.values[0], -t.number)).number
    assert pick_trial("best:accuracy", frame, objectives, directions).number == best
    fastest = min(feasible, key=lambda t: (t.values[1], t.number)).number
    assert pick_trial("best:latency_ms", frame, objectives, directions).number == fastest
    assert pick_trial("knee", frame, objectives, directions).number == knee_point(
        frame[frame["on_front"]], objectives, directions)
    assert pick_trial("trial:2", frame, objectives, directions).number == 2


def test_cli_exits_2_and_names_closest_trials(tiny_study, tmp_path, capsys):
    spec, _ = tiny_study
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    out = tmp_path / "never"
    code = main(["export", str(spec_file), "--pick", "accuracy@latency_ms<=0.0001", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no feasible trial has latency_ms<=0.0001; closest: trial " in err
    assert "Traceback" not in err and not out.exists()
    assert main(["export", str(spec_file), "--pick", "trial:999", "--out", str(out)]) == 2
    assert "nearest completed trials: trial 5" in capsys.readouterr().err
