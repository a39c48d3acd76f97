"""Fixtures of the report tests: the tiny study enriched with every optional section."""

from __future__ import annotations

import shutil

import optuna
import pytest

from helpers import make_spec


@pytest.fixture(scope="session")
def enriched_study(tiny_study, tmp_path_factory):
    """A copy of the tiny study with a sensitivity scan (as moprune.search.sensitivity stores it) and one re-evaluation."""
    spec, study = tiny_study
    path = tmp_path_factory.mktemp("enriched") / "tiny.db"
    shutil.copy(spec.storage.removeprefix("sqlite:///"), path)
    spec = make_spec(storage=f"sqlite:///{path}")
    copy = optuna.load_study(study_name=spec.name, storage=spec.storage)
    units = list(copy.trials[0].user_attrs["plan"])
    copy.set_user_attr("sensitivity", [
        {"unit": u, "ratio": r, "accuracy_drop": 0.01 * i * r, "latency_gain_ms": 0.1 * r, "macs_saved": 1000}
        for i, u in enumerate(units) for r in (0.4, 0.8)])
    front = sorted(t.number for t in copy.best_trials)
    copy.set_user_attr(f"reeval:{front[0]}", [copy.trials[front[0]].values[0] - 0.01])
    return spec, copy
