"""Helpers for tests that run whole studies in subprocesses: a fast tiny spec, its YAML file, `moprune` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_spec

# A trial in about a second: few timing rounds and no retaking of rounds that other processes disturbed (the other
# worker always does), one torch thread (two threads on a busy 2-core machine wait on each other: 10x slower),
# random plans and no seed trials.
FAST = {"measure": {"batch_size": 8, "warmup": 1, "repeats": 3, "ci_half_width": None, "max_noisy_retries": 0,
                    "threads": 1},
        "finetune": {"steps": 3}}


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A study run in this process sets torch's thread count (measure.threads): restore it for the next tests."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def fast_spec(name: str, *, n_trials: int, **search):
    return make_spec(name=name, **FAST, search={"n_trials": n_trials, "sampler": "random", "seed_trials": [],
                                                **search})


def write_spec(spec, folder: Path) -> Path:
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path


@pytest.fixture
def spawn(session_cwd):
    """Start `python -m moprune ...` in its own process group (so its workers can be killed with it)."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "moprune", *args], cwd=session_cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for a run; its stderr (progress and messages). Fails the test if it does not exit 0 in time."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-3000:]}"
    return err
