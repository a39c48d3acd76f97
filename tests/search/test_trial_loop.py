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


def test_while_trials_run_only_what_they_made_is_walked_by_the_collector_and_nothing_stays_frozen():
    """free_memory's full collection after each trial walks only the trial's objects; a cycle a trial leaves is
    still collected, and nothing stays frozen once the loop returns (gc.freeze is scoped to the run)."""
    import gc
    import weakref

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: list[tuple[int, bool]] = []

    class Node:
        pass

    def objective(trial: optuna.Trial) -> float:
        node = Node()
        node.self = node  # a reference cycle, as a pruned model's dependency graph makes
        ref = weakref.ref(node)
        del node
        gc.collect()  # what free_memory does after the trial
        seen.append((gc.get_freeze_count(), ref() is None))
        return trial.suggest_float("x", 0, 1)

    run_trials(study, objective, target=2, claim=NoClaim(), callbacks=[], catch=())
    assert len(seen) == 2 and all(frozen > 0 and collected for frozen, collected in seen)
    assert gc.get_freeze_count() == 0
