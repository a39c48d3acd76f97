"""bench/proxy_line.py: the proxy line's errors, read forward (as promotion uses it) and on the sweeps' plans."""

from __future__ import annotations

import math
import statistics

import pytest
from helpers import bench_module

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
    assert floor < straight_floor and saturating(floor) == pytest.approx(0.9, abs=0.03)
