"""Create or resume the Optuna study and run trials until the spec's budget of finished trials is reached."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .artifacts import WeightKeeper, artifacts_dir
from .context import Baseline, StudyContext, environment, prepare_context
from .errors import MopruneError, SpecError, TrialFailed
from .objective import Objective, trial_summary
from .reevaluate import reevaluate_front
from .sensitivity import sensitivity_plans, sensitivity_scan
from .space import plan_params
from .spec import SAMPLER_CLASSES, StudySpec, preflight

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# Keys that may change between runs of one study without changing what its trials mean.
_RESUMABLE_KEYS = {"measure": {"threads"}, "search": {"n_trials", "timeout_s"}}

# Optuna logs every failed trial with its traceback; moprune's progress line reports the recorded fail_reason.
optuna.logging.set_verbosity(optuna.logging.ERROR)



def make_storage(url: str) -> optuna.storages.BaseStorage:
    """RDB storages (SQLite, PostgreSQL, MySQL) with heartbeats, so a trial whose worker died is failed and retried."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
    if "://" not in url:
        raise SpecError(f"storage: {url!r} is not a storage URL; use e.g. sqlite:///runs/study.db or postgresql://...")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=30, grace_period=120,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
    except Exception as exc:
        raise MopruneError(f"cannot open storage {url!r}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def make_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler with its options; a bad option value is a spec error (exit 2), found before any compute."""
    s = spec.search
    options: dict[str, Any] = {"seed": seed}
    if s.sampler in ("nsga2", "nsga3"):
        options["population_size"] = s.population_size
    if s.sampler == "tpe":
        options["multivariate"] = True  # ratios interact: the total sparsity is what matters most
    options.update(s.sampler_options)
    cls = getattr(optuna.samplers, SAMPLER_CLASSES[s.sampler])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**options)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"search.sampler_options: {SAMPLER_CLASSES[s.sampler]} rejects {s.sampler_options}: {exc}"
                        ) from None


