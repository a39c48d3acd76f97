"""Which finished trials count toward ``n_trials``, and the loop that runs trials until that many count.

A trial that failed for a reason outside its plan -- interrupted (Ctrl-C, SIGTERM) or its worker died (no heartbeat
within the grace period) -- says nothing about the plan: it does not count, and its plan runs again (stale trials
are queued by Optuna's ``RetryHeartbeatStaleTrialCallback``, interrupted ones by ``requeue_interrupted`` on resume).
``run_study``, the parent of ``moprune run --workers`` and ``moprune status`` all count with
``moprune.record.counts_as_result``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..record import INTERRUPTED, RERUN_REASONS, TrialRecord, counts_as_result, fail_reason, requeued, retry_of
from .interrupts import Interrupts, held_interrupts
from .storage import Claim, fail_stale_trials

log = logging.getLogger(__name__)

def tally(trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """(trials that count, trials running now)."""
    counted = sum(1 for t in trials if counts_as_result(t))
    return counted, sum(1 for t in trials if t.state == TrialState.RUNNING)


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward ``n_trials``."""
    return tally(study.get_trials(deepcopy=False))[0]


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue the plan of every interrupted trial (Ctrl-C, a lost GPU) not queued yet; returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    queued = {TrialRecord.of(t).retry_of for t in trials}
    numbers = []
    for t in trials:
        if t.state == TrialState.FAIL and fail_reason(t) in RERUN_REASONS and t.number not in queued and t.params:
            study.enqueue_trial(dict(t.params), user_attrs=requeued(t).attrs())
            numbers.append(t.number)
    if numbers:
        log.info("re-queued the plans of interrupted trial(s) %s", ", ".join(map(str, numbers)))
    return numbers


def trial_summary(values: dict[str, Any] | None) -> str:
    """A short human line of a trial's objective values, for progress output."""
    if not values:
        return ""
    parts = []
    for name, value in values.items():
        if name == "accuracy":
            parts.append(f"acc {value:.3f}")
        elif name == "latency_ms":
            parts.append(f"{value:.2f} ms")
        elif name == "energy_mj":
            parts.append(f"{value:.1f} mJ")
        elif name in ("macs", "params"):
            parts.append(f"{name} {value / 1e6:.2f}M")
    return "  ".join(parts)


def trial_line(trial: FrozenTrial, objectives: list[str]) -> str:
    """One human line of a finished trial (without the [done/total] prefix)."""
    if trial.state == TrialState.COMPLETE:
        summary = trial_summary(dict(zip(objectives, trial.values)))
        record = TrialRecord.of(trial)
        speed = record.speedup
        if speed:
            summary += f"  ({speed:.2f}x)"
        summary += "" if all(c <= 0 for c in trial.constraints.values()) else "  infeasible"
    else:
        reason = fail_reason(trial) or "no reason recorded"
        summary = f"{trial.state.name}: {reason}" + ("" if counts_as_result(trial) else "; its plan runs again")
    origin = retry_of(trial)
    again = f" (re-run of {origin})" if origin is not None else ""
    secs = sum((TrialRecord.of(trial).timings_s or {}).values())
    return f"trial {trial.number:>3}{again}  {summary}  [{secs:.1f} s]"


