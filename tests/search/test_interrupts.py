"""Ctrl-C in every window of a trial's life leaves the storage consistent: no trial RUNNING, none failed without
its reason, no finished trial lost. (The signal is sent to this process at the exact moment under test.)"""

from __future__ import annotations

import os
import signal

import optuna
import pytest
from optuna.trial import TrialState

import moprune.search.interrupts as interrupts
from moprune.search.interrupts import held_interrupts, stop_once
from moprune.search.storage import NoClaim
from moprune.record import INTERRUPTED, counts_as_result, fail_reason
from moprune.search import run_trials


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def run(study: optuna.Study, objective, callbacks=()) -> None:
    run_trials(study, objective, target=3, claim=NoClaim(), callbacks=list(callbacks), catch=())


def new_study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def test_a_signal_in_a_held_window_is_raised_when_it_closes_and_repeats_are_ignored():
    before = signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with held_interrupts():
            ctrl_c()
            ctrl_c()  # the terminal's and the parent's: one interrupt
            reached.append("after the signals")
    assert reached == ["after the signals"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_worker_stops_once_even_when_the_forwarded_signal_arrives_after_its_trial_is_stored(monkeypatch):
    monkeypatch.setattr(interrupts, "_stopping", False)  # a fresh worker process
    previous = signal.signal(signal.SIGINT, stop_once)
    try:
        with pytest.raises(KeyboardInterrupt):
            with held_interrupts():
                ctrl_c()  # the terminal's
        ctrl_c()  # the parent's, forwarded, arriving while the worker exits: must not interrupt that
    finally:
        signal.signal(signal.SIGINT, previous)


def test_inside_allowed_a_signal_raises_at_once():
    reached = []
    with held_interrupts() as interrupts:
        with pytest.raises(KeyboardInterrupt):
            with interrupts.allowed():
                ctrl_c()
                reached.append("not reached")
    assert reached == []


def test_ctrl_c_inside_the_objective_fails_the_trial_as_interrupted():
    study = new_study()

    def objective(trial):
        trial.suggest_float("x", 0, 1)
        ctrl_c()
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        run(study, objective)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and fail_reason(trial) == INTERRUPTED and not counts_as_result(trial)


def test_ctrl_c_while_optuna_creates_the_trial_still_records_it_as_interrupted(monkeypatch):
    study = new_study()
    real_ask = optuna.Study.ask

    def ask(self, *args, **kwargs):
        trial = real_ask(self, *args, **kwargs)  # RUNNING in the storage from here on
        ctrl_c()
        return trial

    monkeypatch.setattr(optuna.Study, "ask", ask)
    ran = []
    with pytest.raises(KeyboardInterrupt):
        run(study, lambda trial: ran.append(trial.number) or 1.0)
    (trial,) = study.get_trials()
    assert ran == [], "the objective does not start after Ctrl-C"
    assert trial.state == TrialState.FAIL and fail_reason(trial) == INTERRUPTED  # not RUNNING, not "worker died"


def test_ctrl_c_after_the_objective_returned_keeps_the_finished_trial():
    study = new_study()

    def objective(trial):
        return trial.suggest_float("x", 0, 1)

    def callback(study, trial):  # runs after Optuna stored the result
        ctrl_c()

    with pytest.raises(KeyboardInterrupt):
        run(study, objective, callbacks=[callback])
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE, "a finished trial is never lost to Ctrl-C"


def test_ctrl_c_while_waiting_for_the_claim_stops_without_creating_a_trial():
    study = new_study()

    class SlowClaim(NoClaim):
        def acquire(self):
            ctrl_c()

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, lambda t: 1.0, target=3, claim=SlowClaim(), callbacks=[], catch=())
    assert study.get_trials() == []
