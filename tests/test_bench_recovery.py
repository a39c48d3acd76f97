"""The pure helpers of bench/recovery.py: methods that differ only in the recovery keys, at equal fine-tune steps."""

from __future__ import annotations


import pytest
from helpers import bench_module

rec = bench_module("recovery")
tasks = bench_module("tasks")


@pytest.mark.parametrize("task", list(tasks.TASKS))
def test_recovery_methods_differ_only_in_their_keys_and_spend_equal_fine_tune_steps(task):
    from moprune.spec import parse_spec

    specs = {m: parse_spec(rec.method_spec(task, m, seed=2)) for m in (*rec.METHODS, *rec.SPARSE)}
    base = specs["one-shot"]
    steps = {m: rec.total_finetune_steps(s) for m, s in specs.items()}
    assert set(steps.values()) == {base.finetune.steps}, steps
    assert specs["iterative"].prune.schedule.steps == rec.ITERATIVE_STEPS
    assert specs["iterative"].finetune.steps < base.finetune.steps
    assert specs["distill"].finetune.distill is not None and specs["distill"].prune == base.prune
    assert specs["slimmed"].model.sparsity_training is not None and specs["slimmed"].prune.importance == "bn_scale"
    both = specs["all"]
    assert both.prune.schedule and both.finetune.distill and both.model.sparsity_training
    assert specs["nm"].prune.method == "nm" and specs["unstructured"].prune.method == "unstructured"
    for spec in specs.values():
        assert (spec.seed, spec.data, spec.objectives, spec.measure) == (base.seed, base.data, base.objectives,
                                                                         base.measure)


def test_paired_differences_use_the_seeds_both_sides_have():
    got = rec.paired({1: 0.90, 2: 0.80, 3: 0.70}, {1: 0.85, 2: 0.82})
    assert got["n"] == 2 and got["mean"] == pytest.approx((0.05 - 0.02) / 2)
    assert rec.paired({1: 0.9}, {}) == {"mean": None, "sd": None, "n": 0}
