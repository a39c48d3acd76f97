"""The pure helpers of bench/headroom.py: which pool a trial is in, and the area of a pool's front."""

from __future__ import annotations

import pytest
from helpers import bench_module

headroom = bench_module("headroom")


def test_sweep_plans_are_pooled_by_their_start_and_every_other_plan_is_allocated():
    assert headroom.pool_of("uniform 0.43") == "uniform" and headroom.pool_of("global 0.57") == "global"
    assert headroom.pool_of(None) == "allocated"


def test_the_front_area_is_accuracy_above_the_budget_times_latency_saved():
    assert headroom.front_area([(0.95, 2.0)], 0.9) == pytest.approx(0.05 * 0.5)
    assert headroom.front_area([(0.95, 2.0), (0.93, 1.5)], 0.9) == pytest.approx(0.05 * 0.5), "dominated"
    assert headroom.front_area([(0.85, 4.0)], 0.9) == 0.0, "infeasible"


def test_a_pools_reach_is_its_fastest_plan_at_any_accuracy_and_its_fastest_feasible_one():
    points = [(0.95, 1.5), (0.91, 2.2), (0.60, 2.8)]
    assert headroom.reach(points, 0.9) == "fastest 2.80x at 0.600, fastest feasible 2.20x at 0.910"
    assert headroom.reach([(0.80, 2.0)], 0.9) == "fastest 2.00x at 0.800, none feasible"
