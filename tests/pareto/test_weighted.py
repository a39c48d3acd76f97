"""Weighted scores: each objective divided by the dense model's value, signed by its direction, weights >= 0."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from moprune.cli import main
from moprune.errors import SpecError
from moprune.pareto import parse_weights, pick_trial, rank_by
from moprune.record import Baseline, baseline_of

from helpers import DIRECTIONS, OBJECTIVES, toy_front as _frame

DENSE = Baseline(accuracy=0.98, latency_ms=10.0, latency_ms_p10=9.5, latency_ms_p90=10.5, macs=100_000_000,
                 params=1_000_000, source="checkpoint", sha256="0" * 64)


def weighted(rule: str, frame: pd.DataFrame | None = None, baseline: Baseline | None = DENSE) -> int:
    return pick_trial(rule, _frame() if frame is None else frame, OBJECTIVES, DIRECTIONS, baseline).number


@pytest.mark.parametrize("rule, expected", [
    # scores (accuracy / 0.98 - 0.5 * latency / 10): trial 0 0.500, 1 0.740, 2 0.869, 3 0.659; 4 is infeasible
    ("weighted:accuracy=1,latency_ms=0.5", 2),
    # accuracy ten times dearer: trial 1 (9.648) beats 2 (9.594) and 0 (9.500)
    ("weighted:accuracy=10,latency_ms=0.5", 1),
    ("weighted:latency_ms=1", 2),  # trial 4 is faster but infeasible
    ("weighted:accuracy=1", 0),
    ("weighted:accuracy=1,macs=0", 0),  # a zero weight counts nothing
    # params is not an objective here but still weightable (minimised); params = macs / 100 gives the first case's scores
    ("weighted: accuracy = 1 , params = 0.5", 2),
])
def test_weighted_pick_takes_the_best_score_among_feasible_trials(rule, expected):
    frame = _frame()
    assert weighted(rule, frame.assign(params=frame["macs"] / 100)) == expected


def test_a_trial_missing_a_weighted_value_is_never_picked():
    with pytest.raises(SpecError, match="no feasible trial has every weighted value measured"):
        weighted("weighted:accuracy=1,params=1")  # the toy frame has no params


def test_the_reason_names_the_score_and_the_normalisation():
    reason = pick_trial("weighted:accuracy=1,latency_ms=0.5", _frame(), OBJECTIVES, DIRECTIONS, DENSE).reason
    assert "0.8694" in reason and "+1*accuracy/0.98" in reason and "-0.5*latency_ms/10" in reason


@pytest.mark.parametrize("rule, says", [
    ("weighted:accuracy=1,latency_ms=-0.5", "cannot read 'latency_ms=-0.5'; write NAME=WEIGHT with a weight >= 0"),
    ("weighted:accuracy", "cannot read 'accuracy'"),
    ("weighted:latency=1", "'latency' cannot be weighted in this study; use one of accuracy, latency_ms, macs, params"),
    ("weighted:accuracy=1,accuracy=2", "'accuracy' is weighted twice"),
    ("weighted:accuracy=0,latency_ms=0", "every weight is 0"),
])
def test_bad_weights_are_named(rule, says):
    with pytest.raises(SpecError) as err:
        weighted(rule)
    assert says in str(err.value)


def test_without_a_dense_value_to_normalise_by_the_error_says_so():
    with pytest.raises(SpecError, match="no dense baseline yet"):
        weighted("weighted:accuracy=1", baseline=None)
    frame = _frame()
    with pytest.raises(SpecError, match="the dense model has no energy_mj to normalise by"):
        pick_trial("weighted:energy_mj=1", frame.assign(energy_mj=1.0), [*OBJECTIVES, "energy_mj"],
                   [*DIRECTIONS, "minimize"], DENSE)


def test_rank_by_sorts_feasible_trials_by_score_then_the_rest():
    weights = parse_weights("accuracy=1,latency_ms=0.5", OBJECTIVES, DIRECTIONS, DENSE)
    ranked = rank_by(_frame(), weights)
    assert ranked["number"].tolist()[:4] == [2, 1, 3, 0]
    assert ranked["number"].tolist()[4] == 4  # infeasible after every feasible trial
    assert ranked["score"].iloc[0] == pytest.approx(0.95 / 0.98 - 0.5 * 2.0 / 10.0)


def test_export_weighted_pick_agrees_with_a_hand_computation_on_pareto_json(tiny_study, tmp_path, capsys):
    spec, study = tiny_study
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    assert main(["pareto", str(spec_file), "--all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    dense = baseline_of(study)
    weights = {"accuracy": 1.0, "latency_ms": 0.5}
    scores = {r["number"]: weights["accuracy"] * r["values"]["accuracy"] / dense.accuracy
              - weights["latency_ms"] * r["values"]["latency_ms"] / dense.latency_ms
              for r in rows if r["feasible"]}
    expected = max(scores, key=lambda n: (scores[n], -n))
    out = tmp_path / "export"
    assert main(["export", str(spec_file), "--pick", "weighted:accuracy=1,latency_ms=0.5", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["trial"] == expected
    capsys.readouterr()
    assert main(["pareto", str(spec_file), "--format", "json", "--rank-by", "accuracy=1,latency_ms=0.5"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert ranked[0]["number"] == expected and ranked[0]["score"] == pytest.approx(scores[expected])
    assert main(["pareto", str(spec_file), "--rank-by", "accuracy=1,latency=2"]) == 2
    assert "--rank-by 'accuracy=1,latency=2': 'latency' cannot be weighted" in capsys.readouterr().err
