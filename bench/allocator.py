"""Does a CPU timing depend on what the process allocated before? glibc's malloc as it comes, and as moprune sets it.

Each run is a fresh process that prepares the ResNet-8 bench task (seed 0), times global pruning's 0.45 plan three
times in paired rounds against dense (the bench's measure settings, one thread), runs three screen proxies (a few
fine-tune steps on another plan, as a screened plan gets), and times the plan twice more. ``default`` leaves glibc's
mmap threshold dynamic (``moprune.measure.allocator`` disabled in that process); ``fixed`` is what moprune does.

    .venv/bin/python bench/allocator.py [--processes 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(mode: str) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from bench.tasks import task_spec
    from moprune.measure import allocator, measure_architecture
    from moprune.search.context import prepare_context
    from moprune.spec import parse_spec

    if mode == "default":
        allocator._done = "left as it is (bench/allocator.py default mode)"
    spec = parse_spec({**task_spec("resnet8"), "name": "alloc", "seed": 0, "storage": "sqlite:///:memory:"})
    torch.set_num_threads(1)
    ctx = prepare_context(spec)
    plan, other = ctx.global_plan(0.45), ctx.global_plan(0.7)

    def timed() -> dict[str, float]:
        a = measure_architecture(ctx.prune(plan).model, ctx.dense.model, ctx.measure_inputs, ctx.settings,
                                 device=ctx.device, want_energy=False, cache=None)
        return {"speedup": a.latency.speedup, "dense_ms": a.latency.reference.median_ms}

    before = [timed() for _ in range(3)]
    for i in range(3):
        ctx.proxy(ctx.prune(other).model, 100 + i)
    after = [timed() for _ in range(2)]
    print(json.dumps({"before": before, "after": after}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--child", choices=("default", "fixed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    print("mode     process  speedup before proxies   after       dense ms")
    spread: dict[str, list[float]] = {}
    for mode in ("default", "fixed"):
        for p in range(args.processes):
            out = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True,
                                 check=True, cwd=ROOT)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            s = [x["speedup"] for x in r["before"] + r["after"]]
            d = [x["dense_ms"] for x in r["before"] + r["after"]]
            spread.setdefault(mode, []).extend(s)
            first = " ".join(f"{x:.2f}" for x in s[:3])
            then = " ".join(f"{x:.2f}" for x in s[3:])
            print(f"{mode:<8} {p:>7}  {first:<22}{then:<12}{min(d):.1f}-{max(d):.1f}")
    for mode, s in spread.items():
        print(f"{mode}: speedup {min(s):.2f}-{max(s):.2f}x over {len(s)} timings (max/min {max(s) / min(s):.3f}, "
              f"median {statistics.median(s):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
