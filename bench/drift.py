"""Does a paired speedup depend on what the process did before? The same plans timed fresh, after fine-tunes, after
proxies.

A study times its first plans minutes before its last, in between it fine-tunes and screens; ``bench/search_quality``
times every front again in one block for that reason. This script shows how large the drift is: three plans of a
bench task, each paired with the dense model (the study's own settings), timed right after the process starts,
again at once, after 12 fine-tunes and after 12 proxies.

    .venv/bin/python bench/drift.py [--task mobilenetv2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tasks import TASKS, task_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mobilenetv2", choices=sorted(TASKS))
    parser.add_argument("--repeat", type=int, default=2, help="timings per plan at each point (default 2)")
    parser.add_argument("--workdir", default=None, help="the dense-model cache (default: a temporary directory)")
    args = parser.parse_args(argv)

    import torch

    from moprune.measure import measure_architecture
    from moprune.search.context import prepare_context
    from moprune.spec import parse_spec

    torch.set_num_threads(1)
    os.chdir(Path(args.workdir or tempfile.mkdtemp(prefix="moprune-drift-")).resolve())
    spec = parse_spec({**task_spec(args.task), "name": "drift", "seed": 0, "storage": "sqlite:///:memory:"})
    ctx = prepare_context(spec)
    units = [u.roots for u in ctx.units]
    heavy_first = [0.8 if i % 3 == 0 else 0.3 for i in range(len(units))]
    plans = {"uniform 0.54": {r: 0.54 for roots in units for r in roots},
             "uneven": {r: v for roots, v in zip(units, heavy_first) for r in roots},
             "global 0.45": ctx.global_plan(0.45)}
    models = {name: ctx.prune(plan).model for name, plan in plans.items()}

    def timed(label: str) -> None:
        cells = []
        for name, model in models.items():
            readings = [measure_architecture(model, ctx.dense.model, ctx.measure_inputs, ctx.settings,
                                             device=ctx.device, want_energy=False, cache=None).latency
                        for _ in range(args.repeat)]
            cells.append(f"{name} " + "/".join(f"{r.speedup:.2f}x" for r in readings)
                         + f" (dense {readings[-1].reference.median_ms:.1f} ms)")
        print(f"{label:<16}" + " | ".join(cells), flush=True)

    timed("fresh")
    timed("again")
    for i in range(12):
        ctx.finetune(ctx.prune(plans["uniform 0.54"]).model, i)
    timed("after 12 tunes")
    r = spec.prune.ratio
    for i in range(12):
        level = r.low + (r.high - r.low) * i / 11
        ctx.proxy(ctx.prune({root: level for roots in units for root in roots}).model, i)
    timed("after 12 proxies")
    timed("again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
