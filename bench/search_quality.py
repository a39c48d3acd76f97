"""Does the search earn its keep? Uniform pruning against random, NSGA-II and TPE search, compared honestly.

First the noise: for the bench task it measures the accuracy spread of one plan over fine-tune seeds and the spread
between plans of matched MACs (if the second does not clearly exceed the first, no search can be told from luck).
Then, at an equal budget of N trials and for each of S seeds (the seed sets the data split, the dense model, the
sampler and the fine-tune data orders), it runs one study per method: the uniform sweep (N evenly spaced global
ratios), random search, NSGA-II and TPE over DependencyGraph groups and over blocks. Every method fine-tunes
identically; the Pareto candidates of every method are re-fine-tuned on the same fresh seeds, and the hypervolume
is computed (moprune.pareto.hypervolume) on those fresh means only, never on the lucky value that put a plan on the
front. The cost objective is MACs (deterministic); latency is still measured per trial and gives the speedups.

    .venv/bin/python bench/search_quality.py [--trials 24] [--seeds 3] [--out search_quality.json] [--quick]
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

# --- the bench model --------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """A ResNet basic block; a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class CompactResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2): a 3x3 stem, three stages of widths 16/32/64, global pooling."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for stage, width in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean(dim=(2, 3)))


def resnet8(num_classes: int = 10) -> nn.Module:
    """ResNet-8: 6 DependencyGraph groups (4 blocks), 0.79M MACs on 8x8 images."""
    return CompactResNet(num_classes, blocks=1)


# --- the task and the methods ----------------------------------------------------------------------------------------

#: The bench task (see README, "Does the search earn its keep?"): ResNet-8 on the raw 8x8 digits, a 30-step fine-tune.
TASK: dict[str, Any] = {
    "device": "cpu",
    "model": {"arch": "bench.search_quality:resnet8", "pretrain": {"epochs": 10, "lr": 0.05, "batch_size": 128}},
    "data": {"name": "digits", "image_size": 8},
    # a continuous ratio: the uniform sweep gets N distinct levels, and every method searches the same space
    "prune": {"importance": "l2", "granularity": "group", "ratio": {"low": 0.0, "high": 0.8, "step": None},
              "offset_max": 0.3},
    "finetune": {"steps": 30, "lr": 0.01, "batch_size": 128, "optimizer": "sgd"},
    "objectives": ["accuracy", "macs"],
    "constraints": {"max_accuracy_drop": 0.05},
    # latency is not an objective here: a short paired measurement per trial, for the speedup columns only. One
    # thread for the whole process (training too): on 2 cores shared with another process, two threads made a
    # 30-step fine-tune take 3-16 s instead of 0.6 s; one thread stays at 0.6-0.7 s and leaves a core to others.
    "measure": {"batch_size": 256, "warmup": 2, "repeats": 10, "ci_half_width": None, "max_noisy_retries": 5,
                "threads": 1},
    "search": {"keep_weights": "none"},
}


@dataclass(frozen=True)
class Method:
    name: str
    sampler: str  # moprune search.sampler
    granularity: str  # moprune prune.granularity


METHODS = (
    Method("uniform", "random", "global"),  # every trial enqueued: N evenly spaced global ratios
    Method("random", "random", "group"),
    Method("nsga2-groups", "nsga2", "group"),
    Method("nsga2-blocks", "nsga2", "block"),
    Method("tpe-groups", "tpe", "group"),
    Method("tpe-blocks", "tpe", "block"),
)


@dataclass(frozen=True)
class SearchSettings:
    """What the searches (every method but the uniform sweep) share: starting trials and NSGA-II's population."""

    # Sensitivity starting plans, then a population of 4 (6 generations in 24 trials instead of 3), are what moved
    # NSGA-II's re-evaluated hypervolume past the uniform sweep's (README, "Does the search earn its keep?"); more
    # uniform starting plans, smaller offsets and uniform levels spaced by MACs did not.
    seed_trials: tuple[str, ...] = ("dense", "uniform", "sensitivity")
    uniform_count: int = 6
    population_size: int = 4
    offset_max: float = 0.3


