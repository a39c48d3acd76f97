"""Re-evaluation: re-run the fine-tune of Pareto candidates on fresh seeds, so the front is not built on luck.

A brief fine-tune is noisy (the same plan varied 0.04-0.21 in accuracy over data orders at 20 steps), so a search
"finds" plans that were merely lucky. Each candidate's plan is pruned again and fine-tuned with ``seeds`` fresh
data-order seeds; the accuracies are stored in the study's user attrs (``reeval:<trial number>``, one key per trial
so that concurrent workers never overwrite each other; Optuna's values of a finished trial cannot change), and
``pareto.trials_frame`` uses their mean together with the trial's own value.
"""

from __future__ import annotations

import optuna

from .context import StudyContext
from .objective import finetune_seed
from .pareto import REEVAL_PREFIX, reevaluations, trials_frame
from .prune import apply_plan
from .train import evaluate, train


def refinetune_accuracy(ctx: StudyContext, plan: dict[str, float], seed: int) -> float:
    """Prune ``plan`` from the dense model, fine-tune with data-order ``seed``, return validation accuracy."""
    spec = ctx.spec
    calibration = next(ctx.data.train.batches(spec.finetune.batch_size)) if spec.prune.importance == "taylor" else None
    pruned = apply_plan(ctx.dense.model, plan, ctx.trace_inputs, importance=spec.prune.importance,
                        round_to=spec.prune.round_to, calibration=calibration)
    ft = spec.finetune
    train(pruned.model, ctx.data.train, steps=ft.steps, lr=ft.lr, batch_size=ft.batch_size,
          optimizer=ft.optimizer, seed=seed)
    return evaluate(pruned.model, ctx.data.val)


def reevaluate_front(study: optuna.Study, ctx: StudyContext, *, top: int, seeds: int, log=print) -> list[int]:
    """Re-evaluate up to ``top`` Pareto candidates, repeating while the front (on means) still has new members.

    Returns the trial numbers re-evaluated in this call.
    """
    done: list[int] = []
    while len(done) < top:
        frame = trials_frame(study)
        evaluated = set(reevaluations(study))
        pending = frame[frame["on_front"] & ~frame["number"].isin(evaluated)]
        if pending.empty:
            break
        for _, row in pending.head(top - len(done)).iterrows():
            number = int(row["number"])
            accs = [refinetune_accuracy(ctx, row["plan"], finetune_seed(ctx.spec.seed, number, repeat=r))
                    for r in range(1, seeds + 1)]
            study.set_user_attr(f"{REEVAL_PREFIX}{number}", accs)
            log(f"re-evaluated trial {number} on {seeds} fresh seeds: accuracy {row['accuracy_first']:.4f} -> "
                f"mean {(row['accuracy_first'] + sum(accs)) / (1 + len(accs)):.4f}")
            done.append(number)
    return done
