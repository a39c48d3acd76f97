"""bench/proxy_line.py: the proxy line's errors, read forward (as promotion uses it) and on the sweeps' plans."""

from __future__ import annotations

import math
import statistics

import pytest
from helpers import bench_module

from moprune.search.proxy_line import odds

proxy_line = bench_module("proxy_line")


def saturating(proxy: float) -> float:
    """Accuracy after the whole fine-tune, saturating toward 1 where the proxy still climbs (log-odds slope 1)."""
    z = 1.0 + math.log(proxy / (1 - proxy))
    return 1 / (1 + math.exp(-z))


def test_on_a_saturating_curve_the_log_odds_line_reads_the_next_plan_and_the_low_proxies_better():
    proxies = [0.97, 0.95, 0.96, 0.93, 0.94, 0.92, 0.96, 0.95]  # promoted plans bunch near the top
    points = [(p, saturating(p) + (0.002 if i % 2 else -0.002), 0) for i, p in enumerate(proxies)]
    forward = {scale: proxy_line.forward_errors(points, 0.9, logit) for scale, logit in proxy_line.SCALES.items()}
    assert len(forward["log-odds"]) == len(points) - 3
    assert statistics.fmean(map(abs, forward["log-odds"])) < statistics.fmean(map(abs, forward["accuracy"]))
    sweeps = [(p, saturating(p)) for p in (0.5, 0.7, 0.95)]
    every, below, floor = proxy_line.sweep_errors(points, sweeps, 0.9, logit=True)
    straight_every, straight_below, straight_floor = proxy_line.sweep_errors(points, sweeps, 0.9, logit=False)
    assert len(every) == 3 and len(below) == 2, "0.95 lies among the fitted proxies"
    assert max(map(abs, below)) < 0.05 and min(straight_below) > 0.1, "the straight line reads them far too low"
    # the floor: where the line plus one sd (here about the proxy's noise, 0.3 log-odds) reads the budget
    assert floor < straight_floor and odds(0.9) - 0.5 < odds(saturating(floor)) < odds(0.9)


def test_promotions_are_counted_by_where_the_line_fitted_before_them_read_them():
    """A plan the line read far under the budget that missed it lands in the first band, one read above it that
    met it in the last; the first two plans only fit the line."""
    points = [(p, saturating(p), 0) for p in (0.95, 0.90, 0.93, 0.85)]
    points += [(0.30, 0.5, 0), (0.92, saturating(0.92), 0)]
    outcomes = proxy_line.promotion_outcomes(points, 0.95)
    assert set(outcomes) == set(proxy_line.BANDS) and sum(map(len, outcomes.values())) == len(points) - 2
    assert outcomes["under the floor"][-1] is False, "0.30 read far under the budget, and missed it"
    assert outcomes["at or above the aim"] and all(outcomes["at or above the aim"])


def test_the_spread_score_counts_a_plan_far_outside_the_lines_spread_against_it():
    """A plan read right scores a low negative log density and lies within 2 sds; one that lands far off does not;
    a proxy under every fitted one is scored apart."""
    points = [(p, saturating(p) + (0.002 if i % 2 else -0.002), 0) for i, p in enumerate((0.95, 0.90, 0.93, 0.85))]
    good = proxy_line.spread_scores(points + [(0.88, saturating(0.88), 0)], 0.9)
    bad = proxy_line.spread_scores(points + [(0.88, 0.5, 0)], 0.9)
    assert good["within"][-1][1] and not bad["within"][-1][1]
    assert bad["within"][-1][0] > good["within"][-1][0] + 5
    low = proxy_line.spread_scores(points + [(0.6, saturating(0.6), 0)], 0.9)
    assert len(low["below"]) == 2 and low["below"][-1][1], "0.85 (the fourth) and 0.6 lie under every fitted proxy"
