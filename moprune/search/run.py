"""Run a study: create or resume it, then run trials until the spec's budget of finished trials is reached.

This is the single-process path; ``workers.py`` starts several processes that each run ``run_study`` on one study.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
import torch
from optuna.trial import FrozenTrial

from ..errors import TrialFailed
from ..spec import StudySpec
from ..torch_state import torch_threads
from .artifacts import WeightKeeper, artifacts_dir
from .context import StudyContext, prepare_context
from .loop import Progress, finished_count, requeue_interrupted, run_trials
from .objective import Objective
from .proposals import sweep_levels
from .reevaluate import reevaluate_front
from .screen import run_screened
from .storage import claim_for, has_heartbeat
from .study import create_or_load, make_sampler, opened_storage, prepare_run

log = logging.getLogger(__name__)


def session_seed(seed: int, done: int, worker: int = 0) -> int:
    """A fresh sampler seed per session and worker: a resumed NSGA-II must not replay the first session's plans,
    and two workers must not propose the same ones."""
    return seed * 7919 + done + 104_729 * worker


def run_study(spec: StudySpec, *, storage: str | None = None, n_trials: int | None = None,
              timeout_s: float | None = None, progress: bool = True, worker: int | None = None,
              device: str | None = None) -> optuna.Study:
    """Create or resume the study and run trials until ``n_trials`` trials count (in all workers together).

    The order makes failures cheap and clean: checks of the machine and folders, then the storage, then data and
    dense model, and only then the study, so a bad data root, storage URL, checkpoint or read-only folder leaves no
    study behind. ``worker`` (with ``device``) is set in the processes of ``moprune run --workers``: their parent
    created the study and re-queued interrupted plans, and re-evaluates the front itself.
    Torch's thread count is ``measure.threads`` for the run and restored after it. Messages go to the
    ``moprune`` loggers; the trials' progress lines (``progress``) to stderr.
    """
    with torch_threads(spec.measure.threads):
        return _run_study(spec, storage=storage, n_trials=n_trials, timeout_s=timeout_s, progress=progress,
                          worker=worker, device=device)


def _run_study(spec: StudySpec, *, storage: str | None, n_trials: int | None, timeout_s: float | None,
               progress: bool, worker: int | None, device: str | None) -> optuna.Study:
    start = time.monotonic()
    url = storage or spec.storage_url
    target = n_trials or spec.search.n_trials
    timeout_s = timeout_s or spec.search.timeout_s
    prepare_run(spec, url)
    with opened_storage(spec, url) as store:
        ctx = prepare_context(spec, device=torch.device(device) if device else None)
        study, baseline = create_or_load(spec, ctx, store)
    if worker is None:
        requeue_interrupted(study)
    done = finished_count(study)
    if done >= target:
        log.info("study %r already has %d finished trials (target %d); nothing to run", spec.name, done, target)
        if worker is None:
            reevaluate_if_done(study, ctx, target)
        return study
    study.sampler = make_sampler(spec, seed=session_seed(spec.seed, done, worker or 0))
    keeper = WeightKeeper(artifacts_dir(spec), spec.search.keep_weights, spec)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [keeper.after_trial]
    bar = Progress(target, done, list(spec.objectives)) if progress else None
    if bar:
        callbacks.append(bar)
    objective = Objective(ctx, baseline, on_trained=keeper.on_trained)
    claim = claim_for(url, store, spec.name)

    def run_until(count: int) -> None:
        run_trials(study, objective, target=count, claim=claim, callbacks=callbacks, catch=(TrialFailed,),
                   deadline=start + timeout_s if timeout_s else None, wait_for_others=has_heartbeat(store))

    try:
        if spec.search.screen.plans > 0 and worker is None:
            run_screened(study, ctx, store, target=target, run_until=run_until,
                         sampler=make_sampler(spec, seed=session_seed(spec.seed, done, 1),
                                              queued=len(sweep_levels(spec))),
                         baseline_latency_ms=baseline.latency_ms)
        else:
            run_until(target)
    finally:
        if bar:
            bar.close()
    log.info("%d finished trials in %r (%.0f s this run)", finished_count(study), spec.name,
             time.monotonic() - start)
    if worker is None:
        reevaluate_if_done(study, ctx, target, keeper)
    return study


def reevaluate_if_done(study: optuna.Study, ctx: StudyContext, target: int, keeper: WeightKeeper | None = None
                       ) -> None:
    """Once the study has its trials (not after a timeout), re-evaluate the front on fresh seeds if asked.

    The front can change on the re-evaluated means; the weight keeper then drops what is no longer on it.
    """
    r = ctx.spec.search.reevaluate
    if r.top > 0 and finished_count(study) >= target:
        reevaluate_front(study, ctx, top=r.top, seeds=r.seeds)
        (keeper or WeightKeeper(artifacts_dir(ctx.spec), ctx.spec.search.keep_weights, ctx.spec)).prune(study)
