"""Transformer studies through the command line, as a user runs them: run, pareto, dashboard, export, evaluate.

A BERT-style encoder built from a config (tests/data/tiny_bert.json) on the shipped review texts with a tokenizer
trained from them, and a small torchvision ViT on 16-px digits: both pruned by attention heads and MLP neurons.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import moprune
from helpers import make_spec, write_spec
from moprune.cli import main

DATA = Path(__file__).parent / "data"
FAST_MEASURE = {"batch_size": 8, "warmup": 1, "repeats": 3, "ci_half_width": None, "max_noisy_retries": 0,
                "threads": 1}


def _study(spec, folder: Path, capsys) -> list[dict]:
    """Run the study, check its front and report; every trial's row (``pareto --all``)."""
    path = write_spec(spec, folder)
    assert main(["run", str(path)]) == 0
    capsys.readouterr()
    assert main(["pareto", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out), "a feasible front"
    assert main(["pareto", str(path), "--all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert main(["dashboard", str(path), "--out", str(folder / "report" / "index.html")]) == 0
    assert (folder / "report" / "index.html").stat().st_size > 10_000
    return rows


def _uniform(rows: list[dict], ratio: float) -> dict:
    return next(r for r in rows if r["plan"] and set(r["plan"].values()) == {ratio})


def _export_reloads_identically(path: Path, out: Path, inputs: torch.Tensor, capsys) -> dict:
    assert main(["export", str(path), "--pick", "knee", "--out", str(out), "--format", "onnx"]) == 0
    assert (out / "model.onnx").is_file(), "onnxruntime matched torch on the pruned Transformer"
    model = moprune.load_exported(out)
    again = moprune.load_exported(out)
    with torch.no_grad():
        assert torch.equal(model(inputs), again(inputs)), "identical logits on every reload"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--format", "json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    config = yaml.safe_load((out / "config.yaml").read_text())
    accuracy = evaluated["metrics"]["accuracy"]
    assert accuracy["measured"] == accuracy["recorded"] == pytest.approx(config["metrics"]["accuracy"]["value"])
    return config


@pytest.mark.slow
def test_a_bert_text_study_runs_exports_and_reloads_with_identical_logits(session_cwd, capsys):
    folder = session_cwd / "bert-text"
    folder.mkdir()
    spec = make_spec(
        name="bert_text", model={"arch": f"hf-config:{DATA / 'tiny_bert.json'}",
                                 "pretrain": {"epochs": 4, "lr": 0.001, "batch_size": 64, "optimizer": "adamw"}},
        data={"name": "text", "path": str(DATA / "reviews.csv"), "max_length": 24, "vocab_size": 500},
        prune={"granularity": "block", "ratio": {"low": 0.0, "high": 0.9, "step": 0.1}},
        finetune={"steps": 6, "lr": 0.0005, "batch_size": 64, "optimizer": "adamw", "warmup_steps": 2},
        constraints={"max_accuracy_drop": 0.1}, measure=FAST_MEASURE,
        search={"n_trials": 4, "sampler": "random", "seed_trials": ["dense", "uniform"], "uniform_count": 2})
    rows = _study(spec, folder, capsys)
    assert _uniform(rows, 0.9)["macs"] < 0.3 * _uniform(rows, 0.0)["macs"], "heads and MLP neurons removed"
    path = folder / "bert_text.yaml"
    config = _export_reloads_identically(path, folder / "export", torch.randint(5, 200, (4, 24)), capsys)
    assert (folder / "export" / "tokenizer.json").is_file() and config["model"]["text"]["tokenizer"] == "tokenizer.json"
    assert config["model"]["hf_config"]["model_type"] == "bert", "the export rebuilds without the config file"
    heads = {k: v for k, v in config["prune"]["channels"].items() if k.endswith("attention.self")}
    assert len(heads) == 2 and all(1 <= v <= 4 for v in heads.values())


@pytest.mark.slow
def test_a_vit_study_removes_heads_and_neurons_and_its_export_reloads(session_cwd, capsys):
    folder = session_cwd / "vit"
    folder.mkdir()
    spec = make_spec(
        name="vit_tiny", model={"arch": "vit_b_16", "kwargs": {"patch_size": 4, "num_layers": 2, "num_heads": 4,
                                                               "hidden_dim": 32, "mlp_dim": 64},
                                "pretrain": {"epochs": 3, "lr": 0.002, "batch_size": 64, "optimizer": "adamw"}},
        prune={"ratio": {"low": 0.0, "high": 0.8, "step": 0.1}},
        finetune={"steps": 4, "lr": 0.001, "batch_size": 64, "optimizer": "adamw", "warmup_steps": 1},
        constraints={"max_accuracy_drop": 1.0}, measure=FAST_MEASURE,
        search={"n_trials": 3, "sampler": "random", "seed_trials": ["uniform"], "uniform_count": 3})
    rows = _study(spec, folder, capsys)
    assert _uniform(rows, 0.8)["macs"] < 0.45 * _uniform(rows, 0.0)["macs"]
    path = folder / "vit_tiny.yaml"
    config = _export_reloads_identically(path, folder / "export", torch.randn(2, 3, 16, 16), capsys)
    channels = config["prune"]["channels"]
    assert channels["encoder.layers.encoder_layer_0.self_attention"] in (1, 2, 3, 4)
    assert channels["encoder.layers.encoder_layer_0.mlp"] % 8 == 0
