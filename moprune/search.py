"""Create or resume the Optuna study and run trials until the spec's budget of finished trials is reached.

This is the single-process path; ``workers.py`` starts several processes that each run ``run_study`` on one study.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from .artifacts import WeightKeeper, artifacts_dir
from .context import Baseline, StudyContext, environment, prepare_context
from .errors import MopruneError, SpecError, TrialFailed
from .objective import Objective
from .reevaluate import reevaluate_front
from .sensitivity import sensitivity_plans, sensitivity_scan
from .space import plan_params
from .spec import SAMPLER_CLASSES, StudySpec, preflight
from .storage import claim_for, has_heartbeat, journal_path, make_storage as _make_storage, redact, sqlite_path
from .trials import Progress, finished_count, requeue_interrupted, run_trials

__all__ = ["Progress", "create_or_load", "finished_count", "make_storage", "open_study", "run_study"]

# Keys that may change between runs of one study without changing what its trials mean.
_RESUMABLE_KEYS = {"measure": {"threads"}, "search": {"n_trials", "timeout_s", "heartbeat_s", "grace_s"}}
# How long a process waits for a study another process is creating (it writes `baseline` last) before giving up.
CREATION_WAIT_S = 60.0

# Optuna logs every failed trial with its traceback; moprune's progress line reports the recorded fail_reason.
optuna.logging.set_verbosity(optuna.logging.ERROR)


def make_storage(url: str, spec: StudySpec | None = None) -> optuna.storages.BaseStorage:
    """The storage at ``url`` with the spec's heartbeat settings (``search.heartbeat_s`` / ``grace_s``)."""
    s = (spec or StudySpec()).search
    return _make_storage(url, heartbeat_s=s.heartbeat_s, grace_s=s.grace_s)


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
    file = sqlite_path(url) or journal_path(url)
    if file is not None and not file.is_file():
        raise SpecError(f"no study database at {file}; run `moprune run` with this spec first")
    try:
        return optuna.load_study(study_name=spec.name, storage=make_storage(url, spec))
    except KeyError:
        raise SpecError(f"no study named {spec.name!r} in {redact(url)}; run `moprune run` with this spec first"
                        ) from None


def check_writable(spec: StudySpec, url: str) -> None:
    """Every folder this run writes to must take a new file, checked before any compute (exit 2 otherwise).

    A temporary file is the only honest test: permission bits do not stop root, and read-only mounts stop everyone.
    """
    places: list[tuple[Path, str]] = []
    file = sqlite_path(url) or journal_path(url)
    if file is not None:
        places.append((file.parent, f"the study's storage {file}: run from a folder you can write to, or point "
                                    "storage (or --storage) at a writable place"))
    if spec.search.keep_weights != "none":
        places.append((artifacts_dir(spec), "the kept weights: set search.artifacts_dir to a writable folder (or "
                                            "search.keep_weights: none)"))
    if spec.model.checkpoint is None:
        from .models import CACHE_DIR

        places.append((CACHE_DIR, f"the pretrained dense model's cache {CACHE_DIR}: run from a folder you can "
                                  "write to, or set model.checkpoint"))
    for folder, what in places:
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, "Not a directory")
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            raise SpecError(f"cannot write to {existing} ({exc.strerror}), needed for {what}") from None


@contextmanager
def opened_storage(spec: StudySpec, url: str) -> Iterator[optuna.storages.BaseStorage]:
    """Open the storage for a run; if what follows fails before the study exists, remove a SQLite file made here.

    So a corrupt checkpoint or a Ctrl-C during pretraining leaves nothing behind but what was there before.
    """
    file = sqlite_path(url)
    fresh = file is not None and not file.exists()
    store = make_storage(url, spec)
    try:
        yield store
    except BaseException:
        if fresh and file is not None:
            try:
                empty = not optuna.study.get_all_study_names(store)
            except Exception:
                empty = False
            if empty:
                store.engine.dispose()
                file.unlink(missing_ok=True)
        raise


def prepare_run(spec: StudySpec, url: str) -> None:
    """The checks of ``moprune run`` that need no compute: machine (device, files, meters), folders, sampler."""
    preflight(spec)
    check_writable(spec, url)
    make_sampler(spec, seed=spec.seed)  # validates sampler options


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
    """Create the study once (user attrs, metric names, seed trials) or load it and check it matches the spec.

    What can fail or take long (baseline, seed plans, a sensitivity scan) is computed before the study exists; a
    failure while it is being filled in deletes it again. ``baseline`` is written last: a study without it is being
    created by another process right now (wait for it), or was left by a creator that was killed.
    """
    if spec.name in optuna.study.get_all_study_names(storage):
        return _load_created(spec, storage)
    baseline = ctx.baseline()
    params_list, sensitivity = seed_trials(spec, ctx, baseline, log=log)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                    load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it between our check and now
        return _load_created(spec, storage)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.objectives))
        study.set_user_attr("spec", spec.model_dump(mode="json"))
        study.set_user_attr("environment", environment(ctx.device))
        if sensitivity:
            study.set_user_attr("sensitivity", sensitivity)
        for params in params_list:
            study.enqueue_trial(params, skip_if_exists=True)
        study.set_user_attr("baseline", baseline.as_dict())
    except BaseException:
        try:
            optuna.delete_study(study_name=spec.name, storage=storage)  # no half-created study
        except Exception:
            pass
        raise
    log(f"created study {spec.name!r}: dense accuracy {baseline.accuracy:.4f}, latency {baseline.latency_ms:.2f} ms, "
        f"{baseline.macs / 1e6:.1f}M MACs, {len(ctx.units)} search units")
    return study, baseline


