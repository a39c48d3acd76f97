"""Does a brief fine-tune leave BatchNorm statistics stale? Accuracy after the fine-tune, with and without adaptive BN.

A brief fine-tune changes a pruned network's weights fast, and BatchNorm's running averages (momentum 0.1) mix the
statistics of the states it passed through: evaluated with them, the network reads below what its weights give.
``finetune.recalibrate_bn`` (default 8 batches) re-estimates them after every fine-tune (``StudyContext.finetune``:
trials, re-evaluation and export alike). This bench measures what that changes, on moprune's own trial step.

For each task (``bench/tasks.py``) and seed: the uniform plans and Torch-Pruning's global plans at four ratios,
and random plans of the search space, each pruned and fine-tuned (the task's steps, recalibration off) on two
fine-tune seeds, evaluated (``stale``), then recalibrated with ``--batches`` training batches and evaluated again
(``recalibrated``). It prints, per task: the accuracy gain (median, min-max over plans x seeds), how far apart two
fine-tune seeds of one plan land with each (the noise a search ranks plans through), the rank correlation of the
plans' mean accuracy between the two, and what the recalibration costs against the fine-tune.

    .venv/bin/python bench/recalibration.py [--seeds 2] [--tasks resnet8,vgg,mobilenetv2] [--plans 4] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tasks import TASKS, task_spec  # noqa: E402

RATIOS = (0.4, 0.55, 0.7, 0.85)
FINETUNE_SEEDS = (101, 202)


def plans_of(ctx: Any, random_plans: int, seed: int) -> list[tuple[str, Any]]:
    """(label, plan): uniform and global plans at ``RATIOS``, then random plans of the task's search space."""
    import optuna

    from moprune.pruning import plan_params, suggest_plan

    prune = ctx.spec.prune
    out = [(f"uniform {r:.2f}", suggest_plan(optuna.trial.FixedTrial(plan_params(ctx.units, prune, r)), ctx.units,
                                             prune)) for r in RATIOS]
    out += [(f"global {r:.2f}", ctx.global_plan(r)) for r in RATIOS]
    rng = random.Random(seed)
    for k in range(random_plans):
        base = rng.uniform(prune.ratio.low, prune.ratio.high)
        offsets = {u.name: rng.uniform(-prune.offset_max, prune.offset_max) for u in ctx.units}
        params = plan_params(ctx.units, prune, base, offsets)
        out.append((f"random {k}", suggest_plan(optuna.trial.FixedTrial(params), ctx.units, prune)))
    return out


def measure_task(task: str, seed: int, *, random_plans: int, batches: int) -> list[dict[str, Any]]:
    """One row per (plan, fine-tune seed): accuracy stale and recalibrated, and the seconds each step took."""
    from moprune.search.context import prepare_context
    from moprune.spec import parse_spec
    from moprune.train.proxy import adaptive_bn

    spec = task_spec(task)
    spec["finetune"] = {**spec["finetune"], "recalibrate_bn": 0}
    ctx = prepare_context(parse_spec({**spec, "name": f"recal-{task}", "seed": seed,
                                      "storage": "sqlite:///:memory:"}))
    rows = []
    for label, plan in plans_of(ctx, random_plans, seed):
        for ft_seed in FINETUNE_SEEDS:
            pruned = ctx.prune(plan)
            t0 = time.perf_counter()
            ctx.finetune(pruned.model, ft_seed)
            t1 = time.perf_counter()
            stale = ctx.evaluate(pruned.model)
            t2 = time.perf_counter()
            adaptive_bn(pruned.model, ctx.data.train, batches=batches, batch_size=ctx.spec.finetune.batch_size,
                        seed=ft_seed + 1)
            t3 = time.perf_counter()
            rows.append({"task": task, "seed": seed, "plan": label, "finetune_seed": ft_seed, "stale": stale,
                         "recalibrated": ctx.evaluate(pruned.model), "finetune_s": t1 - t0,
                         "recalibrate_s": t3 - t2})
    return rows


def _spread(vals: list[float]) -> str:
    return f"{statistics.median(vals):+.3f} ({min(vals):+.3f} to {max(vals):+.3f})"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Gain, seed-to-seed gaps, rank agreement of plan means, and the cost ratio, from one task's rows."""
    from moprune.report.screen import spearman

    gains = [r["recalibrated"] - r["stale"] for r in rows]
    by_plan: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_plan.setdefault((r["seed"], r["plan"]), []).append(r)
    gaps = {k: [abs(p[0][k] - p[1][k]) for p in by_plan.values() if len(p) == 2] for k in ("stale", "recalibrated")}
    means = {k: [statistics.fmean(x[k] for x in p) for p in by_plan.values()] for k in ("stale", "recalibrated")}
    return {"rows": len(rows), "gain": gains,
            "gain_median": statistics.median(gains), "gain_min": min(gains), "gain_max": max(gains),
            "share_gaining_over_0.01": sum(g > 0.01 for g in gains) / len(gains),
            "seed_gap_median": {k: statistics.median(v) for k, v in gaps.items()},
            "seed_gap_max": {k: max(v) for k, v in gaps.items()},
            "spearman_stale_vs_recalibrated": spearman(means["stale"], means["recalibrated"]),
            "recalibrate_over_finetune": statistics.median(r["recalibrate_s"] / r["finetune_s"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of " + ", ".join(TASKS))
    parser.add_argument("--seeds", type=int, default=2, help="bench seeds 0..S-1 (each its own dense model)")
    parser.add_argument("--plans", type=int, default=4, help="random plans per seed, beside the 8 sweep plans")
    parser.add_argument("--batches", type=int, default=8, help="recalibration batches (finetune.recalibrate_bn)")
    parser.add_argument("--json", type=Path, help="write every row and the summaries here")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {unknown[0]!r}; choose from {', '.join(TASKS)}")

    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="moprune-recal-"))
        old = os.getcwd()
        os.chdir(workdir)  # the dense-model cache (runs/) lands here
        stack.callback(os.chdir, old)
        for task in tasks:
            rows = [row for seed in range(args.seeds)
                    for row in measure_task(task, seed, random_plans=args.plans, batches=args.batches)]
            results[task] = {**summarise(rows), "rows_data": rows}
            s = results[task]
            print(f"{task}: {s['rows']} fine-tunes ({args.seeds} dense models, 2 fine-tune seeds each); accuracy "
                  f"gain from {args.batches} batches of recalibration {_spread(s['gain'])}, over 0.01 on "
                  f"{s['share_gaining_over_0.01']:.0%}; two fine-tune seeds of one plan differ by "
                  f"{s['seed_gap_median']['stale']:.3f} (max {s['seed_gap_max']['stale']:.3f}) stale, "
                  f"{s['seed_gap_median']['recalibrated']:.3f} (max {s['seed_gap_max']['recalibrated']:.3f}) "
                  f"recalibrated; Spearman of plan means stale vs recalibrated "
                  f"{s['spearman_stale_vs_recalibrated']:.2f}; recalibration costs "
                  f"{s['recalibrate_over_finetune']:.2f}x the fine-tune", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"tasks": results, "batches": args.batches, "seeds": args.seeds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
