"""Fixtures shared by every test folder: a session working directory (so runs/ and caches stay out of the repo),
torch's thread count restored after each test, and a tiny real study. Plain helpers are in ``helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import make_spec


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with NVML")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def session_cwd(tmp_path_factory) -> Path:
    """Run every test from one temporary directory: relative paths (runs/, runs/cache/) land there.

    The pretrain cache under runs/cache/ is shared by the whole session, so a dense model is trained once.
    """
    work = tmp_path_factory.mktemp("work")
    old = Path.cwd()
    os.chdir(work)
    yield work
    os.chdir(old)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A study or measurement in this process may set torch's thread count (measure.threads): restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_study(session_cwd):
    """A finished 6-trial study of resnet18 on 16-px digits (dense, uniform 0.8 and global 0.8 first) (about 60 s on 2 cores with its dense model's
    pretraining, which later tests reuse from the session's cache); do not modify it."""
    from moprune.search import run_study

    spec = make_spec(storage=f"sqlite:///{session_cwd / 'tiny.db'}",
                     search={"seed_trials": ["dense", "uniform", "global"]})
    study = run_study(spec, progress=False)
    return spec, study