def _load_created(spec: StudySpec, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, Baseline]:
    deadline = time.monotonic() + CREATION_WAIT_S
    study = optuna.load_study(study_name=spec.name, storage=storage)
    while "baseline" not in study.user_attrs:
        if time.monotonic() > deadline:
            where = redact(getattr(storage, "url", None) or spec.storage_url)
            raise MopruneError(
                f"study {spec.name!r} in {where} was never completely created (it has no dense baseline: the "
                f"process creating it was stopped); remove it with `optuna delete-study --storage {where} "
                f"--study-name {spec.name}` and run again"
            )
        time.sleep(0.5)
        study = optuna.load_study(study_name=spec.name, storage=storage)
    stored = study.user_attrs.get("spec")
    if stored is not None:
        changed = _changed_keys(_comparable(StudySpec.model_validate(stored)), _comparable(spec))
        if changed:
            raise SpecError(
                f"study {spec.name!r} already exists with a different {', '.join(changed)}; its trials would "
                "not be comparable: give the spec a new name, or restore those keys"
            )
    return study, Baseline(**study.user_attrs["baseline"])


def session_seed(seed: int, done: int, worker: int = 0) -> int:
    """A fresh sampler seed per session and worker: a resumed NSGA-II must not replay the first session's plans,
    and two workers must not propose the same ones."""
    return seed * 7919 + done + 104_729 * worker


def run_study(spec: StudySpec, *, storage: str | None = None, n_trials: int | None = None,
              timeout_s: float | None = None, progress: bool = True, log: Callable[[str], None] = print,
              worker: int | None = None, device: str | None = None) -> optuna.Study:
    """Create or resume the study and run trials until ``n_trials`` trials count (in all workers together).

    The order makes failures cheap and clean: checks of the machine and folders, then the storage, then data and
    dense model, and only then the study, so a bad data root, storage URL, checkpoint or read-only folder leaves no
    study behind. ``worker`` (with ``device``) is set in the processes of ``moprune run --workers``: their parent
    created the study and re-queued interrupted plans, and re-evaluates the front itself.
    """
    start = time.monotonic()
    url = storage or spec.storage_url
    target = n_trials or spec.search.n_trials
    timeout_s = timeout_s or spec.search.timeout_s
    prepare_run(spec, url)
    with opened_storage(spec, url) as store:
        ctx = prepare_context(spec, device=torch.device(device) if device else None, log=log)
        study, baseline = create_or_load(spec, ctx, store, log=log)
    if worker is None:
        requeue_interrupted(study, log=log)
    done = finished_count(study)
    if done >= target:
        log(f"study {spec.name!r} already has {done} finished trials (target {target}); nothing to run")
        if worker is None:
            reevaluate_if_done(study, ctx, spec, target, log)
        return study
    study.sampler = make_sampler(spec, seed=session_seed(spec.seed, done, worker or 0))
    keeper = WeightKeeper(artifacts_dir(spec), spec.search.keep_weights)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [keeper.after_trial]
    bar = Progress(target, done, list(spec.objectives)) if progress else None
    if bar:
        callbacks.append(bar)
    try:
        run_trials(study, Objective(ctx, baseline, on_trained=keeper.on_trained), target=target,
                   claim=claim_for(url, store, spec.name), callbacks=callbacks, catch=(TrialFailed,),
                   deadline=start + timeout_s if timeout_s else None, wait_for_others=has_heartbeat(store), log=log)
    finally:
        if bar:
            bar.close()
    log(f"{finished_count(study)} finished trials in {spec.name!r} ({time.monotonic() - start:.0f} s this run)")
    if worker is None:
        reevaluate_if_done(study, ctx, spec, target, log)
    return study


def reevaluate_if_done(study: optuna.Study, ctx: StudyContext, spec: StudySpec, target: int,
                       log: Callable[[str], None]) -> None:
    """Once the study has its trials (not after a timeout), re-evaluate the front on fresh seeds if asked."""
    r = spec.search.reevaluate
    if r.top > 0 and finished_count(study) >= target:
        reevaluate_front(study, ctx, top=r.top, seeds=r.seeds, log=log)
