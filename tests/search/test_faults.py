"""Faults a long search meets: Ctrl-C, out of memory, NaN values, and set-up errors that must leave nothing behind.

(A worker killed mid-trial is in test_workers.py; a non-finite loss in test_run.py.) Tests that watch a `moprune run`
subprocess wait for states in its storage and for its exit, with generous deadlines, so that they hold on a loaded
machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import weakref

import optuna
import pytest
import torch
from optuna.trial import TrialState

import moprune.search.context as context
import moprune.search.objective as objective
from moprune.search import StudyContext
import moprune.search.study as study_module
from moprune.cli import main
from moprune.errors import MopruneError
from moprune.search import run_study
from moprune.record import INTERRUPTED, counts_as_result, fail_reason, retry_of
from moprune.search import finished_count
from helpers import FAST, STATE_TIMEOUT_S, StoredStudy, fast_spec, make_spec, wait_until, write_spec
from postgres_server import free_port

QUIET = {"progress": False}


def in_finetune(stored: StoredStudy, proc: subprocess.Popen, *, trials: int = 1, timeout: float = STATE_TIMEOUT_S):
    """Wait until ``trials`` trials of distinct workers are RUNNING in their fine-tune (plan chosen, fine-tune seed
    recorded right before it starts: the longest step of a trial, so a signal sent now lands inside it)."""
    def found():
        running = stored.running("plan", "finetune_seed")
        by_worker = {t.user_attrs["worker"]: t for t in running}
        return sorted(by_worker.values(), key=lambda t: t.number) if len(by_worker) >= trials else None

    return wait_until(found, timeout, f"{trials} trial(s) to be RUNNING in their fine-tune", while_running=proc)


def slow_spec(name: str, n_trials: int, steps: int = 60):
    # a fine-tune of seconds (tens under load): time to press Ctrl-C while a trial runs
    return make_spec(name=name, measure=FAST["measure"], finetune={"steps": steps},
                     search={"n_trials": n_trials, "sampler": "random", "seed_trials": []})


def stop(proc: subprocess.Popen, sig: signal.Signals, *, group: bool = False) -> tuple[str, float]:
    """Send ``sig`` (to the whole process group, as a terminal's Ctrl-C, with ``group``); its stderr and how long it
    took to exit. Fails the test if it has not exited within a generous deadline."""
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return err, time.monotonic() - sent


@pytest.mark.slow
def test_ctrl_c_fails_the_running_trial_as_interrupted_and_run_again_continues(session_cwd, spawn, capsys):
    spec = slow_spec("sigint", n_trials=2)
    url = f"sqlite:///{session_cwd / 'sigint.db'}"
    path = write_spec(spec, session_cwd)
    proc = spawn("run", str(path), "--storage", url)
    stored = StoredStudy(url, "sigint")
    (victim,) = in_finetune(stored, proc)
    err, took = stop(proc, signal.SIGINT)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{err[-3000:]}"
    assert took < 15, f"exits promptly, not after the fine-tune ({took:.1f} s)"
    assert f"Resume with: moprune run {path} --storage {url}" in err
    assert "Traceback" not in err
    trial = stored.trials()[victim.number]
    stored.close()
    assert trial.state == TrialState.FAIL and fail_reason(trial) == INTERRUPTED and not counts_as_result(trial)

    capsys.readouterr()
    assert main(["status", str(path), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert f"{victim.number} finished of 2" in out and "1 re-run" in out, out  # status counts as run does

    study = run_study(spec, storage=url, **QUIET)  # run again: continues to n_trials, the interrupted plan first
    assert finished_count(study) == 2
    reruns = [t for t in study.get_trials() if retry_of(t) == victim.number]
    assert len(reruns) == 1 and reruns[0].state == TrialState.COMPLETE and reruns[0].params == victim.params


@pytest.mark.slow
def test_sigterm_ends_a_run_as_ctrl_c_does(session_cwd, spawn):
    # a scheduler preempting the job: the running trial is recorded as interrupted, to be re-run on resume
    spec = slow_spec("sigterm", n_trials=2)
    url = f"sqlite:///{session_cwd / 'sigterm.db'}"
    path = write_spec(spec, session_cwd)
    proc = spawn("run", str(path), "--storage", url)
    stored = StoredStudy(url, "sigterm")
    (victim,) = in_finetune(stored, proc)
    err, took = stop(proc, signal.SIGTERM)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{err[-3000:]}"
    assert took < 15, f"exits promptly, not after the fine-tune ({took:.1f} s)"
    assert f"Resume with: moprune run {path} --storage {url}" in err and "Traceback" not in err
    trials = stored.trials()
    stored.close()
    assert all(t.state.is_finished() for t in trials), "no trial left RUNNING"
    assert fail_reason(trials[victim.number]) == INTERRUPTED and not counts_as_result(trials[victim.number])


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_records_their_trials_as_interrupted(session_cwd, spawn):
    spec = slow_spec("sigint2", n_trials=4, steps=2000)  # a fine-tune far longer than the test waits
    url = f"sqlite:///{session_cwd / 'sigint2.db'}"
    proc = spawn("run", str(write_spec(spec, session_cwd)), "--workers", "2", "--storage", url)
    stored = StoredStudy(url, "sigint2")
    # both workers mid-trial (not one still starting up, where there is no trial of its own to record)
    victims = in_finetune(stored, proc, trials=2)
    err, _ = stop(proc, signal.SIGINT, group=True)  # as a terminal's Ctrl-C: parent and workers all get it
    assert proc.returncode == 130, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Resume with: moprune run" in err and "--workers 2" in err
    trials = stored.trials()
    stored.close()
    assert all(t.state.is_finished() for t in trials), "no trial left RUNNING"
    assert [fail_reason(trials[v.number]) for v in victims] == [INTERRUPTED, INTERRUPTED]
    assert all(fail_reason(t) == INTERRUPTED for t in trials if t.state == TrialState.FAIL), \
        [(t.number, fail_reason(t)) for t in trials]  # whatever each worker was doing: none reads as a dead worker


@pytest.mark.slow
@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 21474836480 bytes. Error code 12 (Cannot allocate memory)"),
], ids=["cuda", "cpu"])
def test_out_of_memory_fails_the_trial_frees_its_model_and_the_study_goes_on(session_cwd, monkeypatch, error):
    models: list[weakref.ref] = []
    freed_at_cleanup: list[bool] = []
    real_train, real_free = context.train, objective.free_memory

    def train(model, *args, **kwargs):
        if not models:
            models.append(weakref.ref(model))
            raise error
        return real_train(model, *args, **kwargs)

    def free_memory(device):
        real_free(device)
        freed_at_cleanup.append(bool(models) and models[0]() is None)

    monkeypatch.setattr(context, "train", train)
    monkeypatch.setattr(objective, "free_memory", free_memory)
    spec = fast_spec(f"oom_{type(error).__name__}", n_trials=2)
    study = run_study(spec, storage=f"sqlite:///{session_cwd / (spec.name + '.db')}", **QUIET)
    first, second = study.get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"].startswith(
        f"out of memory: {type(error).__name__}: ")
    assert freed_at_cleanup[0], "the pruned model is gone when the CUDA cache is emptied"
    assert second.state == TrialState.COMPLETE and finished_count(study) == 2


def test_free_memory_empties_the_cuda_cache_on_a_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    objective.free_memory(torch.device("cpu"))
    assert calls == []
    objective.free_memory(torch.device("cuda:0"))
    assert calls == ["empty_cache"]


@pytest.mark.slow
def test_a_non_finite_objective_value_fails_the_trial_with_the_reason(session_cwd, monkeypatch):
    real = StudyContext.evaluate
    # the dense model keeps its accuracy (the baseline); every pruned one reads NaN
    monkeypatch.setattr(StudyContext, "evaluate",
                        lambda self, model: real(self, model) if model is self.dense.model else float("nan"))
    spec = fast_spec("nan_value", n_trials=1)
    study = run_study(spec, storage=f"sqlite:///{session_cwd / 'nan_value.db'}", **QUIET)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == \
        "non-finite objective value: accuracy=nan"


def run_cli(spec, folder, *extra):
    return main(["run", str(write_spec(spec, folder)), *extra])


def test_a_corrupt_checkpoint_exits_1_and_leaves_no_study(session_cwd, capsys):
    ckpt = session_cwd / "corrupt.pt"
    ckpt.write_bytes(b"not a checkpoint")
    db = session_cwd / "corrupt.db"
    spec = make_spec(name="corrupt", model={"arch": "resnet18", "checkpoint": str(ckpt)})
    assert run_cli(spec, session_cwd, "--storage", f"sqlite:///{db}") == 1
    err = capsys.readouterr().err
    assert "model.checkpoint" in err and "torch.save(model.state_dict(), path)" in err
    assert not db.exists(), "no database (and so no half-created study) is left behind"


def test_a_checkpoint_of_another_model_exits_1_and_leaves_no_study(session_cwd, capsys):
    ckpt = session_cwd / "mismatch.pt"
    torch.save({"fc.weight": torch.zeros(3, 512)}, ckpt)
    db = session_cwd / "mismatch.db"
    spec = make_spec(name="mismatch", model={"arch": "resnet18", "checkpoint": str(ckpt)})
    assert run_cli(spec, session_cwd, "--storage", f"sqlite:///{db}") == 1
    assert "does not fit ResNet with this data set's 10 classes" in capsys.readouterr().err
    assert not db.exists()


def test_a_missing_data_root_exits_2_before_opening_the_storage(session_cwd, capsys):
    db = session_cwd / "noroot.db"
    spec = make_spec(name="noroot", data={"name": "mnist", "root": str(session_cwd / "nowhere")})
    assert run_cli(spec, session_cwd, "--storage", f"sqlite:///{db}") == 2
    assert "data.root" in capsys.readouterr().err and not db.exists()


def test_an_unreachable_storage_exits_1_with_what_to_check(session_cwd, capsys):
    url = f"postgresql+psycopg2://moprune:secret@127.0.0.1:{free_port()}/studies"
    start = time.monotonic()
    assert run_cli(make_spec(name="unreachable"), session_cwd, "--storage", url) == 1
    err = capsys.readouterr().err
    assert "cannot open storage" in err and "Check that the server is running" in err
    assert "secret" not in err, "the password is not printed"
    assert time.monotonic() - start < 30


@pytest.mark.slow
def test_a_read_only_run_folder_exits_2_and_creates_nothing(tmp_path):
    work = tmp_path / "ro"
    (work / "runs").mkdir(parents=True)
    spec_path = write_spec(make_spec(name="readonly"), work)
    (work / "runs").chmod(0o555)
    command = [sys.executable, "-m", "moprune", "run", str(spec_path)]
    if os.geteuid() == 0:  # root ignores permission bits: drop the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing: cannot make a folder read-only")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    try:
        proc = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=120)
    finally:
        (work / "runs").chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert "cannot write to runs (Permission denied)" in proc.stderr and "Traceback" not in proc.stderr
    assert list((work / "runs").iterdir()) == []


@pytest.mark.slow
def test_a_failure_while_the_study_is_being_created_leaves_no_study(session_cwd, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(optuna.Study, "enqueue_trial", interrupted)
    db = session_cwd / "halfway.db"
    spec = make_spec(name="halfway", storage=f"sqlite:///{db}")
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, **QUIET)
    assert not db.exists()


@pytest.mark.slow
def test_a_study_whose_creator_died_is_reported_with_how_to_remove_it(session_cwd, monkeypatch):
    url = f"sqlite:///{session_cwd / 'orphan.db'}"
    optuna.create_study(study_name="orphan", storage=url)  # as left by a creator killed before writing its baseline
    monkeypatch.setattr(study_module, "CREATION_WAIT_S", 0.5)
    with pytest.raises(MopruneError, match="never completely created.*optuna delete-study"):
        run_study(fast_spec("orphan", n_trials=1), storage=url, **QUIET)


@pytest.mark.slow  # runs a whole study
def test_a_sticky_cuda_error_stops_the_run_and_the_plan_runs_again_on_resume(session_cwd, monkeypatch):
    from moprune.errors import DeviceLost
    from moprune.record import DEVICE_LOST, counts_as_result

    real_train = context.train
    calls = []

    def train(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second trial's fine-tune: the GPU's context is gone
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                               "asynchronously reported at some other API call")
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(context, "train", train)
    spec = fast_spec("sticky", n_trials=3)
    url = f"sqlite:///{session_cwd / 'sticky.db'}"
    with pytest.raises(DeviceLost, match="trial 1: the CUDA context of cpu is lost .*illegal memory access"):
        run_study(spec, storage=url, **QUIET)
    study = optuna.load_study(study_name="sticky", storage=url)
    first, lost = study.get_trials()
    assert first.state == TrialState.COMPLETE and lost.state == TrialState.FAIL
    assert lost.user_attrs["fail_reason"] == DEVICE_LOST and "illegal memory access" in lost.user_attrs[
        "fail_traceback"]
    assert not counts_as_result(lost), "a lost device says nothing about the plan"
    monkeypatch.setattr(context, "train", real_train)
    study = run_study(spec, storage=url, **QUIET)
    rerun = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == lost.number]
    assert len(rerun) == 1 and rerun[0].params == lost.params and rerun[0].state == TrialState.COMPLETE
    assert finished_count(study) == 3


def _failing_measure(monkeypatch, fail_calls):
    """StudyContext.measure raising the meter's error on the given calls (call 1 is the dense baseline's)."""
    from moprune.measure import EnergyMeasurementError

    real, calls = StudyContext.measure, []

    def measure(self, model, **kwargs):
        calls.append(1)
        if len(calls) in fail_calls:
            raise EnergyMeasurementError("the nvml-counter meter read 0.0 mJ over 2.000 s of 310 passes, not above "
                                         "idle (61.20 W)")
        return real(self, model, **kwargs)

    monkeypatch.setattr(StudyContext, "measure", measure)


@pytest.mark.slow  # runs a whole study
def test_a_failed_energy_window_does_not_count_and_the_study_goes_on(session_cwd, monkeypatch):
    from moprune.record import MEASUREMENT_FAILED

    _failing_measure(monkeypatch, {3})  # the second trial's window
    spec = fast_spec("energy_window", n_trials=3)
    study = run_study(spec, storage=f"sqlite:///{session_cwd / 'energy_window.db'}", **QUIET)
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["fail_reason"] == MEASUREMENT_FAILED
    assert "not above idle" in failed[0].user_attrs["fail_traceback"]
    assert not counts_as_result(failed[0]) and finished_count(study) == 3 and len(study.get_trials()) == 4


@pytest.mark.slow  # runs a whole study
def test_an_energy_meter_that_keeps_failing_stops_the_run_with_the_fix(session_cwd, monkeypatch):
    from moprune.errors import MeasurementUnreliable

    _failing_measure(monkeypatch, set(range(2, 100)))  # every trial's window
    spec = fast_spec("energy_broken", n_trials=5)
    with pytest.raises(MeasurementUnreliable, match="failed 3 trials in a row .*lengthen measure.energy_window_s"):
        run_study(spec, storage=f"sqlite:///{session_cwd / 'energy_broken.db'}", **QUIET)
