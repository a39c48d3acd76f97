"""The Optuna study: checks before any compute, creating it once (baseline, starting plans), loading it again.

A study is created once, by one process, with everything that can fail computed first; every later run, worker or
command loads it and checks that the spec still matches what its trials mean.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

from ..errors import MopruneError, SpecError
from ..pruning import nearest_params, plan_params
from ..record import SCREEN_SUFFIX, Baseline, TrialRecord, baseline_of, spec_of, write_baseline, write_study
from ..spec import SAMPLER_CLASSES, StudySpec
from ..train import CACHE_DIR
from .artifacts import artifacts_dir
from .context import StudyContext, environment
from .preflight import preflight
from .sensitivity import sensitivity_plans, sensitivity_scan
from .storage import journal_path, make_storage as _make_storage, redact, sqlite_path

log = logging.getLogger(__name__)

# Keys that may change between runs of one study without changing what its trials mean.
_RESUMABLE_KEYS = {"measure": {"threads"}, "search": {"n_trials", "timeout_s", "heartbeat_s", "grace_s"}}
# How long a process waits for a study another process is creating (it writes `baseline` last) before giving up.
CREATION_WAIT_S = 60.0


def make_storage(url: str, spec: StudySpec | None = None) -> optuna.storages.BaseStorage:
    """The storage at ``url`` with the spec's heartbeat settings (``search.heartbeat_s`` / ``grace_s``)."""
    s = (spec or StudySpec()).search
    return _make_storage(url, heartbeat_s=s.heartbeat_s, grace_s=s.grace_s)


#: Optuna's TPESampler and GPSampler draw this many plans at random before they model anything.
STARTUP_TRIALS = 10