def method_spec(method: Method, *, seed: int, n_trials: int, storage: str, settings: SearchSettings,
                task: dict[str, Any] = TASK) -> dict[str, Any]:
    """The study spec (a dict for moprune.spec.parse_spec) of one method and seed."""
    spec = json.loads(json.dumps(task))  # deep copy
    spec.update(name=f"sq-{method.name}-s{seed}", seed=seed, storage=storage)
    spec["prune"].update(granularity=method.granularity, offset_max=settings.offset_max)
    search = {**spec["search"], "sampler": method.sampler, "n_trials": n_trials,
              "population_size": settings.population_size}
    if method.name == "uniform":
        search.update(seed_trials=["uniform"], uniform_count=n_trials)
    else:
        search.update(seed_trials=list(settings.seed_trials), uniform_count=settings.uniform_count)
    spec["search"] = search
    return spec


def fresh_seeds(bench_seed: int, count: int) -> list[int]:
    """Fine-tune seeds for re-evaluation: the same for every method, and unlike any trial's (search.finetune_seed)."""
    return [900_000_000 + 1_000 * bench_seed + r for r in range(1, count + 1)]


# --- pure helpers (tested in tests/test_bench_search_quality.py) -----------------------------------------------------

def summary(values: list[float]) -> dict[str, float | None]:
    """Median, mean and min-max of a list (None entries ignored; all None when nothing is left)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "mean": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "mean": statistics.fmean(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def spread(accuracies: dict[str, list[float]]) -> dict[str, float]:
    """Within-plan spread (over seeds) against between-plan spread (of the per-plan means).

    ``accuracies``: plan label -> accuracies of that plan over the same fine-tune seeds. ``within_sd`` is the pooled
    standard deviation over seeds, ``between_sd`` the standard deviation of the plan means; the noise a mean over
    the seeds still carries is sd / sqrt(seeds), so ``ratio`` = between_sd / (within_sd / sqrt(seeds)) compares like
    with like, and ``raw_ratio`` = between_sd / within_sd compares a plan choice with one fine-tune's luck.
    """
    seeds = min(len(v) for v in accuracies.values())
    within_var = statistics.fmean(statistics.variance(v) for v in accuracies.values())
    means = [statistics.fmean(v) for v in accuracies.values()]
    within, between = within_var ** 0.5, statistics.stdev(means)
    return {"within_sd": within, "within_range_max": max(max(v) - min(v) for v in accuracies.values()),
            "between_sd": between, "between_range": max(means) - min(means),
            "raw_ratio": between / within if within else float("inf"),
            "ratio": between / (within / seeds ** 0.5) if within else float("inf")}


def front_metrics(rows: list[dict[str, Any]], *, dense_accuracy: float, max_accuracy_drop: float,
                  min_speedup: float = 2.0) -> dict[str, Any]:
    """What a user of a front asks, on re-evaluated candidates (dicts with accuracy, macs, speedup).

    ``best_accuracy_at_speedup``: the best accuracy among candidates at least ``min_speedup`` faster than dense;
    ``fastest_in_budget``: the largest speedup (and smallest MACs) among candidates within the accuracy budget.
    """
    floor = dense_accuracy - max_accuracy_drop
    fast = [r["accuracy"] for r in rows if r.get("speedup") is not None and r["speedup"] >= min_speedup]
    ok = [r for r in rows if r["accuracy"] >= floor]
    speeds = [r["speedup"] for r in ok if r.get("speedup") is not None]
    return {"best_accuracy_at_speedup": max(fast) if fast else None,
            "fastest_in_budget": max(speeds) if speeds else None,
            "min_macs_in_budget": min(r["macs"] for r in ok) if ok else None}


def nondominated(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows not dominated in (accuracy max, macs min); ties are kept (moprune.pareto's one definition)."""
    from moprune.pareto import nondominated as mask

    if not rows:
        return []
    keep = mask([[r["accuracy"], r["macs"]] for r in rows], ["maximize", "minimize"])
    return [r for r, k in zip(rows, keep) if k]


