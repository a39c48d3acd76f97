"""Many workers, one study: local worker processes, two "hosts" on PostgreSQL, a worker killed mid-trial.

The runs are real (`python -m moprune run ...` in subprocesses, the tiny 16-px digits study) with measurement
settings cut to the bone; every subprocess has a timeout and is killed with its workers at the end of its test.
"""

from __future__ import annotations

import os
import re
import signal

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from helpers import FAST, STATE_TIMEOUT_S, StoredStudy, fast_spec, finish, make_spec, wait_until, write_spec
from moprune.errors import SpecError
from moprune.search import make_storage, run_study
from moprune.search.storage import SQLITE_TIMEOUT_S, AdvisoryClaim, has_heartbeat
from moprune.record import WORKER_DIED, counts_as_result, fail_reason, retry_of
from moprune.search import Slot, plan_slots
from moprune.search.workers import shared_gpus


def waiting_for_a_lock(engine) -> int:
    """Sessions of this PostgreSQL database waiting for an advisory lock (moprune's claim on PostgreSQL)."""
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON l.database = d.oid "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()")).scalar()


def pid_of(trial) -> int:
    return int(trial.user_attrs["worker"].rpartition(":")[2])


def test_plan_slots_split_the_cpu_cores_and_threads(monkeypatch):
    import torch

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    spec = make_spec(device="cpu")
    assert plan_slots(spec, 2) == [Slot(0, None, (0, 1), 2), Slot(1, None, (2, 3), 2)]
    assert plan_slots(spec, 8) == [Slot(i, None, None, 1) for i in range(8)], "more workers than cores: no pinning"


