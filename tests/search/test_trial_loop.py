"""The loop that runs trials until enough count: a trial finished by another process must not kill the worker."""

from __future__ import annotations

import logging

import optuna
import pytest
from optuna.trial import TrialState

from moprune.record import WORKER_DIED, fail_reason
from moprune.search import run_trials
from moprune.search.storage import NoClaim


def test_a_trial_failed_elsewhere_while_it_ran_is_dropped_and_the_worker_carries_on(caplog):
    # What the heartbeat check of another worker does to a trial whose heartbeat came late (seen once on a loaded
    # CI machine with PostgreSQL): the trial turns FAIL while its objective runs; Optuna then cannot tell it.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    calls = []

    def objective(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        trial.suggest_float("x", 0, 1)
        if len(calls) == 1:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        return 1.0

    with caplog.at_level(logging.WARNING, logger="moprune.search.loop"):
        run_trials(study, objective, target=3, claim=NoClaim(), callbacks=[], catch=())
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert fail_reason(study.trials[0]) == WORKER_DIED  # not a result: its plan runs again
    assert "trial 0 was failed by another process while it ran here" in caplog.text


def test_an_error_of_the_objective_itself_still_stops_the_loop():
    study = optuna.create_study()

    def objective(trial: optuna.Trial) -> float:
        raise RuntimeError("a bug, not a takeover")

    with pytest.raises(RuntimeError, match="a bug"):
        run_trials(study, objective, target=2, claim=NoClaim(), callbacks=[], catch=())