# --- noise measurement -----------------------------------------------------------------------------------------------

def matched_plan(ctx, offsets: dict[str, float], target: float, dense_macs: int) -> tuple[dict[str, float], float]:
    """A plan ``global + offset[unit]`` (clipped to the ratio range) whose MACs are nearest ``target`` x dense."""
    from moprune.measure import count_complexity
    from moprune.pruning import apply_plan

    r = ctx.spec.prune.ratio

    def plan_at(base: float) -> dict[str, float]:
        return {root: round(min(max(base + offsets[u.name], r.low), r.high), 6) for u in ctx.units for root in u.roots}

    def fraction(plan: dict[str, float]) -> float:
        return count_complexity(apply_plan(ctx.dense.model, plan, ctx.trace_inputs).model, ctx.trace_inputs).macs \
            / dense_macs

    lo, hi = r.low - max(offsets.values(), default=0.0), r.high - min(offsets.values(), default=0.0)
    best: tuple[float, dict[str, float], float] | None = None
    for _ in range(12):  # MACs fall as the base ratio rises: bisect, keep the closest probe
        mid = (lo + hi) / 2
        plan = plan_at(mid)
        frac = fraction(plan)
        if best is None or abs(frac - target) < best[0]:
            best = (abs(frac - target), plan, frac)
        lo, hi = (mid, hi) if frac > target else (lo, mid)
    assert best is not None
    return best[1], best[2]


def measure_noise(ctx, *, targets: list[float], plans: int, seeds: list[int], rng_seed: int, log) -> list[dict]:
    """For each MACs target: ``plans`` plans (uniform + random offsets) fine-tuned on the same ``seeds``."""
    from moprune.measure import count_complexity
    from moprune.search import refinetune_accuracy

    dense_macs = count_complexity(ctx.dense.model, ctx.trace_inputs).macs
    rng = random.Random(rng_seed)
    span = ctx.spec.prune.offset_max
    out = []
    for target in targets:
        t0 = time.perf_counter()
        offsets = [{u.name: 0.0 for u in ctx.units}]
        offsets += [{u.name: rng.uniform(-span, span) for u in ctx.units} for _ in range(plans - 1)]
        accs: dict[str, list[float]] = {}
        records = []
        for i, off in enumerate(offsets):
            plan, frac = matched_plan(ctx, off, target, dense_macs)
            label = "uniform" if i == 0 else f"offsets-{i}"
            accs[label] = [refinetune_accuracy(ctx, plan, s) for s in seeds]
            records.append({"label": label, "macs_fraction": frac, "plan": plan, "accuracies": accs[label]})
        result = {"target_macs_fraction": target, "seeds": seeds, "plans": records, **spread(accs)}
        out.append(result)
        log(f"  noise at {target:.2f} x dense MACs: {time.perf_counter() - t0:.0f} s")
    return out


# --- one method, one seed --------------------------------------------------------------------------------------------

class Reevaluator:
    """Fresh-seed accuracies of pruned shapes, shared by every method of one bench seed.

    Two plans that keep the same channels prune to the same model, so a shape re-evaluated for one method is not
    fine-tuned again for another: both get the very same numbers.
    """

    def __init__(self, ctx, seeds: list[int]):
        self.ctx, self.seeds = ctx, seeds
        self.cache: dict[str, list[float]] = {}
        self.finetunes = 0

    def __call__(self, plan: dict[str, float], channels: dict[str, int]) -> list[float]:
        from moprune.search import refinetune_accuracy

        key = json.dumps(channels, sort_keys=True)
        if key not in self.cache:
            self.cache[key] = [refinetune_accuracy(self.ctx, plan, s) for s in self.seeds]
            self.finetunes += len(self.seeds)
        return self.cache[key]