def _comparable(spec: StudySpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    data.pop("storage")
    for section, keys in _RESUMABLE_KEYS.items():
        for key in keys:
            data[section].pop(key, None)
    return data


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys


def open_study(spec: StudySpec, storage: str | None = None) -> optuna.Study:
    """Load an existing study (for status, pareto, dashboard, export); exits 2 when there is none."""
    url = storage or spec.storage_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise SpecError(f"no study database at {url.removeprefix('sqlite:///')}; run `moprune run` with this spec first")
    try:
        return optuna.load_study(study_name=spec.name, storage=make_storage(url))
    except KeyError:
        raise SpecError(f"no study named {spec.name!r} in {url}; run `moprune run` with this spec first") from None


def seed_trials(spec: StudySpec, ctx: StudyContext, baseline: Baseline, *, log=print
                ) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    """Parameters of the starting trials, and the sensitivity records when a scan was asked for.

    ``dense``: nothing pruned; ``uniform``: ``uniform_count`` evenly spaced global ratios including both ends;
    ``sensitivity``: plans that prune harder where the scan found accuracy cheapest per millisecond saved.
    """
    r, prune = spec.prune.ratio, spec.prune
    n = spec.search.uniform_count
    levels = [r.low + (r.high - r.low) * k / (n - 1) for k in range(n)]
    out: list[dict[str, float]] = []
    records: list[dict[str, Any]] = []
    for kind in spec.search.seed_trials:
        if kind == "dense":
            out.append(plan_params(ctx.units, prune, r.low))
        elif kind == "uniform":
            out += [plan_params(ctx.units, prune, level) for level in levels]
        elif kind == "sensitivity" and len(ctx.units) > 1:
            scan = sensitivity_scan(ctx, baseline, log=log)
            records = [rec.as_dict() for rec in scan]
            out += sensitivity_plans(scan, ctx.units, prune, levels[1:-1] or levels)
    unique: list[dict[str, float]] = []
    for params in out:
        if params not in unique:
            unique.append(params)
    return unique, records


def create_or_load(spec: StudySpec, ctx: StudyContext, storage: optuna.storages.BaseStorage,
                   *, log: Callable[[str], None] = print) -> tuple[optuna.Study, Baseline]:
    """Create the study once (user attrs, metric names, seed trials) or load it and check it matches the spec."""
    names = optuna.study.get_all_study_names(storage)
    if spec.name in names:
        study = optuna.load_study(study_name=spec.name, storage=storage)
        stored = study.user_attrs.get("spec")
        if stored is not None:
            old = _comparable(StudySpec.model_validate(stored))
            changed = _changed_keys(old, _comparable(spec))
            if changed:
                raise SpecError(
                    f"study {spec.name!r} already exists with a different {', '.join(changed)}; its trials would "
                    "not be comparable: give the spec a new name, or restore those keys"
                )
        baseline = Baseline(**study.user_attrs["baseline"])
        return study, baseline
    baseline = ctx.baseline()
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                    load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it between our check and now
        return create_or_load(spec, ctx, storage, log=log)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(spec.objectives))
    study.set_user_attr("spec", spec.model_dump(mode="json"))
    study.set_user_attr("baseline", baseline.as_dict())
    study.set_user_attr("environment", environment(ctx.device))
    params_list, sensitivity = seed_trials(spec, ctx, baseline, log=log)
    if sensitivity:
        study.set_user_attr("sensitivity", sensitivity)
    for params in params_list:
        study.enqueue_trial(params, skip_if_exists=True)
    log(f"created study {spec.name!r}: dense accuracy {baseline.accuracy:.4f}, latency {baseline.latency_ms:.2f} ms, "
        f"{baseline.macs / 1e6:.1f}M MACs, {len(ctx.units)} search units")
    return study, baseline


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class Progress:
    """One line per finished trial (a tqdm bar when attached to a terminal)."""

    def __init__(self, total: int, done: int, objectives: list[str], stream=sys.stderr):
        self.total, self.objectives, self.stream = total, objectives, stream
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, file=stream, unit="trial", dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = finished_count(study)
        if trial.state == TrialState.COMPLETE:
            summary = trial_summary(dict(zip(self.objectives, trial.values)))
            speed = trial.user_attrs.get("speedup")
            if speed:
                summary += f"  ({speed:.2f}x)"
            feasible = all(c <= 0 for c in trial.constraints.values())
            summary += "" if feasible else "  infeasible"
        else:
            summary = f"{trial.state.name}: {trial.user_attrs.get('fail_reason', 'no reason recorded')}"
        secs = sum((trial.user_attrs.get("timings_s") or {}).values())
        line = f"trial {trial.number:>3}  {summary}  [{secs:.1f} s]"
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(line, refresh=True)
        else:
            print(f"[{done}/{self.total}] {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_study(spec: StudySpec, *, storage: str | None = None, n_trials: int | None = None,
              timeout_s: float | None = None, progress: bool = True, log: Callable[[str], None] = print
              ) -> optuna.Study:
    """Create or resume the study and run trials until ``n_trials`` trials have finished in total."""
    preflight(spec)
    make_sampler(spec, seed=spec.seed)  # validates sampler options before any compute
    target = n_trials or spec.search.n_trials
    timeout_s = timeout_s or spec.search.timeout_s
    store = make_storage(storage or spec.storage_url)
    ctx = prepare_context(spec, log=log)
    study, baseline = create_or_load(spec, ctx, store, log=log)
    done = finished_count(study)
    if done >= target:
        log(f"study {spec.name!r} already has {done} finished trials (target {target}); nothing to run")
        _reevaluate(study, ctx, spec, target, log)
        return study
    # A fresh sampler seed per session: a resumed NSGA-II must not replay the proposals of the first session.
    study.sampler = make_sampler(spec, seed=spec.seed * 7919 + done)
    keeper = WeightKeeper(artifacts_dir(spec), spec.search.keep_weights)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [
        optuna.study.MaxTrialsCallback(target, states=FINISHED), keeper.after_trial]
    bar = Progress(target, done, list(spec.objectives)) if progress else None
    if bar:
        callbacks.append(bar)
    start = time.perf_counter()
    try:
        study.optimize(Objective(ctx, baseline, on_trained=keeper.on_trained), n_trials=target - done, timeout=timeout_s,
                       catch=(TrialFailed,), callbacks=callbacks)
    finally:
        if bar:
            bar.close()
    log(f"{finished_count(study)} finished trials in {spec.name!r} ({time.perf_counter() - start:.0f} s this run)")
    _reevaluate(study, ctx, spec, target, log)
    return study


def _reevaluate(study: optuna.Study, ctx: StudyContext, spec: StudySpec, target: int,
                log: Callable[[str], None]) -> None:
    """Once the study has its trials (not after a timeout), re-evaluate the front on fresh seeds if asked."""
    r = spec.search.reevaluate
    if r.top > 0 and finished_count(study) >= target:
        reevaluate_front(study, ctx, top=r.top, seeds=r.seeds, log=log)
