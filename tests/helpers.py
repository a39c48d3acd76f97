"""Plain helpers shared by the tests (no fixtures: those live in conftest.py files).

- ``make_spec`` / ``TINY_SPEC``: the tiny 16-px digits study, with nested overrides, validated.
- ``FAST`` / ``fast_spec`` / ``write_spec`` / ``finish``: studies run in ``moprune run`` subprocesses.
- ``SMALL_CNN``: a model section for in-process studies that check the search's logic.
- ``assert_replays``: a pruned model's recorded history rebuilds its shapes and outputs on a fresh dense model.
- ``bench_module``: a bench script's module, for tests of its pure helpers.
- ``toy_front`` / ``OBJECTIVES`` / ``DIRECTIONS``: a hand-made trials frame for the pick rules and weighted scores.
- ``wait_until`` / ``StoredStudy``: tests that watch another process wait for a state (a trial RUNNING in the
  storage, a file, an exit) with a generous deadline; they never sleep a fixed time and then assume.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")

TINY_SPEC = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "model": {"arch": "resnet18", "pretrain": {"epochs": 3, "lr": 0.05, "batch_size": 128}},
    "data": {"name": "digits", "image_size": 16},
    "prune": {"ratio": {"low": 0.0, "high": 0.8, "step": 0.1}},
    "finetune": {"steps": 5, "lr": 0.05, "batch_size": 64},
    "objectives": ["accuracy", "latency_ms", "macs"],
    "constraints": {"max_accuracy_drop": 0.05},
    "measure": {"batch_size": 16, "warmup": 1, "repeats": 3},
    "search": {"n_trials": 6, "population_size": 4, "uniform_count": 2},
}

# A trial in about a second: few timing rounds and no retaking of rounds that other processes disturbed (the other
# worker always does), one torch thread (two threads on a busy 2-core machine wait on each other: 10x slower),
# random plans and no seed trials.
FAST = {"measure": {"batch_size": 8, "warmup": 1, "repeats": 3, "ci_half_width": None, "max_noisy_retries": 0,
                    "threads": 1},
        "finetune": {"steps": 3}}

# A model section for in-process studies that test the search's logic rather than ResNet-18's arithmetic: a
# two-group CNN (tests/tiny_models.py) whose trials take a fraction of a second.
SMALL_CNN = {"arch": "tiny_models:small_cnn", "pretrain": {"epochs": 2, "lr": 0.05, "batch_size": 64}}

# How long a test waits for a state another process reaches: generous, since a loaded 2-core machine (CI, another
# test run) can make a start-up that takes 5 s take a minute. A test that passes never waits that long.
STATE_TIMEOUT_S = 240.0


def make_spec(**overrides):
    """TINY_SPEC with nested overrides, validated (e.g. make_spec(name="x", search={"n_trials": 3}))."""
    from moprune.spec import parse_spec

    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_SPEC.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_spec(data, source="test")


def fast_spec(name: str, *, n_trials: int, **search):
    """Random plans of the small CNN, quickly measured: studies that test how trials are run, stored and shared."""
    return make_spec(name=name, model=SMALL_CNN, **FAST, search={"n_trials": n_trials, "sampler": "random",
                                                                 "seed_trials": [], **search})


def write_spec(spec, folder: Path) -> Path:
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for a run; its stderr (progress and messages). Fails the test if it does not exit 0 in time."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-3000:]}"
    return err


def copy_with_best(study):
    """An in-memory copy of a (shared, read-only) study with its metric names, and its most accurate front trial."""
    import warnings

    import optuna

    copy = optuna.create_study(directions=study.directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        copy.set_metric_names(study.metric_names)
    for t in study.trials:
        copy.add_trial(t)
    return copy, max(copy.best_trials, key=lambda t: t.values[0])


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *, interval: float = 0.2,
               while_running: subprocess.Popen | Sequence[subprocess.Popen] = ()) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail naming ``what`` at the deadline.

    With ``while_running`` (a process or several), also fail as soon as one has exited (the state can no longer
    come), with the end of its stderr when it was captured.
    """
    procs = [while_running] if isinstance(while_running, subprocess.Popen) else list(while_running)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                err = ""
                if proc.stderr is not None:
                    try:
                        _, err = proc.communicate(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass
                raise AssertionError(f"the process exited ({proc.returncode}) before {what}\n{(err or '')[-3000:]}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class StoredStudy:
    """A study that another process writes, read from its storage without creating anything there.

    ``trials()`` is None until the database, its tables and the study exist (``optuna.load_study`` on a missing
    SQLite file would create the file and race the process creating its tables).
    """

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self._study: Any = None
        self._storage: Any = None

    def trials(self) -> list[Any] | None:
        import optuna

        if self._study is None:
            path = self.url.removeprefix("sqlite:///") if self.url.startswith("sqlite:///") else None
            if path is not None and not Path(path).is_file():
                return None
            try:
                storage = optuna.storages.RDBStorage(self.url, skip_compatibility_check=True,
                                                     skip_table_creation=True)
            except Exception:
                return None
            try:
                self._study = optuna.load_study(study_name=self.name, storage=storage)
            except (KeyError, ValueError, optuna.exceptions.StorageInternalError):
                storage.engine.dispose()
                return None
            self._storage = storage
        try:
            return self._study.get_trials()
        except optuna.exceptions.StorageInternalError:
            return None  # a writer holds the database for longer than a read waits: read again

    def close(self) -> None:
        if self._storage is not None:
            self._storage.engine.dispose()
        self._study = self._storage = None

    def running(self, *having: str) -> list[Any]:
        """The RUNNING trials that have recorded every user attr in ``having`` (e.g. its plan)."""
        from optuna.trial import TrialState

        return [t for t in self.trials() or () if t.state == TrialState.RUNNING
                and all(key in t.user_attrs for key in having)]


OBJECTIVES = ["accuracy", "latency_ms", "macs"]
DIRECTIONS = ["maximize", "minimize", "minimize"]


def toy_front() -> pd.DataFrame:
    """Three front trials, one dominated, one infeasible (fastest of all), one failed and one running."""
    rows = [
        # number, state, feasible, on_front, accuracy, latency_ms, macs, accuracy_drop constraint
        (0, "COMPLETE", True, True, 0.98, 10.0, 100e6, -0.02),
        (1, "COMPLETE", True, True, 0.97, 5.0, 50e6, -0.01),
        (2, "COMPLETE", True, True, 0.95, 2.0, 20e6, 0.0),
        (3, "COMPLETE", True, False, 0.94, 6.0, 60e6, 0.0),
        (4, "COMPLETE", False, False, 0.50, 1.0, 10e6, 0.46),
        (5, "FAIL", False, False, None, None, None, None),
        (6, "RUNNING", False, False, None, None, None, None),
    ]
    return pd.DataFrame([
        {"number": n, "state": s, "feasible": f, "on_front": front, "accuracy": a, "latency_ms": lat, "macs": macs,
         "params": None, "speedup": None, "plan": {}, "constraints": {} if c is None else {"accuracy_drop": c}}
        for n, s, f, front, a, lat, macs, c in rows])


def bench_module(name: str):
    """``bench.<name>`` imported from the repository root (the bench scripts are not part of the package)."""
    import importlib
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"bench.{name}")


def assert_replays(build: Callable[[], Any], pruned: Any, inputs: Any) -> None:
    """A fresh ``build()`` replays ``pruned``'s history, through JSON as ``pruning.json`` keeps it, to the same
    shapes (a strict state-dict load) and the same outputs on ``inputs``."""
    import json

    import torch

    from moprune.pruning import replay_history

    fresh = build()
    replay_history(fresh, json.loads(json.dumps(pruned.history)), inputs[:1])
    fresh.load_state_dict(pruned.model.state_dict())  # strict: every shape matches
    assert torch.equal(fresh.eval()(inputs), pruned.model(inputs))