def run_method(method: Method, *, seed: int, n_trials: int, workdir: Path, settings: SearchSettings,
               reevaluator: Reevaluator, log) -> dict[str, Any]:
    """Run one study, re-evaluate its Pareto candidates, and compute its hypervolumes and front metrics."""
    import pandas as pd

    from moprune.pareto import hypervolume, trials_frame
    from moprune.record import baseline_of
    from moprune.search import run_study
    from moprune.spec import parse_spec

    storage = f"sqlite:///{workdir / f'{method.name}-s{seed}.db'}"  # workdir: this bench run's own folder
    spec = parse_spec(method_spec(method, seed=seed, n_trials=n_trials, storage=storage, settings=settings),
                      source=f"bench {method.name}")
    t0 = time.perf_counter()
    study = run_study(spec, storage=storage, progress=False)
    search_s = time.perf_counter() - t0
    objectives, directions = list(spec.objectives), spec.directions
    baseline = baseline_of(study).as_dict()
    drop = spec.constraints.max_accuracy_drop
    frame = trials_frame(study)
    done = frame[frame["state"] == "COMPLETE"]
    hv_searched = hypervolume(done, objectives, directions, baseline, drop)

    t1 = time.perf_counter()
    candidates = []
    for _, row in frame[frame["on_front"]].iterrows():  # the feasible front on the search's own values
        accs = reevaluator(row["plan"], row["channels"])
        candidates.append({"number": int(row["number"]), "accuracy_search": row["accuracy"], "accuracies_fresh": accs,
                           "accuracy": statistics.fmean(accs), "macs": row["macs"],
                           "macs_fraction": row["macs"] / baseline["macs"],
                           "speedup": row["speedup"], "plan": row["plan"]})
    reeval_s = time.perf_counter() - t1
    floor = baseline["accuracy"] - drop
    cand = pd.DataFrame(candidates, columns=["accuracy", "macs"])
    cand["feasible"] = cand["accuracy"] >= floor
    hv_reevaluated = hypervolume(cand, objectives, directions, baseline, drop)
    front = nondominated([c for c in candidates if c["accuracy"] >= floor])
    return {
        "method": method.name, "seed": seed, "trials": len(done), "failed": int((frame["state"] == "FAIL").sum()),
        "dense_accuracy": baseline["accuracy"], "dense_macs": baseline["macs"],
        "hv_searched": hv_searched, "hv_reevaluated": hv_reevaluated,
        "candidates": candidates, "front_points": len(front),
        "front_numbers": sorted(c["number"] for c in front),
        **front_metrics(candidates, dense_accuracy=baseline["accuracy"], max_accuracy_drop=drop),
        "search_s": search_s, "reevaluate_s": reeval_s,
    }


# --- report ----------------------------------------------------------------------------------------------------------

def _fmt(s: dict[str, Any], spec: str, suffix: str = "") -> str:
    if s["n"] == 0:
        return "-"
    return f"{s['median']:{spec}}{suffix} ({s['min']:{spec}}-{s['max']:{spec}})"


def method_table(runs: list[dict[str, Any]], methods: list[str]) -> tuple[list[dict[str, Any]], str]:
    """Per method over seeds: summaries (JSON) and a fixed-width table (median (min-max) over seeds)."""
    rows, lines = [], []
    header = (f"{'method':<14}{'HV re-evaluated':>24}{'HV mean':>9}{'HV as searched':>16}{'front pts':>11}"
              f"{'best acc @>=2x':>24}{'fastest in budget':>24}{'MACs in budget':>22}{'wall s':>9}")
    lines += [header, "-" * len(header)]
    for name in methods:
        mine = [r for r in runs if r["method"] == name]
        if not mine:
            continue
        s = {key: summary([r[key] for r in mine]) for key in
             ("hv_reevaluated", "hv_searched", "front_points", "best_accuracy_at_speedup", "fastest_in_budget",
              "min_macs_in_budget")}
        s["min_macs_fraction_in_budget"] = summary(
            [r["min_macs_in_budget"] / r["dense_macs"] if r["min_macs_in_budget"] else None for r in mine])
        s["wall_s"] = summary([r["search_s"] + r["reevaluate_s"] for r in mine])
        rows.append({"method": name, **s})
        lines.append(
            f"{name:<14}{_fmt(s['hv_reevaluated'], '.4f'):>24}{s['hv_reevaluated']['mean']:>9.4f}"
            f"{s['hv_searched']['mean']:>16.4f}{_fmt(s['front_points'], '.0f'):>11}"
            f"{_fmt(s['best_accuracy_at_speedup'], '.3f'):>24}{_fmt(s['fastest_in_budget'], '.2f', 'x'):>24}"
            f"{_fmt(s['min_macs_fraction_in_budget'], '.3f'):>22}{s['wall_s']['mean']:>9.0f}")
    return rows, "\n".join(lines)