def make_sampler(spec: StudySpec, seed: int, *, queued: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler with its options; a bad option value is a spec error (exit 2), found before any compute.

    ``queued``: plans enqueued ahead of the sampler's own (the screen's sweeps). TPE and GP count every finished
    plan toward their random start, so without it the sweeps would be their whole exploration: one corner of the
    space (every offset zero, no block dropped), from which TPE learned to leave every block in place (ResNet-20,
    2026-12-04: the screen's sampler proposed plans dropping 0-1 of 7 blocks, while TPE without the screen, after
    its random start, settled on 3). The sampler's own random start comes after them.
    """
    s = spec.search
    options: dict[str, Any] = {"seed": seed}
    if s.sampler in ("nsga2", "nsga3"):
        options["population_size"] = s.population_size
    if s.sampler == "tpe":
        options["multivariate"] = True  # ratios interact: the total sparsity is what matters most
    if s.sampler in ("tpe", "gp") and queued:
        options["n_startup_trials"] = STARTUP_TRIALS + queued
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


def open_screen_study(spec: StudySpec, storage: str | None = None) -> optuna.Study | None:
    """The screened plans of an existing study (``moprune.search.screen``), or None when it has screened none."""
    url = storage or spec.storage_url
    store = make_storage(url, spec)
    if spec.name + SCREEN_SUFFIX not in optuna.study.get_all_study_names(store):
        return None
    return optuna.load_study(study_name=spec.name + SCREEN_SUFFIX, storage=store)


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


def coarse_to_fine(n: int) -> list[int]:
    """0..n-1 in the order that halves the largest gap each time: both ends, the middle, the quarters, ...

    Starting plans run in this order, so a study stopped early (``timeout_s``) has swept the whole range coarsely
    rather than half of it finely.
    """
    order = [0, n - 1] if n > 1 else [0]
    gaps = [(0, n - 1)]
    while len(order) < n:
        lo, hi = max(gaps, key=lambda g: (g[1] - g[0], -g[0]))
        gaps.remove((lo, hi))
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        order.append(mid)
        gaps += [(lo, mid), (mid, hi)]
    return order


def seed_trials(spec: StudySpec, ctx: StudyContext, baseline: Baseline
                ) -> tuple[list[tuple[dict[str, float], TrialRecord]], list[dict[str, Any]]]:
    """The starting trials (parameters, and the record that says what each is), and the sensitivity records.

    ``dense``: nothing pruned; ``uniform``: ``uniform_count`` evenly spaced global ratios including both ends;
    ``global``: Torch-Pruning's global pruning at the same ratios but none (channels ranked across all groups, the
    other thing a user would do instead of a search); ``sensitivity``: plans that prune harder where the scan found
    accuracy cheapest per millisecond saved. With ``search.screen.starts: screen`` the uniform and global plans are
    left to the screen's sweep: a fine-tune is spent on one only when the screen promotes it.
    """
    r, prune = spec.prune.ratio, spec.prune
    n = spec.search.uniform_count
    # screened starts: the sweeps are queued in the screen study (moprune.search.proposals.queue_sweeps) instead
    screened_starts = spec.search.screen.plans > 0 and spec.search.screen.starts == "screen"
    levels = [r.low + (r.high - r.low) * k / (n - 1) for k in coarse_to_fine(n)]
    out: list[tuple[dict[str, float], TrialRecord]] = []
    records: list[dict[str, Any]] = []
    for kind in spec.search.seed_trials:
        if kind == "dense":  # the least pruned plan of the space: the dense model when ratio.low is 0
            label = "dense" if r.low == 0 else f"uniform {r.low:.2f}"
            out.append((plan_params(ctx.units, prune, r.low, blocks=ctx.blocks), TrialRecord(start=label)))
        elif kind in ("uniform", "global") and screened_starts:
            continue
        elif kind == "uniform":
            out += [(plan_params(ctx.units, prune, level, blocks=ctx.blocks), TrialRecord(start=f"uniform {level:.2f}"))
                    for level in levels]
        elif kind == "global":
            for level in (lv for lv in levels if lv > 0):
                plan = ctx.global_plan(level)
                out.append((nearest_params(ctx.units, prune, level, plan, blocks=ctx.blocks),
                            TrialRecord(start=f"global {level:.2f}", fixed_plan=plan)))
        elif kind == "sensitivity" and len(ctx.units) > 1:
            scan = sensitivity_scan(ctx, baseline)
            records = [rec.as_dict() for rec in scan]
            chosen = sorted(levels)[1:-1] or sorted(levels)
            out += [(params, TrialRecord(start=f"sensitivity {level:.2f}"))
                    for params, level in zip(sensitivity_plans(scan, ctx.units, prune, chosen, ctx.blocks),
                                             chosen)]
    unique: list[tuple[dict[str, float], TrialRecord]] = []
    for params, record in out:
        if all(params != p or record.fixed_plan != q.fixed_plan for p, q in unique):
            unique.append((params, record))
    return unique, records


def create_or_load(spec: StudySpec, ctx: StudyContext, storage: optuna.storages.BaseStorage
                   ) -> tuple[optuna.Study, Baseline]:
    """Create the study once (user attrs, metric names, seed trials) or load it and check it matches the spec.

    What can fail or take long (baseline, seed plans, a sensitivity scan) is computed before the study exists; a
    failure while it is being filled in deletes it again. ``baseline`` is written last: a study without it is being
    created by another process right now (wait for it), or was left by a creator that was killed.
    """
    if spec.name in optuna.study.get_all_study_names(storage):
        return _load_created(spec, storage)
    baseline = ctx.baseline()
    params_list, sensitivity = seed_trials(spec, ctx, baseline)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                    load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it between our check and now
        return _load_created(spec, storage)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.objectives))
        write_study(study, spec=spec.model_dump(mode="json"), environment=environment(ctx.device),
                    sensitivity=sensitivity)
        for params, record in params_list:
            # not skip_if_exists: a global plan's nearest parameters may be a uniform plan's, and both must run
            study.enqueue_trial(params, user_attrs=record.attrs())
        write_baseline(study, baseline)
    except BaseException:
        try:
            optuna.delete_study(study_name=spec.name, storage=storage)  # no half-created study
        except Exception:
            pass
        raise
    log.info("created study %r: dense accuracy %.4f, latency %.2f ms, %.1fM MACs, %d search units", spec.name,
             baseline.accuracy, baseline.latency_ms, baseline.macs / 1e6, len(ctx.units))
    return study, baseline


def _load_created(spec: StudySpec, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, Baseline]:
    deadline = time.monotonic() + CREATION_WAIT_S
    study = optuna.load_study(study_name=spec.name, storage=storage)
    while baseline_of(study) is None:
        if time.monotonic() > deadline:
            where = redact(getattr(storage, "url", None) or spec.storage_url)
            raise MopruneError(
                f"study {spec.name!r} in {where} was never completely created (it has no dense baseline: the "
                f"process creating it was stopped); remove it with `optuna delete-study --storage {where} "
                f"--study-name {spec.name}` and run again"
            )
        time.sleep(0.5)
        study = optuna.load_study(study_name=spec.name, storage=storage)
    stored = spec_of(study)
    if stored is not None:
        changed = _changed_keys(_comparable(StudySpec.model_validate(stored)), _comparable(spec))
        if changed:
            raise SpecError(
                f"study {spec.name!r} already exists with a different {', '.join(changed)}; its trials would "
                "not be comparable: give the spec a new name, or restore those keys"
            )
    baseline = baseline_of(study)
    assert baseline is not None
    return study, baseline
