"""The pure helpers of bench/search_quality.py: spreads, front metrics, specs that differ only in the search."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sq = importlib.import_module("bench.search_quality")


def test_spread_compares_plan_choice_with_seed_noise():
    out = sq.spread({"a": [0.90, 0.92], "b": [0.80, 0.82]})
    assert out["within_sd"] == pytest.approx(0.0002 ** 0.5)
    assert out["between_sd"] == pytest.approx(0.1 / 2 ** 0.5)
    assert out["between_range"] == pytest.approx(0.10)
    assert out["within_range_max"] == pytest.approx(0.02)
    assert out["raw_ratio"] == pytest.approx(5.0)
    assert out["ratio"] == pytest.approx(5.0 * 2 ** 0.5)  # a mean over 2 seeds carries sd / sqrt(2)


def test_front_metrics_read_speedup_and_budget_from_reevaluated_candidates():
    rows = [{"accuracy": 0.97, "macs": 500, "speedup": 1.5}, {"accuracy": 0.95, "macs": 200, "speedup": 2.1},
            {"accuracy": 0.94, "macs": 100, "speedup": 3.0}, {"accuracy": 0.90, "macs": 50, "speedup": 5.0},
            {"accuracy": 0.99, "macs": 900, "speedup": None}]
    m = sq.front_metrics(rows, dense_accuracy=0.98, max_accuracy_drop=0.05)
    assert m == {"best_accuracy_at_speedup": 0.95, "fastest_in_budget": 3.0, "min_macs_in_budget": 100}
    assert sq.front_metrics(rows[3:4], dense_accuracy=0.98, max_accuracy_drop=0.05) == {
        "best_accuracy_at_speedup": 0.90, "fastest_in_budget": None, "min_macs_in_budget": None}


def test_nondominated_keeps_ties_and_drops_dominated_points():
    rows = [{"accuracy": 0.9, "macs": 10}, {"accuracy": 0.9, "macs": 10}, {"accuracy": 0.8, "macs": 10},
            {"accuracy": 0.95, "macs": 20}, {"accuracy": 0.85, "macs": 5}]
    assert sq.nondominated(rows) == [rows[0], rows[1], rows[3], rows[4]]


def test_summary_ignores_missing_values():
    assert sq.summary([None, 1.0, 3.0, 2.0]) == {"median": 2.0, "mean": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert sq.summary([None])["median"] is None


def test_methods_differ_only_in_the_search():
    from moprune.spec import parse_spec

    settings = sq.SearchSettings()
    specs = {m.name: parse_spec(sq.method_spec(m, seed=1, n_trials=24, storage="sqlite:///x.db", settings=settings))
             for m in sq.METHODS}
    shared = {"seed", "model", "data", "finetune", "objectives", "constraints", "measure"}
    first = specs["uniform"].model_dump(mode="json")
    for spec in specs.values():
        dumped = spec.model_dump(mode="json")
        assert {k: dumped[k] for k in shared} == {k: first[k] for k in shared}
        assert spec.search.n_trials == 24 and spec.prune.ratio == specs["uniform"].prune.ratio
    uniform = specs["uniform"]
    assert uniform.prune.granularity == "global"
    assert uniform.search.seed_trials == ["uniform"] and uniform.search.uniform_count == 24
    searches = [s for name, s in specs.items() if name != "uniform"]
    assert {(tuple(s.search.seed_trials), s.search.uniform_count) for s in searches} == {
        (settings.seed_trials, settings.uniform_count)}
    assert {s.prune.granularity for s in searches} == {"group", "block"}


def test_fresh_seeds_are_shared_and_unlike_any_trial_seed():
    from moprune.search import finetune_seed

    trial_seeds = {finetune_seed(s, n) for s in range(3) for n in range(1000)}
    fresh = [x for s in range(3) for x in sq.fresh_seeds(s, 3)]
    assert len(set(fresh)) == 9 and not trial_seeds & set(fresh)
    assert sq.fresh_seeds(0, 3) == sq.fresh_seeds(0, 3)


def test_matched_plans_hit_the_macs_target_on_the_bench_model():
    from moprune.measure import count_complexity
    from moprune.pruning import apply_plan
    from moprune.pruning import discover_groups, search_units
    from moprune.spec import PruneSpec

    torch.manual_seed(0)
    model = sq.resnet8(10).eval()
    x = torch.randn(1, 3, 8, 8)
    units = search_units(model, discover_groups(model, x), "group", x)
    assert len(units) == 6
    ctx = SimpleNamespace(spec=SimpleNamespace(prune=PruneSpec(ratio={"step": None})), units=units,
                          dense=SimpleNamespace(model=model), trace_inputs=x)
    dense = count_complexity(model, x).macs
    offsets = {u.name: (0.2 if i % 2 else -0.2) for i, u in enumerate(units)}
    for off in ({u.name: 0.0 for u in units}, offsets):
        plan, frac = sq.matched_plan(ctx, off, 0.25, dense)
        assert frac == pytest.approx(0.25, abs=0.03)
        assert count_complexity(apply_plan(model, plan, x).model, x).macs / dense == pytest.approx(frac)
    assert len(set(sq.matched_plan(ctx, {u.name: 0.0 for u in units}, 0.25, dense)[0].values())) == 1
