"""What the collection after each trial costs, with and without the heap frozen (``moprune.search.loop.frozen_heap``).

``free_memory`` (``moprune.search.objective``) runs a full ``gc.collect()`` after every fine-tuned trial: a pruned
model's dependency graph holds reference cycles, and on CUDA its cached blocks are given back only once collected.
A full collection walks every object alive, and in a study's process that is the dense model, the data, the study
and every imported module. This script builds a bench task's context (``bench/tasks.py``; the dense model from the
workdir's cache, pretrained there once), a study of ``--study-trials`` finished trials, and then, in rounds of
alternating order, prunes a plan as a trial does (the pruned copy and its dependency graph become garbage) and
times ``free_memory``: plain, and inside ``frozen_heap`` as ``run_trials`` holds it. It prints each mode's median
and 10-90% range per trial and their ratio, with a trial's prune beside them for scale. Nothing is fine-tuned.

    .venv/bin/python bench/trial_overhead.py [--task resnet20] [--workdir DIR] [--trials 12] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tasks import TASKS, task_spec


def spread(values: list[float]) -> str:
    """Median and 10-90% range, in milliseconds."""
    q = statistics.quantiles(values, n=10) if len(values) >= 2 else [values[0]] * 9
    return f"{1000 * statistics.median(values):7.1f} ms ({1000 * q[0]:.1f}-{1000 * q[-1]:.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="resnet20", choices=sorted(TASKS))
    parser.add_argument("--workdir", type=Path, default=None, help="where runs/cache holds the dense model")
    parser.add_argument("--trials", type=int, default=12, help="trials per mode per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each mode once a round, order alternating")
    parser.add_argument("--study-trials", type=int, default=40, help="finished trials in the study held alive")
    args = parser.parse_args(argv)

    import optuna
    import torch

    from moprune.search.context import prepare_context
    from moprune.search.loop import frozen_heap
    from moprune.search.objective import free_memory
    from moprune.spec import parse_spec

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="moprune-overhead-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    spec = parse_spec({**task_spec(args.task), "name": f"overhead-{args.task}", "seed": 0,
                       "storage": "sqlite:///:memory:"})
    ctx = prepare_context(spec)
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"ratio/global": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for i in range(args.study_trials):
        study.add_trial(optuna.trial.create_trial(values=[0.9, 1.0 + i], params={"ratio/global": i / args.study_trials},
                                                  distributions=dist, user_attrs={"plan": {"x": 0.5}}))
    plan = {root: 0.5 for unit in ctx.units for root in unit.roots}
    times: dict[str, list[float]] = {"plain": [], "frozen": []}
    prunes: list[float] = []

    def trials(mode: str) -> None:
        for _ in range(args.trials):
            start = time.perf_counter()
            pruned = ctx.prune(plan)
            prunes.append(time.perf_counter() - start)
            del pruned
            start = time.perf_counter()
            free_memory(ctx.device)
            times[mode].append(time.perf_counter() - start)

    for r in range(args.rounds):
        for mode in (("plain", "frozen") if r % 2 == 0 else ("frozen", "plain")):
            if mode == "frozen":
                with frozen_heap():
                    trials(mode)
            else:
                trials(mode)
    plain, frozen = statistics.median(times["plain"]), statistics.median(times["frozen"])
    print(f"{args.task}: {args.rounds} rounds x {args.trials} trials per mode, {args.study_trials} study trials held, "
          f"torch {torch.__version__}, 1 thread")
    print(f"collection after a trial, plain (gc.collect over the whole heap): {spread(times['plain'])}")
    print(f"collection after a trial, inside frozen_heap:                    {spread(times['frozen'])}")
    print(f"plain / frozen: {plain / frozen:.1f}x; a trial's prune, for scale: {spread(prunes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
