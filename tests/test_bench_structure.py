"""bench/structure.py's designed allocations: ratios graded with depth, inside the space."""

from __future__ import annotations

import pytest
from helpers import bench_module

graded_plan = bench_module("structure").graded_plan

UNITS = [("conv1",), ("layer1.conv",), ("layer2.conv", "layer2.down"), ("layer3.conv",), ("fc_in",)]


def test_a_positive_slope_prunes_the_late_units_more_around_the_level():
    plan = graded_plan(UNITS, 0.5, 0.4, 0.0, 0.9)
    assert [plan[u[0]] for u in UNITS] == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    assert plan["layer2.down"] == plan["layer2.conv"], "a unit's roots share its ratio"
    assert graded_plan(UNITS, 0.5, 0.0, 0.0, 0.9) == {root: 0.5 for u in UNITS for root in u}, "slope 0: uniform"


def test_graded_ratios_stay_inside_the_space():
    plan = graded_plan(UNITS, 0.8, -1.0, 0.1, 0.85)
    assert plan["conv1"] == 0.85 and plan["fc_in"] == pytest.approx(0.3)
    assert min(graded_plan(UNITS, 0.1, 1.0, 0.1, 0.85).values()) == 0.1


sweep_levels = bench_module("structure").sweep_levels


def test_the_sweeps_levels_are_the_spaces_range_unless_given_and_may_pass_its_cap():
    default = sweep_levels("", 0.3, 0.85)
    assert len(default) == 12 and default[0] == 0.3 and default[-1] == 0.85
    assert sweep_levels("0.85, 0.9,0.95", 0.3, 0.85) == [0.85, 0.9, 0.95], "past the cap when asked"
    with pytest.raises(ValueError, match="1.0"):
        sweep_levels("0.9,1.0", 0.3, 0.85)


def test_bad_levels_are_refused_before_any_compute(capsys):
    with pytest.raises(SystemExit):
        bench_module("structure").main(["--levels", "0.5,1.2", "--workdir", "/nonexistent/never-made"])
    assert "--levels" in capsys.readouterr().err
