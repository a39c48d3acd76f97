"""Shared fixtures: a session working directory (so runs/ and caches stay out of the repo) and a tiny real study."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def tiny_study(session_cwd):
    """A finished 6-trial study of resnet18 on 16-px digits (about 30 s on 2 cores); do not modify it."""
    from moprune.search import run_study

    spec = make_spec(storage=f"sqlite:///{session_cwd / 'tiny.db'}")
    study = run_study(spec, progress=False)
    return spec, study
