"""Recover more accuracy per fine-tune step? One-shot vs iterative vs distillation vs a sparsity-trained dense model
vs all three, at equal fine-tune steps, at the cheap end; and unstructured / 2:4 sparsity with their measured speed.

For each task (``bench/tasks.py``) and seed (the seed sets the data split, the dense model and the fine-tune data
order), one plan in the cheap region (the uniform plan of the smallest ratio that keeps at most 40% of the dense
MACs, and Torch-Pruning's global plan of the same ratio) is pruned, fine-tuned and evaluated by moprune's own trial
step (``StudyContext.refinetuned``) under each recovery method:

- ``one-shot``: prune, then ``finetune.steps`` steps.
- ``iterative``: ``prune.schedule`` in 3 steps with S steps between them, then ``finetune.steps - 2 S`` steps.
- ``distill``: one-shot with ``finetune.distill`` (alpha 0.5, temperature 4): the dense model teaches.
- ``slimmed``: one-shot from a dense model given ``model.sparsity_training`` (L1 on BatchNorm scales) first, ranked
  by ``bn_scale`` (its cost is the extra dense training, reported, not counted in the fine-tune steps).
- ``distill+slimmed`` and ``all`` (slimmed + iterative + distill): the combinations.

Every method sees the same plan, so MACs and the channel counts match exactly; latency is measured in paired rounds
against the dense model (speedup), once per architecture and seed (the structured methods share one shape, so they
share that measurement; the table shows its median over seeds). Accuracy is reported as mean +- sd over seeds, and as the paired difference to
one-shot on the same seed (the dense model and data order are shared within a seed).
Then ``unstructured`` at 50% of each group's weights and ``nm`` 2:4 on the same task: their accuracy and the
speedup measured on this machine (dense kernels: about 1.0x, which is the point).

    .venv/bin/python bench/recovery.py [--seeds 3] [--tasks resnet8,mobilenetv2] [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tasks import MAX_MACS_SHARE, TASKS, task_spec  # noqa: E402

METHODS = ("one-shot", "iterative", "distill", "slimmed", "distill+slimmed", "all")
SPARSE = ("unstructured", "nm")
ITERATIVE_STEPS = 3
DISTILL = {"alpha": 0.5, "temperature": 4.0}
SLIM = {"l1": 1e-4, "epochs": 3, "lr": 0.01, "batch_size": 128}


def method_spec(task: str, method: str, *, seed: int) -> dict[str, Any]:
    """The spec of one recovery method: the task's keys with only the recovery keys changed.

    Every structured method spends exactly the task's ``finetune.steps`` on the pruned model: the iterative one
    takes its between-step fine-tunes out of the final fine-tune.
    """
    spec = task_spec(task)
    spec.update(name=f"rec-{task}-{method.replace('+', '_')}-s{seed}", seed=seed)
    steps = spec["finetune"]["steps"]
    between = steps // (2 * ITERATIVE_STEPS)
    prune, finetune, model = dict(spec["prune"]), dict(spec["finetune"]), dict(spec["model"])
    if method in ("iterative", "all"):
        prune["schedule"] = {"steps": ITERATIVE_STEPS, "finetune_steps": between}
        finetune["steps"] = steps - between * (ITERATIVE_STEPS - 1)
    if method in ("distill", "distill+slimmed", "all"):
        finetune["distill"] = dict(DISTILL)
    if method in ("slimmed", "distill+slimmed", "all"):
        model["sparsity_training"] = dict(SLIM)
        prune["importance"] = "bn_scale"
    if method == "unstructured":
        prune.update(method="unstructured", importance="l1", drop_blocks=False)
    elif method == "nm":
        prune.update(method="nm", nm="2:4", importance="l1", drop_blocks=False)
    elif method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    spec.update(prune=prune, finetune=finetune, model=model)
    return spec


def total_finetune_steps(spec: Any) -> int:
    """Fine-tune steps a pruned model gets under ``spec``: the final fine-tune plus the schedule's between-steps."""
    schedule = spec.prune.schedule
    between = schedule.finetune_steps * (schedule.steps - 1) if schedule is not None else 0
    return spec.finetune.steps + between


def cheap_plans(ctx, dense_macs: int) -> dict[str, dict[str, float]]:
    """The uniform plan of the smallest ratio on a 0.01 grid keeping <= MAX_MACS_SHARE of dense MACs, and the global
    plan of that ratio (if it also fits)."""
    r = ctx.spec.prune.ratio
    ratio = r.low
    while ratio <= r.high:
        plan = {g.root: round(ratio, 6) for g in ctx.groups}
        if ctx.complexity(ctx.prune(plan).model).macs <= MAX_MACS_SHARE * dense_macs:
            plans = {f"uniform {ratio:.2f}": plan}
            glob = ctx.global_plan(round(ratio, 6))
            if ctx.complexity(ctx.prune(glob).model).macs <= MAX_MACS_SHARE * dense_macs:
                plans[f"global {ratio:.2f}"] = glob
            return plans
        ratio += 0.01
    raise RuntimeError(f"no uniform plan up to ratio {r.high} keeps <= {MAX_MACS_SHARE:.0%} of the dense MACs")


