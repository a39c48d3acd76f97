"""A trial's steps: hard budgets are checked after pruning and measuring, before the fine-tune is spent."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from helpers import make_spec
from moprune.pareto import is_feasible
from moprune.search import run_study

QUIET = {"progress": False}


@pytest.mark.slow
def test_a_plan_over_a_hard_budget_is_rejected_before_the_fine_tune(session_cwd):
    # uniform seeds at ratios 0, 0.4 and 0.8: with a MACs budget of half the dense model's, the dense plan is over it
    spec = make_spec(name="budget", storage=f"sqlite:///{session_cwd / 'budget.db'}",
                     constraints={"max_macs": 0.5 * 15.6e6},  # dense resnet18 at 16 px: 15.6M MACs
                     search={"n_trials": 5, "uniform_count": 3, "sampler": "random"})
    study = run_study(spec, **QUIET)
    dense_macs = study.user_attrs["baseline"]["macs"]
    assert 0.45 * dense_macs < spec.constraints.max_macs < 0.55 * dense_macs
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    rejected = [t for t in trials if t.user_attrs.get("rejected")]
    tuned = [t for t in trials if not t.user_attrs.get("rejected")]
    assert rejected and tuned
    for t in rejected:
        attrs = t.user_attrs
        assert attrs["macs"] > spec.constraints.max_macs
        assert attrs["fail_reason"] == "rejected before fine-tune: over budget on macs"
        assert "finetune" not in attrs["timings_s"] and "finetune_seed" not in attrs
        assert not is_feasible(t) and t.constraints["macs"] > 0
        # its measured values are kept, and its accuracy is the pruned model's before any fine-tune
        assert t.values[0] == attrs["accuracy_pre_ft"] and t.values[2] == attrs["macs"]
    for t in tuned:
        assert t.user_attrs["macs"] <= spec.constraints.max_macs and "finetune" in t.user_attrs["timings_s"]
    # What makes a rejection cheap is asserted above by what the trial skipped (no fine-tune phase, no fine-tune
    # seed), not by comparing wall-clock costs: under two busy loops that ratio of medians failed (timing luck).
