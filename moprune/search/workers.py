"""``moprune run --workers K``: K processes on this host work on one study; the parent reports their progress.

The parent creates the study once (processes that create the tables of an empty database together race), re-queues
interrupted plans, then spawns K children that each run ``run_study`` against the same storage; the claim lock
(``storage.py``) keeps them to exactly ``n_trials``. Worker i uses GPU ``i mod n`` when the spec's device is
``auto`` or ``cuda`` on a host with n GPUs; on the CPU each worker gets its own share of the cores (affinity and
torch threads), so the latency rounds of one are not timed while another trains on the same core.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import optuna

from ..errors import MopruneError, SpecError
from ..record import counts_as_result
from ..spec import StudySpec
from .interrupts import stop_once
from .loop import Progress, finished_count, requeue_interrupted, tally
from .storage import claim_for, fail_stale_trials, sqlite_path
from .worker_logs import pipes, relayed, send_to

log = logging.getLogger(__name__)

STOP_WAIT_S = 30.0  # after Ctrl-C, how long the parent lets workers record their interrupted trials


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its device (None = the spec's), CPU cores (None = all) and torch threads."""

    index: int
    device: str | None
    cpus: tuple[int, ...] | None
    threads: int | None


def plan_slots(spec: StudySpec, workers: int) -> list[Slot]:
    """GPU i mod n for worker i on a multi-GPU host; otherwise the CPU cores split into ``workers`` equal parts."""
    import torch

    if spec.device in ("auto", "cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        return [Slot(i, f"cuda:{i % n}", None, spec.measure.threads) for i in range(workers)]
    if spec.device.startswith("cuda"):  # an explicit cuda:N: every worker shares that GPU, as asked
        return [Slot(i, None, None, spec.measure.threads) for i in range(workers)]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    threads = max(1, (spec.measure.threads or torch.get_num_threads()) // workers)
    if len(cpus) < workers:  # more workers than cores: no pinning helps, one thread each
        return [Slot(i, None, None, 1) for i in range(workers)]
    share = len(cpus) // workers
    return [Slot(i, None, tuple(cpus[i * share:(i + 1) * share]), min(threads, share)) for i in range(workers)]


def shared_gpus(spec: StudySpec, slots: list[Slot]) -> dict[str, int]:
    """GPUs that more than one worker would use, with how many: their energy and latency are not a trial's own.

    NVML's energy counter belongs to the device, so one worker's window also counts the other's fine-tune, and
    the other's kernels time-slice its timing rounds; the GPU path has no check that could notice.
    """
    devices = [s.device or spec.device for s in slots]
    counts = {d: devices.count(d) for d in dict.fromkeys(devices) if str(d).startswith("cuda")}
    return {d: n for d, n in counts.items() if n > 1}


def _worker_main(slot: Slot, spec_data: dict[str, Any], url: str, target: int, timeout_s: float | None,
                 logs: Connection, optuna_verbosity: int) -> None:
    """A child process: one ``run_study`` on the parent's study; the exit code tells the parent how it ended."""
    signal.signal(signal.SIGINT, stop_once)  # one interrupt, recorded as the running trial's reason
    signal.signal(signal.SIGTERM, stop_once)
    send_to(logs, slot.index)
    optuna.logging.set_verbosity(optuna_verbosity)  # as the parent has it (the CLI keeps Optuna's per-trial logs off)
    if slot.cpus:
        os.sched_setaffinity(0, slot.cpus)
    from ..spec import parse_spec
    from .run import run_study

    spec = parse_spec(spec_data, source=f"worker {slot.index}")
    if slot.threads:
        spec = spec.model_copy(update={"measure": spec.measure.model_copy(update={"threads": slot.threads})})
    try:
        run_study(spec, storage=url, n_trials=target, timeout_s=timeout_s, progress=False, worker=slot.index,
                  device=slot.device)
    except KeyboardInterrupt:
        sys.exit(130)
    except SpecError as exc:
        log.error("%s", exc)  # the parent shows it as "error: worker N: ..."
        sys.exit(2)
    except MopruneError as exc:
        log.error("%s", exc)
        sys.exit(1)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return {130: "was interrupted", 1: "failed (its message is above)", 2: "stopped on a spec error (above)"}.get(
        code or 0, f"exited with code {code}")


class _Watcher:
    """Polls the storage: one progress line per newly finished trial, whichever worker ran it."""

    def __init__(self, study: optuna.Study, claim: Any, progress: Progress):
        self.study, self.claim, self.progress = study, claim, progress
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def poll(self) -> None:
        # The parent fails stale trials too (under the claim: SQLite has no SELECT ... FOR UPDATE), so a dead
        # worker's plan is queued even while the others are busy with long trials.
        self.claim.acquire()
        try:
            fail_stale_trials(self.study)
        finally:
            self.claim.release()
        trials = self.study.get_trials(deepcopy=False)
        new = [t for t in trials if t.state.is_finished() and t.number not in self.seen]
        done = tally(trials)[0] - sum(counts_as_result(t) for t in new)
        for t in new:
            self.seen.add(t.number)
            done += counts_as_result(t)
            self.progress.show(t, done)


class _Quiet:
    """Progress that prints nothing (``progress=False``)."""

    def show(self, trial: Any, done: int) -> None:
        pass

    def close(self) -> None:
        pass


def run_workers(spec: StudySpec, *, workers: int, storage: str | None = None, n_trials: int | None = None,
                timeout_s: float | None = None, progress: bool = True, poll_s: float = 1.0) -> optuna.Study:
    """Create or resume the study, run ``workers`` processes on it until ``n_trials`` trials count, return it."""
    from .context import prepare_context
    from .objective import free_memory
    from .run import reevaluate_if_done
    from .study import create_or_load, opened_storage, prepare_run

    start = time.monotonic()
    url = storage or spec.storage_url
    target = n_trials or spec.search.n_trials
    timeout_s = timeout_s or spec.search.timeout_s
    if url.startswith("sqlite://") and sqlite_path(url) is None:
        raise SpecError(f"--workers {workers} needs a storage every worker process can open; {url} is private to "
                        "one process: use a SQLite file (sqlite:///runs/NAME.db) or PostgreSQL")
    prepare_run(spec, url)
    with opened_storage(spec, url) as store:
        ctx = prepare_context(spec)  # pretrains (and caches) the dense model once, for every worker
        study, _ = create_or_load(spec, ctx, store)
    requeue_interrupted(study)
    done = finished_count(study)
    if done >= target:
        log.info("study %r already has %d finished trials (target %d); nothing to run", spec.name, done, target)
        reevaluate_if_done(study, ctx, target)
        return study
    device = ctx.device
    del ctx
    free_memory(device)

    slots = plan_slots(spec, workers)
    for gpu, n in shared_gpus(spec, slots).items():
        log.warning("%d workers share %s: each trial's energy (a per-device counter) includes the other workers' "
                    "work and their kernels time-slice its latency rounds; run at most one worker per GPU "
                    "(--workers <= the number of GPUs, device auto) for measurements that are a trial's own", n, gpu)
    log.info("starting %d workers: %s", workers, "; ".join(f"worker {s.index} on {s.device or spec.device}" + (
        f" (cores {','.join(map(str, s.cpus))}, {s.threads} threads)" if s.cpus else "") for s in slots))
    mp = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    remaining = None if timeout_s is None else max(1.0, timeout_s - (time.monotonic() - start))
    channels = pipes(mp, len(slots))  # one pipe each: a killed worker cannot silence the others (worker_logs.py)
    procs = [mp.Process(target=_worker_main, name=f"moprune-worker-{s.index}",
                        args=(s, spec.model_dump(mode="json"), url, target, remaining, writer,
                              optuna.logging.get_verbosity())) for s, (_, writer) in zip(slots, channels)]
    watcher = _Watcher(study, claim_for(url, store, spec.name),
                       Progress(target, done, list(spec.objectives)) if progress else _Quiet())
    try:
        with relayed([reader for reader, _ in channels]):
            for p, (_, writer) in zip(procs, channels):
                p.start()
                writer.close()  # the worker holds the only writer: its pipe ends when it does
            try:
                _supervise(procs, watcher, spec, poll_s)
            except KeyboardInterrupt:
                _stop(procs)
                raise
    except KeyboardInterrupt:
        watcher.poll()  # show the trials the workers just recorded as interrupted
        raise
    finally:
        for p in procs:  # never leave a child behind, whatever happened here
            if p.is_alive():
                p.kill()
                p.join()
        watcher.progress.close()
    counted = finished_count(study)
    log.info("%d finished trials in %r (%.0f s this run, %d workers)", counted, spec.name, time.monotonic() - start,
             workers)
    failed = [p for p in procs if p.exitcode != 0]
    if counted < target and len(failed) == len(procs) and not (timeout_s and time.monotonic() - start >= timeout_s):
        raise MopruneError(f"every worker stopped before the study reached {target} trials ({counted} now); see "
                           "their messages above, fix the cause and run the same command again to continue")
    if spec.search.reevaluate.top > 0 and counted >= target:
        reevaluate_if_done(study, prepare_context(spec), target)
    return study


def _supervise(procs: list[Any], watcher: _Watcher, spec: StudySpec, poll_s: float) -> None:
    """Report progress and each worker's end until all have ended."""
    reported: set[int] = set()
    unread = False
    while True:
        alive = any(p.is_alive() for p in procs)
        try:
            watcher.poll()
            unread = False
        except Exception as exc:  # a storage hiccup must not stop the workers; they retry on their own
            if not unread:
                log.warning("cannot read the study's progress (%s: %s); retrying", type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "")
            unread = True
        for i, p in enumerate(procs):
            if not p.is_alive() and i not in reported:
                reported.add(i)
                if p.exitcode != 0:
                    log.warning("worker %d (pid %s) %s%s", i, p.pid, describe_exit(p.exitcode),
                                "; a trial it was running is failed once it has sent no heartbeat for search.grace_s "
                                f"= {spec.search.grace_s} s, and its plan re-run by another worker"
                                if p.exitcode is not None and p.exitcode < 0 else "")
        if not alive:
            return
        time.sleep(poll_s)


def _stop(procs: list[Any]) -> None:
    """Ctrl-C: pass it on (a terminal sends it to every worker anyway), let them record it, then make sure."""
    started = [p for p in procs if p.pid is not None]
    for p in started:
        if p.is_alive():
            os.kill(p.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    try:
        for p in started:
            p.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        pass
    for p in started:
        if p.is_alive():
            log.warning("worker %s did not stop within %.0f s; killing it", p.name, STOP_WAIT_S)
            p.kill()
            p.join()

