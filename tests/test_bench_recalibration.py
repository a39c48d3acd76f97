"""The pure summary of bench/recalibration.py: gains, seed-to-seed gaps and cost, from rows of paired fine-tunes."""

from __future__ import annotations

import pytest
from helpers import bench_module

recal = bench_module("recalibration")


def _row(plan, ft_seed, stale, recalibrated):
    return {"task": "t", "seed": 0, "plan": plan, "finetune_seed": ft_seed, "stale": stale,
            "recalibrated": recalibrated, "finetune_s": 1.0, "recalibrate_s": 0.1}


def test_the_summary_pairs_the_two_fine_tune_seeds_of_each_plan():
    rows = [_row("a", 1, 0.60, 0.95), _row("a", 2, 0.70, 0.96), _row("b", 1, 0.905, 0.91), _row("b", 2, 0.92, 0.91)]
    s = recal.summarise(rows)
    assert s["gain_median"] == pytest.approx((0.005 + 0.26) / 2) and s["gain_max"] == pytest.approx(0.35)
    assert s["share_gaining_over_0.01"] == 0.5
    assert s["seed_gap_max"] == {"stale": pytest.approx(0.10), "recalibrated": pytest.approx(0.01)}
    assert s["recalibrate_over_finetune"] == pytest.approx(0.1)


def test_every_plan_is_measured_on_the_same_two_fine_tune_seeds_and_four_sweep_ratios():
    assert len(set(recal.FINETUNE_SEEDS)) == 2 and recal.RATIOS[-1] == 0.85
