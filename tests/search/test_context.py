"""The study context's trial steps: the brief fine-tune ends with the BatchNorm statistics re-estimated."""

from __future__ import annotations

import torch

from helpers import SMALL_CNN, make_spec
from moprune.train.proxy import adaptive_bn, batch_norms


def test_the_fine_tune_re_estimates_batch_norm_statistics_after_its_steps(session_cwd):
    """A brief fine-tune leaves running statistics that mix the states it passed through (bench/recalibration.py:
    VGG's uniform 0.85 plan read 0.66-0.83 with them, 0.89-0.94 re-estimated); the trial step re-estimates them,
    and only them."""
    from moprune.search.context import prepare_context

    def context(batches: int):
        return prepare_context(make_spec(name=f"recal{batches}", model=SMALL_CNN, storage="sqlite:///:memory:",
                                         finetune={"steps": 4, "lr": 0.05, "recalibrate_bn": batches}))

    recalibrated, stale = context(3), context(0)
    plan = recalibrated.global_plan(0.5)
    a, b = recalibrated.prune(plan).model, stale.prune(plan).model
    recalibrated.finetune(a, 5)
    stale.finetune(b, 5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())), "the same steps, same weights"
    assert all(not torch.allclose(m.running_var, n.running_var) for m, n in zip(batch_norms(a), batch_norms(b)))
    # exactly the recalibration the proxy uses, with the fine-tune's batch size, seeded from the fine-tune's seed
    adaptive_bn(b, stale.data.train, batches=3, batch_size=stale.spec.finetune.batch_size, seed=6)
    assert all(torch.equal(m.running_mean, n.running_mean) and torch.equal(m.running_var, n.running_var)
               for m, n in zip(batch_norms(a), batch_norms(b)))
    assert all(m.momentum == 0.1 for m in batch_norms(a)) and not a.training