def paired(values: dict[int, float], reference: dict[int, float]) -> dict[str, float | None]:
    """Mean and sd of ``values[seed] - reference[seed]`` over the seeds both have."""
    diffs = [values[s] - reference[s] for s in sorted(values) if s in reference]
    if not diffs:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(diffs), "sd": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            "n": len(diffs)}


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def run_seed(task: str, seed: int, log) -> list[dict[str, Any]]:
    """Every method on the cheap plans of one task and seed: accuracy, MACs, measured speedup, seconds."""
    from moprune.search import finetune_seed, prepare_context
    from moprune.spec import parse_spec

    rows = []
    plans = None
    speedups: dict[str, Any] = {}  # one paired measurement per architecture: the structured methods share a shape
    for method in (*METHODS, *SPARSE):
        spec = parse_spec(method_spec(task, method, seed=seed), source=f"bench {task} {method}")
        t0 = time.perf_counter()
        ctx = prepare_context(spec)  # pretrains (or slims) the dense model once per recipe; cached under runs/cache
        dense_macs = ctx.complexity(ctx.dense.model).macs
        prepared_s = time.perf_counter() - t0
        if plans is None:
            plans = cheap_plans(ctx, dense_macs)  # chosen once per seed on the plain dense model
        chosen = plans if method not in SPARSE else {"50% of weights": {g.root: 0.5 for g in ctx.groups}}
        for label, plan in chosen.items():
            t1 = time.perf_counter()
            pruned = ctx.refinetuned(plan, finetune_seed(seed, 7))
            accuracy = ctx.evaluate(pruned.model)
            shape = json.dumps([label, pruned.channels, method in SPARSE and method], sort_keys=True)
            if shape not in speedups:
                speedups[shape] = ctx.measure(pruned.model, energy=False).latency
            latency = speedups[shape]
            rows.append({"task": task, "seed": seed, "method": method, "plan": label, "accuracy": accuracy,
                         "dense_accuracy": ctx.dense.val_accuracy, "macs_share": ctx.complexity(pruned.model).macs
                         / dense_macs, "params_share": ctx.complexity(pruned.model).params
                         / ctx.complexity(ctx.dense.model).params, "speedup": latency.speedup,
                         "speedup_p10": latency.speedup_p10, "speedup_p90": latency.speedup_p90,
                         "finetune_steps": total_finetune_steps(spec), "seconds": time.perf_counter() - t1,
                         "dense_prepared_s": prepared_s, "dense_source": ctx.dense.source})
            log(f"{task} seed {seed} {method:<12} {label:<14} acc {accuracy:.4f} speedup "
                f"{latency.speedup:.2f}x ({rows[-1]['seconds']:.1f} s)")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Per task and plan: each method's accuracy mean +- sd over seeds, paired difference to one-shot, speedup."""
    lines = []
    keys = sorted({(r["task"], r["plan"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for task, plan in keys:
        mine = [r for r in rows if r["task"] == task and r["plan"] == plan]
        base = {r["seed"]: r["accuracy"] for r in mine if r["method"] == "one-shot"}
        lines.append(f"\n{task}, plan {plan} (MACs {mine[0]['macs_share']:.0%} of dense, "
                     f"{len({r['seed'] for r in mine})} seeds)")
        header = (f"{'method':<16}{'accuracy mean +- sd':>22}{'vs one-shot (paired)':>24}{'speedup':>16}"
                  f"{'params':>9}{'ft steps':>10}")
        lines += [header, "-" * len(header)]
        for method in (*METHODS, *SPARSE):
            got = [r for r in mine if r["method"] == method]
            if not got:
                continue
            acc = spread([r["accuracy"] for r in got])
            diff = paired({r["seed"]: r["accuracy"] for r in got}, base)
            speed = [r["speedup"] for r in got]
            vs = f"{diff['mean']:+.4f} +- {diff['sd']:.4f}" if diff["n"] and method != "one-shot" else "-"
            lines.append(f"{method:<16}{acc['mean']:>10.4f} +- {acc['sd']:.4f}{vs:>24}"
                         f"{statistics.median(speed):>10.2f}x{'':>5}{got[0]['params_share']:>9.0%}"
                         f"{got[0]['finetune_steps']:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--json", metavar="PATH", help="write every row as JSON")
    parser.add_argument("--quick", action="store_true", help="one seed, resnet8 only (a smoke run)")
    args = parser.parse_args(argv)
    tasks = ["resnet8"] if args.quick else [t.strip() for t in args.tasks.split(",") if t.strip()]
    seeds = [1] if args.quick else list(range(1, args.seeds + 1))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    json_path = Path(args.json).resolve() if args.json else None
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    # runs/cache (the dense models) lands in a temporary directory, not in the repository
    with tempfile.TemporaryDirectory(prefix="moprune-recovery-") as work, contextlib.chdir(work):
        for task in tasks:
            for seed in seeds:
                rows += run_seed(task, seed, lambda line: print(line, file=sys.stderr, flush=True))
    print(table(rows))
    print(f"\n{len(rows)} fine-tunes in {time.perf_counter() - started:.0f} s")
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