def test_plan_slots_put_worker_i_on_gpu_i_mod_n(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    devices = [s.device for s in plan_slots(make_spec(device="auto"), 4)]
    assert devices == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert [s.device for s in plan_slots(make_spec(device="cuda:1"), 2)] == [None, None], "explicit cuda:N is kept"


def test_workers_sharing_a_gpu_are_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    auto = make_spec(device="auto")
    assert shared_gpus(auto, plan_slots(auto, 3)) == {}, "one worker per GPU"
    assert shared_gpus(auto, plan_slots(auto, 5)) == {"cuda:0": 2, "cuda:1": 2}
    pinned = make_spec(device="cuda:1")
    assert shared_gpus(pinned, plan_slots(pinned, 2)) == {"cuda:1": 2}
    cpu = make_spec(device="cpu")
    assert shared_gpus(cpu, plan_slots(cpu, 2)) == {}


def test_storage_has_the_specs_heartbeat_and_a_sqlite_lock_timeout(session_cwd):
    spec = make_spec(search={"heartbeat_s": 2, "grace_s": 9})
    store = make_storage(f"sqlite:///{session_cwd / 'heartbeat.db'}", spec)
    assert (store.heartbeat_interval, store.grace_period) == (2, 9) and has_heartbeat(store)
    assert store.engine_kwargs["connect_args"]["timeout"] == SQLITE_TIMEOUT_S  # waits instead of "database is locked"
    assert type(store.get_heartbeat_stale_trial_callback()).__name__ == "RetryHeartbeatStaleTrialCallback"


def test_a_grace_period_not_longer_than_the_heartbeat_is_a_spec_error():
    with pytest.raises(SpecError, match=r"grace_s \(10\) must be greater than heartbeat_s \(10\)"):
        make_spec(search={"heartbeat_s": 10, "grace_s": 10})


@pytest.mark.slow
def test_two_local_workers_on_sqlite_finish_exactly_12_trials(session_cwd, spawn):
    spec = fast_spec("sqlite12", n_trials=12)
    url = f"sqlite:///{session_cwd / 'sqlite12.db'}"
    err = finish(spawn("run", str(write_spec(spec, session_cwd)), "--workers", "2", "--storage", url))
    trials = optuna.load_study(study_name="sqlite12", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both workers ran trials"
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 12, "two workers never propose the same plan"
    assert "database is locked" not in err
    assert sorted(int(line.partition("/")[0].strip("[")) for line in err.splitlines() if "/12] trial" in line) == \
        list(range(1, 13)), "the parent prints one line per finished trial, counted 1..12"


@pytest.mark.slow
def test_what_a_worker_logs_reaches_the_parents_stderr_with_the_workers_number(session_cwd, spawn):
    spec = fast_spec("wlogs", n_trials=2)
    url = f"sqlite:///{session_cwd / 'wlogs.db'}"
    err = finish(spawn("run", str(write_spec(spec, session_cwd)), "--workers", "2", "--storage", url))
    # each worker's run_study says how many trials the study has when it stops (or, when the other worker ran them
    # all before this one started, that there is nothing left to run): relayed to the parent's stderr
    for worker in (0, 1):
        assert re.search(rf"^worker {worker}: (2 finished trials in 'wlogs' \(\d+ s this run\)|study 'wlogs' "
                         r"already has 2 finished trials \(target 2\); nothing to run)$", err, re.M), err
    assert re.search(r"^2 finished trials in 'wlogs' \(\d+ s this run, 2 workers\)$", err, re.M), "the parent's own"
    assert not re.search(r"^worker \d+: worker \d+: ", err, re.M), "prefixed once"


@pytest.mark.slow
def test_workers_of_two_hosts_on_an_empty_postgresql_database_finish_exactly_12_trials(session_cwd, spawn, postgres):
    # As on two hosts, started together on an empty database: `--workers 2` on one, a single worker on the other.
    # Both race to create the tables and the study; then three worker processes share the trials.
    url = postgres.new_database()
    path = write_spec(fast_spec("pg12", n_trials=12), session_cwd)
    # The test holds the study's claim (the lock a worker takes to count the trials and start one) until the three
    # workers and the watching parent all wait for it: then every worker starts trials, however much later than the
    # single-process host its spawned workers came up (on a loaded machine that host could run all 12 first).
    engine = sqlalchemy.create_engine(url)
    claim = AdvisoryClaim(engine, "pg12")
    claim.acquire()
    try:
        procs = [spawn("run", str(path), "--storage", url, "--workers", "2"), spawn("run", str(path), "--storage", url)]
        wait_until(lambda: waiting_for_a_lock(engine) >= 4, STATE_TIMEOUT_S,
                   "3 workers and the parent of 2 to wait for the study's claim", while_running=procs)
    finally:
        claim.release()
        engine.dispose()
    errs = [finish(p) for p in procs]
    trials = optuna.load_study(study_name="pg12", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12
    assert len({t.user_attrs["worker"] for t in trials}) == 3
    assert sum("created study 'pg12'" in e for e in errs) == 1, "the study is created exactly once"


@pytest.mark.slow
def test_a_worker_killed_mid_trial_fails_its_trial_and_another_worker_reruns_the_plan(session_cwd, spawn):
    shared = session_cwd / "shared" / "killed-weights"  # search.artifacts_dir: where every worker keeps weights
    spec = make_spec(name="killed", measure=FAST["measure"], finetune={"steps": 40},
                     search={"n_trials": 4, "sampler": "random", "seed_trials": [], "heartbeat_s": 1, "grace_s": 3,
                             "keep_weights": "all", "artifacts_dir": str(shared)})
    url = f"sqlite:///{session_cwd / 'killed.db'}"
    proc = spawn("run", str(write_spec(spec, session_cwd)), "--workers", "2", "--storage", url)
    stored = StoredStudy(url, "killed")

    def mid_trial_of_a_worker_that_finished_one():
        # mid-trial: its plan is chosen (so a re-run has all of it) and its fine-tune not yet done; and a worker
        # that has already finished a trial, whose kept weights must survive it
        trials = stored.trials() or []
        finished_by = {pid_of(t) for t in trials if t.state == TrialState.COMPLETE}
        running = [t for t in stored.running("plan") if pid_of(t) in finished_by]
        return (running[0], {t.number for t in trials if t.state == TrialState.COMPLETE}) if running else None

    victim, done_before = wait_until(mid_trial_of_a_worker_that_finished_one, STATE_TIMEOUT_S,
                                     "a worker that finished a trial to be mid-trial", while_running=proc)
    os.kill(pid_of(victim), signal.SIGKILL)
    err = finish(proc)
    assert f"(pid {pid_of(victim)}) was killed by SIGKILL" in err

    trials = stored.trials()
    stored.close()
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL and fail_reason(killed) == WORKER_DIED and not counts_as_result(killed)
    reruns = [t for t in trials if retry_of(t) == victim.number]
    assert len(reruns) == 1 and reruns[0].state == TrialState.COMPLETE
    assert reruns[0].params == killed.params and pid_of(reruns[0]) != pid_of(victim)
    assert [t.number for t in trials] == list(range(len(trials))), "numbers contiguous"
    assert all(t.state.is_finished() for t in trials), "nothing left running or queued"
    assert done_before <= {t.number for t in trials if t.state == TrialState.COMPLETE}, "finished trials kept"
    counted = [t for t in trials if counts_as_result(t)]
    assert len(counted) == 4 and len({tuple(sorted(t.params.items())) for t in counted}) == 4, "no plan twice"
    assert f"trial {victim.number:>3}  FAIL: {WORKER_DIED}; its plan runs again" in err, "the parent reported it"
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all((shared / f"trial-{t.number:05d}" / "weights.pt").is_file() for t in complete)
    assert len({pid_of(t) for t in complete}) == 2, "both workers wrote their weights to search.artifacts_dir"


@pytest.mark.slow
def test_journal_storage_runs_a_study_without_heartbeats(session_cwd):
    spec = fast_spec("journal", n_trials=2)
    url = f"journal:///{session_cwd / 'journal' / 'study.log'}"
    study = run_study(spec, storage=url, progress=False)
    assert not has_heartbeat(study._storage)  # a dead worker's trial would stay RUNNING: documented
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
