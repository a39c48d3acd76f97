"""Sensitivity ranking: units are ranked by accuracy lost per unit of the study's own cost saved."""

from __future__ import annotations

import pytest

from moprune.search.sensitivity import SensitivityRecord, cost_objective, sensitivity_plans, unit_costs
from moprune.pruning import GLOBAL_PARAM, SearchUnit, offset_param
from moprune.spec import PruneSpec


def records(cost: str) -> list[SensitivityRecord]:
    # "stem": costly in accuracy but saves many MACs; "head": cheap in accuracy, saves few MACs but (by the
    # latency noise of a shared CPU) the most milliseconds
    return [SensitivityRecord("stem", 0.4, 0.10, 0.01, 20_000, 100, cost),
            SensitivityRecord("stem", 0.8, 0.40, 0.02, 40_000, 200, cost),
            SensitivityRecord("mid", 0.8, 0.05, 0.01, 20_000, 900, cost),
            SensitivityRecord("head", 0.8, 0.02, 0.50, 1_000, 10_000, cost)]


def test_units_are_ranked_by_the_studys_cost_objective():
    by_latency = unit_costs(records("latency_ms"))
    by_macs = unit_costs(records("macs"))
    by_params = unit_costs(records("params"))
    assert by_latency["head"] == pytest.approx(0.02 / 0.50)  # the largest scanned ratio is the one used
    assert by_latency["stem"] == pytest.approx(0.40 / 0.02)
    assert by_macs["mid"] == pytest.approx(0.05 / 20_000)
    assert sorted(by_latency, key=by_latency.get) == ["head", "mid", "stem"]
    assert sorted(by_macs, key=by_macs.get) == ["mid", "stem", "head"]
    assert sorted(by_params, key=by_params.get) == ["head", "mid", "stem"]


def test_a_unit_that_saves_nothing_is_the_dearest():
    recs = [SensitivityRecord("a", 0.8, 0.0, -0.1, 0, 0, "macs"), SensitivityRecord("b", 0.8, 0.3, 0.1, 10, 1, "macs")]
    costs = unit_costs(recs)
    assert costs["a"] == float("inf") and costs["b"] == pytest.approx(0.03)


@pytest.mark.parametrize("objectives,expected", [
    (["accuracy", "latency_ms", "macs"], "latency_ms"), (["accuracy", "macs"], "macs"),
    (["macs", "accuracy"], "macs"), (["accuracy", "params"], "params"), (["accuracy", "energy_mj"], "energy_mj"),
    (["accuracy"], "latency_ms")])
def test_cost_objective_is_the_first_cost_the_study_names(objectives, expected):
    assert cost_objective(objectives) == expected


def test_starting_plans_prune_the_cheap_third_harder_and_the_dear_third_less():
    units = [SearchUnit(n, (n,)) for n in ("stem", "mid", "head")]
    prune = PruneSpec(ratio={"low": 0.0, "high": 0.8, "step": 0.05}, offset_max=0.3)
    plans = sensitivity_plans(records("macs"), units, prune, [0.4])
    assert plans == [{GLOBAL_PARAM: 0.4, offset_param(units[1]): pytest.approx(0.3),
                      offset_param(units[0]): 0.0, offset_param(units[2]): pytest.approx(-0.3)}]
