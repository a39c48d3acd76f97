"""The pure helpers of bench/search_quality.py and its tasks: specs that differ only in the search, the
hypervolume on re-evaluated rows, rank correlation, fresh seeds."""

from __future__ import annotations

import pytest
import torch
from helpers import bench_module

sq = bench_module("search_quality")
tasks = bench_module("tasks")


@pytest.mark.parametrize("task", list(tasks.TASKS))
def test_methods_differ_only_in_the_search(task):
    from moprune.spec import parse_spec

    budget = sq.Budget()
    specs = {m: parse_spec(sq.method_spec(task, m, seed=1, storage="sqlite:///x.db", dense_macs=1_000_000,
                                          budget=budget, timeout_s=None if m == "screen" else 60.0))
             for m in sq.METHODS}
    shared = {"seed", "model", "data", "prune", "finetune", "objectives", "constraints", "measure"}
    first = specs["screen"].model_dump(mode="json")
    for spec in specs.values():
        dumped = spec.model_dump(mode="json")
        assert {k: dumped[k] for k in shared} == {k: first[k] for k in shared}
        assert spec.constraints.max_macs == 400_000, "the cheap region: at least 60% of dense MACs removed"
        assert spec.objectives == ["accuracy", "latency_ms"]
        assert spec.finetune.recalibrate_bn == 8, "every method's fine-tune (and re-evaluation) ends recalibrated"
    assert specs["screen"].search.screen.plans == budget.plans and specs["screen"].search.timeout_s is None
    assert all(specs[m].search.timeout_s == 60.0 for m in ("uniform", "global", "sampler")), "equal wall-clock"
    assert specs["uniform"].search.seed_trials == ["dense", "uniform"]
    assert specs["global"].search.seed_trials == ["dense", "global"]
    assert specs["sampler"].search.screen.plans == 0


def test_quick_runs_the_two_tasks_of_the_criteria_and_the_full_run_every_task():
    assert sq.default_tasks(quick=True) == ["resnet20", "mobilenetv2"]
    assert sq.default_tasks(quick=False) == list(tasks.TASKS)


def test_front_hypervolume_counts_feasible_fresh_means_only():
    baseline = {"accuracy": 0.9, "latency_ms": 10.0}
    good = [{"accuracy": 0.9, "latency_ms": 5.0}]
    assert sq.front_hypervolume(good, "latency_ms", baseline, 0.05) == pytest.approx((1.1 - 0.5) * (1 - 0.8 / 0.9))
    below = good + [{"accuracy": 0.84, "latency_ms": 1.0}]  # under the 0.05 budget on its fresh mean
    assert sq.front_hypervolume(below, "latency_ms", baseline, 0.05) == sq.front_hypervolume(good, "latency_ms",
                                                                                           baseline, 0.05)
    assert sq.front_hypervolume([], "latency_ms", baseline, 0.05) == 0.0


def test_best_accuracy_at_a_speedup_reads_measured_speedups():
    rows = [{"accuracy": 0.97, "speedup": 2.9}, {"accuracy": 0.95, "speedup": 3.0}, {"accuracy": 0.93, "speedup": 4}]
    assert sq.best_at_speedup(rows, 3.0) == 0.95
    assert sq.best_at_speedup(rows, 5.0) is None


