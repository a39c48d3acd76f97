"""Spec validation: every bad spec exits 2 with one line naming the key, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from helpers import ROOT
from moprune.cli import main
from moprune.errors import SpecError
from moprune.search import preflight
from moprune.spec import StudySpec, load_spec, parse_spec

REPO = ROOT

BAD_SPECS = [
    ("nmae: quickstart\n", ["unknown key 'nmae'", "allowed keys", "name"]),
    ("prune: {ratioo: {high: 0.5}}\n", ["unknown key 'prune.ratioo'", "ratio"]),
    ("prune: {ratio: {high: 1.2}}\n", ["prune.ratio.high", "1.2", "less than 1"]),
    ("prune: {ratio: {low: 0.6, high: 0.4}}\n", ["prune.ratio", "low (0.6) must be <= high (0.4)"]),
    ("objectives: []\n", ["objectives", "at least one objective"]),
    ("objectives: [accuracy, speed]\n", ["objectives", "unknown objective 'speed'", "latency_ms"]),
    ("objectives: [accuracy, macs, macs]\n", ["objectives", "once"]),
    ("search: {sampler: cmaes}\n", ["search.sampler", "'cmaes'", "nsga2"]),
    ("device: gpu\n", ["device", "'gpu'", "cuda"]),
    ("finetune: {steps: -1}\n", ["finetune.steps", "-1", "greater than or equal to 0"]),
    ("prune: {method: nm, nm: '4:2'}\n", ["prune.nm", "'4:2'", "0 < N < M"]),
    ("prune: {method: magnitude}\n", ["prune.method", "'magnitude'", "unstructured"]),
    ("prune: {method: unstructured, round_to: 8}\n", ["prune", "round_to (8) rounds channel counts"]),
    ("prune: {method: nm, drop_blocks: true}\n", ["prune", "drop_blocks removes whole residual blocks",
                                                   "use method channel"]),
    ("prune: {method: nm, importance: taylor}\n", ["prune", "importance 'taylor' ranks channels: use l1 or l2"]),
    ("prune: {method: nm, schedule: {steps: 2}}\n", ["prune", "method nm takes no schedule"]),
    ("{prune: {method: unstructured}, search: {seed_trials: [dense, global]}}\n",
     ["search.seed_trials: 'global' is Torch-Pruning's global channel pruning"]),
    ("prune: {schedule: {steps: 0}}\n", ["prune.schedule.steps", "0", "greater than or equal to 1"]),
    ("prune: {schedule: {finetune_steps: -2}}\n", ["prune.schedule.finetune_steps", "-2"]),
    ("prune: {schedule: {step: 3}}\n", ["unknown key 'prune.schedule.step'", "steps, finetune_steps"]),
    ("finetune: {distill: {alpha: 1.5}}\n", ["finetune.distill.alpha", "1.5", "less than or equal to 1"]),
    ("finetune: {distill: {temperature: 0}}\n", ["finetune.distill.temperature", "0", "greater than 0"]),
    ("finetune: {distill: {alpah: 0.5}}\n", ["unknown key 'finetune.distill.alpah'", "alpha", "temperature"]),
    ("model: {arch: resnet1800}\n", ["model.arch", "resnet1800", "torchvision"]),
    ("model: {arch: 'not a factory:'}\n", ["model.arch", "package.module:factory"]),
    ("measure: {repeats: many}\n", ["measure.repeats", "'many'", "integer"]),
    ("name: my study\n", ["name", "'my study'"]),
    ("data: {name: imagenet}\n", ["data.name", "'imagenet'", "cifar10"]),
    ("prune: {importance: hessian}\n", ["prune.importance", "'hessian'", "l2"]),
    ("data: {val_fraction: 1.5}\n", ["data.val_fraction", "1.5"]),
    ("constraints: {max_accuracy_drop: -0.1}\n", ["constraints.max_accuracy_drop", "-0.1"]),
    ("search: {seed_trials: [dense, best]}\n", ["search.seed_trials", "'best'"]),
    ("name: [unclosed\n", ["not valid YAML", "line"]),
    ("- just\n- a list\n", ["YAML mapping"]),
]


@pytest.mark.parametrize("text,fragments", BAD_SPECS, ids=[t.split(":")[0].strip("- ") for t, _ in BAD_SPECS])
def test_bad_spec_exits_2_with_one_line(tmp_path, capsys, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_missing_checkpoint_fails_before_compute(tmp_path, capsys):
    path = tmp_path / "ckpt.yaml"
    path.write_text("model: {checkpoint: weights/missing.pt}\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model.checkpoint" in err and "weights/missing.pt" in err and "checkpoint: null" in err
    assert not Path("runs/quickstart.db").exists(), "no study may be created for an invalid spec"


def test_missing_data_root_fails_before_compute(tmp_path, capsys):
    path = tmp_path / "data.yaml"
    path.write_text(f"data: {{name: cifar10, root: {tmp_path / 'nowhere'}, download: false}}\n")
    assert main(["status", str(path)]) != 0  # status needs no data; run must refuse before loading anything
    capsys.readouterr()
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and "download: true" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_device_without_gpu_exits_2(tmp_path, capsys):
    path = tmp_path / "cuda.yaml"
    path.write_text("device: cuda\n")
    assert main(["run", str(path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_missing_spec_file_exits_2(capsys):
    assert main(["status", "no/such/spec.yaml"]) == 2
    assert "no such spec file" in capsys.readouterr().err


def test_defaults_match_the_design():
    spec = parse_spec({})
    assert spec.objectives == ["accuracy", "latency_ms", "macs"]
    assert spec.directions == ["maximize", "minimize", "minimize"]
    assert spec.storage_url == "sqlite:///runs/quickstart.db"
    assert spec.prune.ratio.high == 0.8 and spec.search.sampler == "nsga2"
    assert spec.constraints.max_accuracy_drop == 0.02


def test_spec_is_frozen():
    spec = parse_spec({})
    with pytest.raises(ValidationError, match=r"(?s)seed\n.*Instance is frozen") as err:
        spec.seed = 3  # type: ignore[misc]
    assert err.value.errors()[0]["type"] == "frozen_instance"
    with pytest.raises(ValidationError, match=r"(?s)high\n.*Instance is frozen"):  # nested sections too
        spec.prune.ratio.high = 0.1  # type: ignore[misc]
    assert spec.seed == 0 and spec.prune.ratio.high == 0.8


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "studies").glob("*.yaml")))
def test_shipped_specs_validate(name):
    spec = load_spec(REPO / "studies" / f"{name}.yaml")
    assert isinstance(spec, StudySpec) and spec.name == name


def test_gpu_specs_ask_for_energy_and_download():
    for name in ("resnet18_cifar10", "mobilenetv2_cifar10"):
        spec = load_spec(REPO / "studies" / f"{name}.yaml")
        assert "energy_mj" in spec.objectives and spec.data.download and spec.data.name == "cifar10"


def test_preflight_accepts_the_quickstart():
    preflight(load_spec(REPO / "studies" / "quickstart.yaml"))


def test_custom_factory_is_accepted():
    assert parse_spec({"model": {"arch": "tiny_models:small_cnn"}}).model.arch == "tiny_models:small_cnn"


def test_spec_error_is_a_spec_error():
    with pytest.raises(SpecError):
        parse_spec({"seed": -1})


def test_a_runtime_is_checked_with_the_spec_naming_what_to_install(monkeypatch):
    import importlib.util
    import shutil

    from moprune.spec import parse_spec

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SpecError, match=r"measure\.runtime.*onnxruntime needs onnxruntime.*moprune\[onnx\]"):
        parse_spec({"measure": {"runtime": "onnxruntime"}}, source="t")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpecError, match=r"measure\.runtime.*C\+\+ compiler"):
        parse_spec({"measure": {"runtime": "compile"}}, source="t")


def test_runtime_combinations_that_cannot_run_are_spec_errors():
    pytest.importorskip("onnxruntime")
    from moprune.spec import parse_spec

    with pytest.raises(SpecError, match="cuda_graph.*own streams"):
        parse_spec({"measure": {"runtime": "onnxruntime", "cuda_graph": True}}, source="t")
    with pytest.raises(SpecError, match="bfloat16"):
        parse_spec({"measure": {"runtime": "onnxruntime", "dtype": "bfloat16"}}, source="t")
    assert parse_spec({"measure": {"runtime": "eager", "dtype": "bfloat16", "channels_last": True}},
                      source="t").measure.channels_last


def test_model_kwargs_take_lists_for_per_stage_shapes_and_refuse_nested_tables():
    spec = parse_spec({"model": {"arch": "swin_t", "kwargs": {"patch_size": 2, "depths": [2, 2],
                                                                "num_heads": [3, 6]}}}, source="test")
    assert spec.model.kwargs["depths"] == [2, 2]
    for bad in ({"a": 1}, [1, "x"], [True]):
        with pytest.raises(SpecError, match=r"model\.kwargs: 'depths' is .*a number, a string, a boolean or a list "
                                            r"of numbers"):
            parse_spec({"model": {"arch": "swin_t", "kwargs": {"depths": bad}}}, source="test")


@pytest.mark.parametrize("screen", [{"starts": "screen"}, {"starts": "screen", "plans": 10, "sweep": 0}])
def test_screened_starts_without_a_sweep_to_screen_them_are_refused(screen):
    with pytest.raises(SpecError, match=r"search.screen.starts: screen .*neither fine-tuned nor screened"):
        parse_spec({"search": {"screen": screen}}, source="t")


def test_screen_shares_that_overfill_a_round_are_refused_before_any_compute():
    with pytest.raises(SpecError, match=r"search.screen.*allocate \(0.7\) \+ explore \(0.5\) is more than a round"
                                        r".*set explore to at most 0.3"):
        parse_spec({"search": {"screen": {"plans": 10, "allocate": 0.7, "explore": 0.5}}}, source="t")
    spec = parse_spec({"search": {"screen": {"plans": 10, "allocate": 0.5, "explore": 0.5}}})
    assert spec.search.screen.explore == 0.5
