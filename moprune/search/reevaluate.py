"""Re-evaluation: re-run the fine-tune of Pareto candidates on fresh seeds, so the front is not built on luck.

A brief fine-tune is noisy (the same plan varied 0.04-0.21 in accuracy over data orders at 20 steps), so a search
"finds" plans that were merely lucky. Each candidate's plan is pruned again and fine-tuned with ``seeds`` fresh
data-order seeds through the study's one trial step; the accuracies are stored with the study
(``moprune.record.write_reevaluation``), and ``moprune.pareto.trials_frame`` uses their mean with the trial's own.
"""

from __future__ import annotations

import logging

import optuna

from ..pareto import trials_frame
from ..pruning import PrunePlan
from ..record import reevaluations, write_reevaluation
from .context import StudyContext, finetune_seed

log = logging.getLogger(__name__)


def refinetune_accuracy(ctx: StudyContext, plan: PrunePlan, seed: int) -> float:
    """Prune ``plan`` from the dense model, fine-tune with data-order ``seed``, return validation accuracy."""
    return ctx.evaluate(ctx.refinetuned(plan, seed).model)


def reevaluate_front(study: optuna.Study, ctx: StudyContext, *, top: int, seeds: int) -> list[int]:
    """Re-evaluate up to ``top`` Pareto candidates, repeating while the front (on means) still has new members.

    Returns the trial numbers re-evaluated in this call.
    """
    done: list[int] = []
    while len(done) < top:
        frame = trials_frame(study)
        evaluated = set(reevaluations(study))
        pending = frame[frame["on_front"] & frame["fine_tuned"] & ~frame["number"].isin(evaluated)]
        if pending.empty:
            break
        for _, row in pending.head(top - len(done)).iterrows():
            number = int(row["number"])
            accs = [refinetune_accuracy(ctx, row["plan"], finetune_seed(ctx.spec.seed, number, repeat=r))
                    for r in range(1, seeds + 1)]
            write_reevaluation(study, number, accs)
            log.info("re-evaluated trial %d on %d fresh seeds: accuracy %.4f -> mean %.4f", number, seeds,
                     row["accuracy_first"], (row["accuracy_first"] + sum(accs)) / (1 + len(accs)))
            done.append(number)
    return done
