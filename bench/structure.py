"""Is there anything for a per-group allocation to find? Random plans of the space against the sweeps, all fine-tuned.

A search over per-group ratios can only beat the uniform and global sweeps on a task where some allocation is
better than every sweep level. This script asks that before any search runs: it fine-tunes the uniform and the
global sweep at 12 levels and ``--plans`` random plans of the search space (a global ratio and a per-unit offset in
``+-prune.offset_max``, as the samplers draw them) inside the task's MACs budget, each on the same ``--seeds`` fine-tune
seeds, times each paired with the dense model, and prints the hypervolume (accuracy x latency, as
``bench/search_quality.py`` scores it) of the sweeps' fronts, of the random plans' front, and of all together.
"all / best sweep" well above 1 says the task has structure to exploit; near 1, no search can beat a sweep.
The random plans' front is picked from more noisy points than each sweep's, so read small margins as none.

Random plans rarely stray far from a level; ``--graded S1,S2`` adds designed allocations at the sweep's levels:
ratios graded with depth, ``level + S x (depth - 1/2)`` over the units in forward order (S > 0 prunes the late
layers more, as global pruning tends to on nets whose last stages are wide). ``--spec PATH`` runs on a study
spec (its model, data, space, fine-tune and budgets; the spec's ``max_macs`` if any) instead of a bench task:
is there anything for a search to find on your model? ``--drop "B1,B2;B3"`` adds, for each ``;``-separated set of
residual blocks (``prune.drop_blocks``; the script lists the droppable ones), uniform plans at 10 levels from 0 to
0.8 with those blocks dropped: how much does depth buy over width? ``--levels L1,L2`` replaces the sweeps' 12 levels
(evenly spaced over the space's ratio range) with these, which may lie past the space's cap: how fast can a sweep
go at all, and at what accuracy?

    .venv/bin/python bench/structure.py --task resnet8 [--image-size 8] [--plans 30] [--seeds 2] [--json PATH]
    .venv/bin/python bench/structure.py --spec studies/quickstart.yaml --plans 0 --graded 0.5,-0.5
    .venv/bin/python bench/structure.py --task mobilenetv2 --plans 0 --drop "layers.2,layers.4;layers.0,layers.2,layers.4"
    .venv/bin/python bench/structure.py --task mobilenetv2 --plans 0 --levels 0.85,0.9,0.95,0.98
"""

from __future__ import annotations

import argparse
import copy
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

from bench.tasks import MAX_MACS_SHARE, TASKS, task_spec


def graded_plan(units: list[tuple[str, ...]], level: float, slope: float, low: float, high: float
                ) -> dict[str, float]:
    """Each unit's ratio ``level + slope x (depth - 1/2)``, depth 0..1 over ``units`` in forward order, in [low, high]."""
    last = max(len(units) - 1, 1)
    return {root: round(min(max(level + slope * (i / last - 0.5), low), high), 3)
            for i, roots in enumerate(units) for root in roots}