def noise_lines(noise: list[dict[str, Any]]) -> list[str]:
    lines = []
    for n in noise:
        uni = next(p for p in n["plans"] if p["label"] == "uniform")
        means = [statistics.fmean(p["accuracies"]) for p in n["plans"]]
        lines.append(
            f"  at {n['target_macs_fraction']:.2f} x dense MACs ({len(n['plans'])} plans x {len(n['seeds'])} seeds): "
            f"one plan over seeds sd {n['within_sd']:.4f} (largest range {n['within_range_max']:.3f}; uniform "
            f"{min(uni['accuracies']):.3f}-{max(uni['accuracies']):.3f}); between plans sd {n['between_sd']:.4f} "
            f"(means {min(means):.3f}-{max(means):.3f}, range {n['between_range']:.3f}); "
            f"between/within {n['raw_ratio']:.1f} (of means: {n['ratio']:.1f})")
    return lines


# --- main ------------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials per study, every method alike (default 24)")
    parser.add_argument("--seeds", type=int, default=3, help="bench seeds 0..S-1 (default 3)")
    parser.add_argument("--reeval-seeds", type=int, default=3, help="fresh fine-tunes per Pareto candidate")
    parser.add_argument("--methods", default=",".join(m.name for m in METHODS),
                        help="comma-separated subset of " + ", ".join(m.name for m in METHODS))
    parser.add_argument("--starting", default=",".join(SearchSettings.seed_trials),
                        help="starting trials of the searches: search.seed_trials (dense, uniform, sensitivity)")
    parser.add_argument("--uniform-count", type=int, default=SearchSettings.uniform_count,
                        help="uniform starting trials of the searches (besides the dense one)")
    parser.add_argument("--population", type=int, default=SearchSettings.population_size, help="NSGA-II population")
    parser.add_argument("--offset-max", type=float, default=SearchSettings.offset_max, help="prune.offset_max")
    parser.add_argument("--noise-plans", type=int, default=6, help="plans of matched MACs in the noise measurement")
    parser.add_argument("--no-noise", action="store_true", help="skip the noise measurement")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 trials, 1 seed, 2 fresh seeds")
    parser.add_argument("--out", default="search_quality.json", help="JSON results (default ./search_quality.json)")
    parser.add_argument("--workdir", default=None, help="where studies and the dense-model cache go (default: a "
                                                        "temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.seeds, args.reeval_seeds, args.noise_plans = 8, 1, 2, 3
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in {m.name for m in METHODS}]
    if unknown:
        parser.error(f"--methods: unknown {unknown[0]!r}; choose from {', '.join(m.name for m in METHODS)}")
    methods = [m for m in METHODS if m.name in names]
    settings = SearchSettings(seed_trials=tuple(k.strip() for k in args.starting.split(",") if k.strip()),
                              uniform_count=args.uniform_count, population_size=args.population,
                              offset_max=args.offset_max)
    out_path = Path(args.out).resolve()

    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moprune-sq-")))
        old_cwd = Path.cwd()
        os.chdir(workdir)  # runs/ (the dense-model cache) lands here, not in the repository
        stack.callback(os.chdir, old_cwd)
        result = run_bench(methods, args, settings, workdir)
    out_path.write_text(json.dumps(result, indent=1))
    print(f"results written to {out_path}")
    return 0