def test_spearman_is_a_rank_correlation():
    assert sq.spearman([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
    assert sq.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert sq.spearman([1, 2], [1, 2]) is None and sq.spearman([1, 1, 1], [1, 2, 3]) is None


def test_summary_ignores_missing_values():
    s = sq.summary([None, 1.0, 3.0, 2.0])
    assert (s["median"], s["mean"], s["min"], s["max"], s["n"]) == (2.0, 2.0, 1.0, 3.0, 3)
    assert sq.summary([None])["median"] is None


def test_fresh_seeds_are_shared_and_unlike_any_trial_seed():
    from moprune.search import finetune_seed

    trial_seeds = {finetune_seed(s, n) for s in range(3) for n in range(1000)}
    fresh = [x for s in range(3) for x in sq.fresh_seeds(s, 3)]
    assert len(set(fresh)) == 9 and not trial_seeds & set(fresh)


@pytest.mark.parametrize("task, px, groups", [("resnet8", 32, 6), ("resnet20", 16, 12), ("vgg", 32, 6), ("mobilenetv2", 16, 11)])
def test_bench_models_have_groups_for_an_allocation_to_exploit(task, px, groups):
    from moprune.pruning import apply_plan, discover_groups

    torch.manual_seed(0)
    model = getattr(tasks, task)(10).eval()
    x = torch.randn(1, 3, px, px)
    found = discover_groups(model, x)
    assert len(found) == groups
    assert tasks.task_spec(task)["data"]["image_size"] == px
    pruned = apply_plan(model, {g.root: 0.5 for g in found}, x).model
    assert pruned(x).shape == (1, 10)


def test_a_run_is_scored_on_its_front_timed_again_not_on_the_searchs_own_timing():
    baseline = {"accuracy": 0.9, "latency_ms": 10.0, "macs": 100.0}
    lucky = {"accuracy": 0.9, "macs": 40.0, "speedup_search": 4.0, "channels": '{"a": 4}'}  # read 4x in its study
    run = {"baseline": baseline, "drop": 0.05, "candidates": [lucky]}
    scored = sq.score_run(run, {'{"a": 4}': 2.0})  # 2x when every method's front is timed together
    assert scored["candidates"][0]["speedup"] == 2.0 and scored["candidates"][0]["latency_ms"] == 5.0
    assert scored["hv"] == sq.front_hypervolume([{"accuracy": 0.9, "latency_ms": 5.0}], "latency_ms", baseline, 0.05)
    assert scored["hv_search_timing"] == sq.front_hypervolume([{"accuracy": 0.9, "latency_ms": 2.5}], "latency_ms",
                                                              baseline, 0.05) > scored["hv"]
    assert scored["fastest_feasible"] == 2.0 and scored["best_accuracy_at_3x"] is None


def test_each_fresh_seed_scores_the_same_front_alone_and_their_spread_is_the_noise():
    baseline = {"accuracy": 0.9, "latency_ms": 10.0, "macs": 100.0}
    rows = [{"accuracies_fresh": [0.9, 0.86], "latency_ms": 5.0}, {"accuracies_fresh": [0.88, 0.88], "latency_ms": 4.0}]
    one = sq.fresh_seed_hypervolumes(rows, baseline, 0.05)
    assert one == [sq.front_hypervolume([{"accuracy": a, "latency_ms": r["latency_ms"]} for r, a in zip(rows, accs)],
                                        "latency_ms", baseline, 0.05) for accs in ([0.9, 0.88], [0.86, 0.88])]
    assert one[0] > one[1] > 0, "the second seed's 0.86 is under the budget: only the 0.88 point counts"
    runs = [{"hv_per_fresh_seed": one}, {"hv_per_fresh_seed": [0.02, 0.02]}, {"hv_per_fresh_seed": [0.0, 0.01]}]
    noise = sq.reeval_noise(runs)
    assert noise["fronts"] == 2, "a front with no feasible point on one seed has no ratio"
    assert noise["max"] == pytest.approx(one[0] / one[1]) and noise["median"] == pytest.approx((one[0] / one[1] + 1) / 2)
    assert sq.reeval_noise([{"hv_per_fresh_seed": [0.02]}])["median"] is None


def test_a_saved_result_is_rescored_with_the_noise_it_did_not_store():
    baseline = {"accuracy": 0.9, "latency_ms": 10.0, "macs": 100.0}
    cand = {"accuracies_fresh": [0.9, 0.88], "accuracy": 0.89, "latency_ms": 5.0, "macs": 40.0, "speedup": 2.0}
    run = {"method": "uniform", "seed": 0, "baseline": baseline, "drop": 0.05, "candidates": [cand], "hv": 0.03,
           "hv_macs": 0.04, "best_accuracy_at_3x": None, "fastest_feasible": 2.0, "fine_tuned": 5, "screened": 0,
           "wall_s": 10.0}
    saved = {"tasks": {"vgg": {"proxy_spearman": 0.9, "runs": [run]}}, "seeds": [0], "budget": {"proxy": "finetune"}}
    result = sq.rescored(saved)["vgg"]
    assert result["runs"][0]["hv_per_fresh_seed"] == sq.fresh_seed_hypervolumes([cand], baseline, 0.05)
    assert result["reeval_noise"]["fronts"] == 1 and "uniform" in result["table"]
    lines: list[str] = []
    sq.print_tables(sq.rescored(saved), [0], "finetune", lines.append)
    assert any(line.startswith("re-evaluation noise: ") and "over 1 fronts" in line for line in lines)