class Progress:
    """One line per finished trial (a tqdm bar when attached to a terminal); ``done`` counts results only."""

    def __init__(self, total: int, done: int, objectives: list[str], stream=None):
        # sys.stderr as it is now, not as it was when this module was imported (a caller may have replaced it)
        stream = sys.stderr if stream is None else stream
        self.total, self.objectives, self.stream = total, objectives, stream
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, file=stream, unit="trial", dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback, for the trials of this process."""
        self.show(trial, finished_count(study))

    def show(self, trial: FrozenTrial, done: int) -> None:
        line = trial_line(trial, self.objectives)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(line, refresh=True)
        else:
            print(f"[{done}/{self.total}] {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _ReleaseWhenRunning:
    """Wraps the objective: the trial is RUNNING in the storage when Optuna calls it, so others now count it; and
    Ctrl-C is taken here, where it is recorded as the trial's reason (held while Optuna asks and tells).

    It also notes whether another process finished the trial while the objective ran (``taken_over``): the
    heartbeat check of another worker or the parent fails a RUNNING trial whose heartbeat came later than
    ``search.grace_s``, and queues its plan again. Optuna cannot then tell the trial and raises out of
    ``optimize``; the worker is alive, so it drops that result and carries on instead of dying with it.
    """

    def __init__(self, objective: Callable[[optuna.Trial], Any], claim: Claim, interrupts: Interrupts):
        self.objective, self.claim, self.interrupts = objective, claim, interrupts
        self.taken_over: int | None = None  # the trial's number, when another process finished it meanwhile

    def __call__(self, trial: optuna.Trial) -> Any:
        self.claim.release()
        try:
            with self.interrupts.allowed():
                return self.objective(trial)
        except KeyboardInterrupt:
            TrialRecord(fail_reason=INTERRUPTED).write(trial)  # not a result about the plan: re-run on resume
            raise
        finally:
            if trial.study._storage.get_trial(trial._trial_id).state.is_finished():
                self.taken_over = trial.number


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """While trials run, what lives before them is out of the cyclic collector's view (``gc.freeze``), so the full
    collection after every trial (``moprune.search.objective.free_memory``) walks only what that trial made.

    The dense model, the data, the study and every imported module live as long as the run; walking them cost 0.28 s
    a trial on the bench's ResNet-20 (``--quick``, 2026-12-05: 3.9 s of a 55 s screen, cProfile), as long as a
    tenth of the fine-tune itself. Collected once on entry, so no garbage is frozen; unfrozen on exit, so nothing
    frozen outlives the run.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], Any], *, target: int, claim: Claim,
               callbacks: list[Callable[[optuna.Study, FrozenTrial], None]], catch: tuple[type[Exception], ...],
               deadline: float | None = None, wait_for_others: bool = True, poll_s: float = 1.0) -> None:
    """Start trials one at a time until ``target`` trials count in the whole study (all workers together).

    Counting and starting happen under ``claim``, so concurrent workers never start more trials than are missing.
    When the trials running elsewhere would complete the target, this worker waits for them: they finish, or their
    worker died and, once the heartbeat grace period has passed, their plans are queued again for it to run.
    Without heartbeats a dead worker cannot be told from a slow one (``wait_for_others=False``): it stops instead.
    ``deadline`` (time.monotonic) stops starting trials, as Optuna's ``timeout``.
    """
    waiting = False
    with held_interrupts() as interrupts, frozen_heap():
        while deadline is None or time.monotonic() < deadline:
            with interrupts.allowed():  # nothing of ours is RUNNING while we wait for the lock: stop at once
                claim.acquire()
            try:
                fail_stale_trials(study)
                counted, running = tally(study.get_trials(deepcopy=False))
                if counted >= target:
                    return
                if counted + running < target:
                    waiting = False
                    runner = _ReleaseWhenRunning(objective, claim, interrupts)
                    try:
                        study.optimize(runner, n_trials=1, catch=catch, callbacks=callbacks)
                    except Exception:
                        if runner.taken_over is None:
                            raise
                        log.warning("trial %d was failed by another process while it ran here: its heartbeat came "
                                    "later than search.grace_s (an overloaded machine or database?); its plan is "
                                    "queued again and this worker carries on", runner.taken_over)
                    interrupts.raise_pending()  # the trial is stored: a Ctrl-C held meanwhile stops the run now
                    continue
            finally:
                claim.release()
            if not wait_for_others:
                log.info("%d trial(s) still running elsewhere complete the target of %d; stopping", running, target)
                return
            if not waiting:
                log.info("waiting for %d trial(s) running in other workers (re-run here if their worker died)", running)
                waiting = True
            with interrupts.allowed():
                time.sleep(poll_s)