def run_bench(methods: list[Method], args, settings: SearchSettings, workdir: Path) -> dict[str, Any]:
    import optuna
    import torch_pruning
    import torchvision

    from moprune import __version__
    from moprune.search.context import prepare_context
    from moprune.spec import parse_spec

    def log(msg: str) -> None:
        print(msg, flush=True)

    start = time.perf_counter()
    # studies in a folder of their own: a rerun with other settings must not resume (or trip over) old studies,
    # while the dense-model cache under runs/ is shared
    workdir = Path(tempfile.mkdtemp(prefix="studies-", dir=workdir))
    t = TASK
    log(f"task: {t['model']['arch'].partition(':')[2]} on digits at {t['data']['image_size']} px, "
        f"{t['finetune']['steps']}-step fine-tune (lr {t['finetune']['lr']}), objectives accuracy and MACs, "
        f"accuracy budget {t['constraints']['max_accuracy_drop']}; {args.trials} trials x {args.seeds} seeds x "
        f"{len(methods)} methods; {args.reeval_seeds} fresh fine-tunes per Pareto candidate")
    log(f"searches start from {list(settings.seed_trials)} (uniform_count {settings.uniform_count}); NSGA-II "
        f"population {settings.population_size}; offset_max {settings.offset_max}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads")
    runs: list[dict[str, Any]] = []
    noise: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        # the seed's data, dense model and groups; re-evaluation needs no more (the fine-tune is every method's)
        spec = parse_spec(method_spec(Method("context", "random", "group"), seed=seed, n_trials=args.trials,
                                      storage="sqlite:///:memory:", settings=settings))
        ctx = prepare_context(spec)
        if seed == 0 and not args.no_noise:
            log("noise: the same plan over fine-tune seeds, and plans of matched MACs (seed 0's dense model)")
            noise = measure_noise(ctx, targets=[0.1, 0.25], plans=args.noise_plans,
                                  seeds=fresh_seeds(99, 3), rng_seed=0, log=log)
            for line in noise_lines(noise):
                log(line)
        reevaluator = Reevaluator(ctx, fresh_seeds(seed, args.reeval_seeds))
        for method in methods:
            run = run_method(method, seed=seed, n_trials=args.trials, workdir=workdir, settings=settings,
                             reevaluator=reevaluator, log=log)
            runs.append(run)
            log(f"seed {seed} {method.name:<13} HV {run['hv_reevaluated']:.4f} re-evaluated "
                f"({run['hv_searched']:.4f} as searched), {run['front_points']} front points of "
                f"{len(run['candidates'])} candidates, {run['search_s']:.0f} s search + {run['reevaluate_s']:.0f} s "
                f"re-evaluation  [{time.perf_counter() - start:.0f} s]")
    wall = time.perf_counter() - start
    rows, table = method_table(runs, [m.name for m in methods])
    log("")
    log("noise (accuracy after the fine-tune):")
    for line in noise_lines(noise):
        log(line)
    log(f"\nmethods: median (min-max) over {args.seeds} seeds; HV of the Pareto candidates' fresh-seed means "
        f"(reference: {TASK['constraints']['max_accuracy_drop'] * 2:.2f} below dense accuracy, 1.1 x dense MACs); "
        "speedups measured per trial (paired, batch "
        f"{TASK['measure']['batch_size']}); wall s = search + re-evaluation per study")
    log(table)
    log(f"total wall time {wall / 60:.1f} min")
    return {
        "task": TASK, "settings": asdict(settings), "trials": args.trials, "seeds": args.seeds,
        "reeval_seeds": args.reeval_seeds, "methods": [asdict(m) for m in methods], "noise": noise,
        "runs": runs, "summary": rows, "table": table, "wall_s": wall,
        "environment": {"moprune": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                        "torch_pruning": torch_pruning.__version__, "optuna": optuna.__version__,
                        "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
    }


if __name__ == "__main__":
    sys.exit(main())
