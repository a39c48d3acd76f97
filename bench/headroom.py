"""Is there anything for a search to find? Every allocated plan fine-tuned in a bench run against every sweep plan.

Reads the studies ``bench/search_quality.py --workdir DIR`` left and, per task and seed, pools the fine-tuned trials
of all four methods: the uniform sweep's plans, the global sweep's, and the allocated ones (every plan that is
neither: the samplers' and the screen's). It prints the hypervolume (accuracy above the task's budget x latency
below dense, on the searches' own values, the dense latency over each plan's paired speedup) of each pool's
feasible front, and the allocated pool's over the better sweep's. Where allocated plans, about as many as the
sweeps', hold a front no larger than the sweeps', a per-group search has little to find on that task at that
fine-tune, whatever its sampler or screen.

Under each line, each pool's reach: its fastest fine-tuned plan at any accuracy and its fastest feasible one. A
pool whose fastest plan at any accuracy is slower than a speedup cannot have a point there, however long it runs:
on MobileNetV2 (16 px, eager on the CPU) the sweeps' fastest plans (ratios 0.75-0.85) time 2.6-2.9x, so
"best accuracy at >= 3x" has no sweep value to beat on that task.

    .venv/bin/python bench/headroom.py DIR
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pool_of(start: str | None) -> str:
    """Which pool a fine-tuned trial belongs to, from its starting-plan label ("uniform 0.43", "global 0.57")."""
    kind = (start or "").split(" ")[0]
    return kind if kind in ("uniform", "global") else "allocated"


def front_area(points: list[tuple[float, float]], budget: float) -> float:
    """Hypervolume of (accuracy, speedup) points: accuracy above ``budget`` x latency saved (1 - 1/speedup)."""
    from moprune.search.promotion import _area

    return _area([(a, 1.0 / s) for a, s in points], budget, 1.0)


def reach(points: list[tuple[float, float]], budget: float) -> str:
    """The fastest (accuracy, speedup) point at any accuracy and the fastest feasible one, for one pool's line."""
    fastest = max(points, key=lambda p: p[1])
    feasible = [p for p in points if p[0] >= budget]
    text = f"fastest {fastest[1]:.2f}x at {fastest[0]:.3f}"
    if not feasible:
        return text + ", none feasible"
    best = max(feasible, key=lambda p: p[1])
    return text + f", fastest feasible {best[1]:.2f}x at {best[0]:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path, help="a search_quality.py --workdir")
    args = parser.parse_args(argv)

    import optuna

    from moprune.record import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pools: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    budgets: dict[tuple[str, str], float] = {}
    for db in sorted(args.workdir.glob("studies-*/*.db")):
        url = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(url):
            if summary.study_name.endswith(".screen"):
                continue
            _, task, _method, seed = summary.study_name.split("-")
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            spec = study.user_attrs["spec"]
            budgets[(task, seed)] = study.user_attrs["baseline"]["accuracy"] - spec["constraints"]["max_accuracy_drop"]
            at = spec["objectives"].index("accuracy")
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
                record = TrialRecord.of(t)
                if record.speedup and not record.rejected and record.start != "dense":
                    pools[(task, seed)][pool_of(record.start)].append((t.values[at], record.speedup))
    if not pools:
        parser.error(f"no bench studies under {args.workdir}/studies-*/")
    for key in sorted(pools):
        areas = {name: front_area(points, budgets[key]) for name, points in pools[key].items()}
        best = max(areas.get("uniform", 0.0), areas.get("global", 0.0))
        counts = ", ".join(f"{name} {len(points)}" for name, points in sorted(pools[key].items()))
        ratio = f"{areas.get('allocated', 0.0) / best:.2f}x" if best else "-"
        print(f"{key[0]} {key[1]}: plans {counts}; allocated front / better sweep's {ratio}")
        for name, points in sorted(pools[key].items()):
            print(f"    {name:<9} {reach(points, budgets[key])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