def sweep_levels(text: str, low: float, high: float) -> list[float]:
    """The sweeps' levels: ``text``'s comma-separated ratios (each in (0, 1)), or 12 evenly spaced over [low, high]."""
    if not text.strip():
        return [round(low + (high - low) * k / 11, 3) for k in range(12)]
    levels = [float(x) for x in text.split(",") if x.strip()]
    outside = [x for x in levels if not 0.0 < x < 1.0]
    if outside:
        raise ValueError(f"--levels: {outside} outside (0, 1): a ratio is the share of each group's channels removed")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="resnet8", choices=sorted(TASKS))
    parser.add_argument("--spec", default=None, help="a study spec (YAML) to probe instead of a bench task")
    parser.add_argument("--graded", default="", help="slopes of depth-graded plans at the sweep levels, e.g. 0.5,-0.5")
    parser.add_argument("--drop", default="", help="';'-separated sets of residual blocks to drop, each swept at "
                        "uniform levels 0-0.8, e.g. 'layers.2,layers.4;layers.0'")
    parser.add_argument("--levels", default="", help="the sweeps' ratios, e.g. 0.85,0.9,0.95 (default: 12 evenly "
                        "spaced over the space's range)")
    parser.add_argument("--image-size", type=int, default=None, help="override the task's image size (px)")
    parser.add_argument("--plans", type=int, default=30, help="random plans of the space (default 30)")
    parser.add_argument("--seeds", type=int, default=2, help="fine-tune seeds per plan (default 2)")
    parser.add_argument("--json", dest="json_path", default=None, help="write every plan's numbers here")
    parser.add_argument("--workdir", default=None, help="the dense-model cache (default: a temporary directory)")
    args = parser.parse_args(argv)
    try:  # before any compute: the dense model's pretraining takes minutes
        explicit_levels = sweep_levels(args.levels, 0.0, 1.0) if args.levels.strip() else None
    except ValueError as exc:
        parser.error(str(exc))

    import torch

    from bench.search_quality import front_hypervolume, spearman
    from moprune.measure import count_complexity
    from moprune.pruning import drop_key, droppable_blocks
    from moprune.search.context import prepare_context
    from moprune.spec import parse_spec
    from moprune.train.proxy import proxy_accuracy

    torch.set_num_threads(1)  # as bench/search_quality.py: one thread for training and timing alike
    if args.spec:
        import yaml

        raw = yaml.safe_load(Path(args.spec).read_text())
        raw.update(device="cpu", measure={**raw.get("measure", {}), "threads": 1})
        name = Path(args.spec).stem
    else:
        raw, name = task_spec(args.task), args.task
    if args.image_size:
        raw["data"] = {**raw["data"], "image_size": args.image_size}
    json_path = Path(args.json_path).resolve() if args.json_path else None  # before the chdir below
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="moprune-structure-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # the dense-model cache lands here
    spec = parse_spec({**raw, "name": f"structure-{name}", "seed": 0, "storage": "sqlite:///:memory:"})
    ctx = prepare_context(spec)
    dense_macs = count_complexity(ctx.dense.model, ctx.trace_inputs).macs
    base = ctx.baseline()
    baseline = {"accuracy": base.accuracy, "latency_ms": base.latency_ms, "macs": base.macs}
    drop = spec.constraints.max_accuracy_drop
    seeds = [800_000_000 + s for s in range(1, args.seeds + 1)]
    max_macs = spec.constraints.max_macs if args.spec else dense_macs * MAX_MACS_SHARE
    print(f"{name} at {spec.data.image_size} px: dense accuracy {base.accuracy:.4f}, {base.latency_ms:.2f} ms, "
          f"{dense_macs / 1e6:.2f}M MACs, {len(ctx.units)} units; plans keep at most "
          f"{'any share' if max_macs is None else f'{max_macs / dense_macs:.0%}'} of the MACs; droppable blocks: "
          f"{', '.join(droppable_blocks(ctx.dense.model, ctx.trace_inputs)) or 'none'}", flush=True)
    rows: list[dict[str, Any]] = []

    def run(plan: dict[str, float], kind: str) -> None:
        pruned = ctx.prune(plan)
        macs = count_complexity(pruned.model, ctx.trace_inputs).macs
        if max_macs is not None and macs > max_macs:
            return
        t0 = time.perf_counter()
        speedup = ctx.measure(pruned.model, energy=False).latency.speedup
        proxy = proxy_accuracy(copy.deepcopy(pruned.model), ctx.data.train, ctx.data.val, method="finetune",
                               batches=8, batch_size=spec.finetune.batch_size, seed=5, lr=spec.finetune.lr,
                               optimizer=spec.finetune.optimizer).accuracy
        accs = []
        for s in seeds:
            model = ctx.prune(plan).model
            ctx.finetune(model, s)
            accs.append(ctx.evaluate(model))
        row = {"kind": kind, "macs_share": macs / dense_macs, "speedup": speedup,
               "latency_ms": base.latency_ms / speedup, "accuracy": statistics.fmean(accs), "accuracies": accs,
               "proxy": proxy, "plan": plan}
        rows.append(row)
        print(f"{kind:<13} MACs {row['macs_share']:.3f}  {speedup:.2f}x  accuracy {row['accuracy']:.3f} "
              f"({min(accs):.3f}-{max(accs):.3f})  proxy {proxy:.3f}  [{time.perf_counter() - t0:.1f} s]",
              flush=True)

    r = spec.prune.ratio
    slopes = [float(x) for x in args.graded.split(",") if x.strip()]
    for level in explicit_levels or sweep_levels("", r.low, r.high):
        run({root: level for u in ctx.units for root in u.roots}, f"uniform {level}")
        run(ctx.global_plan(level), f"global {level}")
        for slope in slopes:
            run(graded_plan([u.roots for u in ctx.units], level, slope, r.low, r.high), f"graded{slope:+} {level}")
    drop_sets = [[b.strip() for b in group.split(",") if b.strip()] for group in args.drop.split(";") if group.strip()]
    unknown = {b for blocks in drop_sets for b in blocks} - set(droppable_blocks(ctx.dense.model, ctx.trace_inputs))
    if unknown:
        parser.error(f"--drop: {', '.join(sorted(unknown))} not among the droppable blocks listed above")
    for d, blocks in enumerate(drop_sets):
        for k in range(10):
            level = round(0.8 * k / 9, 3)
            run({root: level for u in ctx.units for root in u.roots} | {drop_key(b): 1.0 for b in blocks},
                f"drop{d + 1} {level}")
    rng = random.Random(1)
    tries = 0
    while sum(1 for row in rows if row["kind"] == "random") < args.plans and tries < args.plans * 30:
        tries += 1
        level = rng.uniform(r.low, r.high)
        plan = {root: round(min(max(level + rng.uniform(-spec.prune.offset_max, spec.prune.offset_max), r.low),
                                r.high), 3) for u in ctx.units for root in u.roots}
        run(plan, "random")

    def hv(kinds: set[str]) -> float:
        return front_hypervolume([row for row in rows if row["kind"].split()[0] in kinds], "latency_ms", baseline,
                                 drop)

    uniform, global_, random_ = hv({"uniform"}), hv({"global"}), hv({"random"})
    every = hv({row["kind"].split()[0] for row in rows})
    best = max(uniform, global_)
    for d, blocks in enumerate(drop_sets):
        dropped = hv({f"drop{d + 1}"})
        print(f"hypervolume: drop{d + 1} ({', '.join(blocks)}): {dropped:.4f}, / best sweep "
              f"{dropped / best if best else float('nan'):.2f}")
    for slope in slopes:
        graded = hv({f"graded{slope:+}"})
        print(f"hypervolume: graded {slope:+}: {graded:.4f}, / best sweep {graded / best if best else float('nan'):.2f}")
    correlation = spearman([row["proxy"] for row in rows], [row["accuracy"] for row in rows])
    print(f"hypervolume: uniform {uniform:.4f}, global {global_:.4f}, random plans {random_:.4f}, all {every:.4f}; "
          f"all / best sweep {every / best if best else float('nan'):.2f}, random / best sweep "
          f"{random_ / best if best else float('nan'):.2f}; proxy Spearman {correlation:.2f} over {len(rows)} plans")
    if json_path:
        json_path.write_text(json.dumps({"task": name, "image_size": spec.data.image_size,
                                                    "baseline": baseline, "rows": rows,
                                                    "hv": {"uniform": uniform, "global": global_,
                                                           "random": random_, "all": every}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
