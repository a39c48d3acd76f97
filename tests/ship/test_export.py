"""An export rebuilds exactly the trial's fine-tuned model, from kept weights or a re-run fine-tune, loading safely."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import optuna

import pytest
import torch
import yaml
from helpers import make_spec

import moprune
from moprune.search.artifacts import artifacts_dir, load_trial_files, trial_dir
from moprune.cli import main
from moprune.train import load_data
from moprune.errors import MopruneError, SpecError
from moprune.ship import export_trial
from moprune.measure import count_complexity
from moprune.train import build_model, file_sha256
from moprune.pruning import kept_channels, replay_history
from moprune.train import evaluate

HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def kept_study(session_cwd):
    """One 40%-pruned trial whose fine-tuned weights the search kept (keep_weights: all)."""
    from moprune.search import run_study

    spec = make_spec(name="keepall", storage=f"sqlite:///{session_cwd / 'keepall.db'}",
                     finetune={"steps": 15, "lr": 0.02}, prune={"ratio": {"low": 0.4, "high": 0.8, "step": 0.1}},
                     search={"n_trials": 1, "seed_trials": ["uniform"], "uniform_count": 2, "keep_weights": "all"})
    study = run_study(spec, progress=False)
    trial = study.trials[0]  # the first uniform seed: every group pruned alike, 40% or more
    assert trial.state.name == "COMPLETE" and len(set(trial.user_attrs["plan"].values())) == 1
    assert min(trial.user_attrs["plan"].values()) >= 0.4
    return spec, study


@pytest.fixture(scope="module")
def kept_export(kept_study, tmp_path_factory):
    spec, study = kept_study
    out = tmp_path_factory.mktemp("export") / "kept"
    formats = ("torch", "onnx") if HAS_ONNX else ("torch",)
    return export_trial(study, spec, "trial:0", out, formats=formats)


@pytest.fixture(scope="module")
def val(kept_study):
    spec, _ = kept_study
    return load_data(spec.data, seed=spec.seed, device=torch.device("cpu")).val


def test_load_exported_equals_the_kept_trial_model(kept_study, kept_export, val):
    spec, study = kept_study
    trial = study.trials[0]
    assert kept_export.weights_source == "kept" and kept_export.number == 0
    state, history = load_trial_files(trial_dir(artifacts_dir(spec), 0))
    trial_model = replay_history(build_model("resnet18", 10), history, torch.zeros(1, 3, 16, 16))
    trial_model.load_state_dict(state)
    trial_model.eval()

    loaded = moprune.load_exported(kept_export.out)
    x, _ = next(val.batches(64))
    with torch.inference_mode():
        assert torch.equal(loaded(x), trial_model(x))
    assert evaluate(loaded, val) == trial.values[0] == kept_export.accuracy_checked  # exactly, on the CPU
    cx = count_complexity(loaded, x)
    assert (cx.macs, cx.params) == (trial.user_attrs["macs"], trial.user_attrs["params"])
    assert kept_channels(loaded) == trial.user_attrs["channels"]
    assert "kept" in kept_export.summary() and "equal" in kept_export.summary()


def test_every_file_loads_safely_and_config_rebuilds_without_the_study(kept_study, kept_export):
    spec, study = kept_study
    trial, out = study.trials[0], kept_export.out
    state = torch.load(out / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    history = json.loads((out / "pruning.json").read_text())
    assert history  # a pruned model: the structural record is not empty
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["accuracy"]["value"] == trial.values[0]
    assert metrics["metrics"]["macs"]["value"] == trial.user_attrs["macs"]
    assert metrics["metrics"]["latency_ms"]["p90"] == trial.user_attrs["latency_ms_p90"]

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert {k: config["study"][k] for k in ("name", "storage", "trial")} == {
        "name": "keepall", "storage": spec.storage_url, "trial": 0}
    assert config["study"]["pick"]["rule"] == "trial:0"
    model = config["model"]
    assert (model["arch"], model["num_classes"], model["image_size"]) == ("resnet18", 10, 16)
    assert model["dense_weights"]["sha256"] == study.user_attrs["baseline"]["sha256"]
    assert model["dense_weights"]["present_at_export"] is True
    assert config["prune"]["plan"] == trial.user_attrs["plan"]
    assert config["prune"]["channels"] == trial.user_attrs["channels"]
    assert config["finetune"]["seed"] == trial.user_attrs["finetune_seed"]
    assert config["metrics"]["device"] == "cpu" and config["metrics"]["latency_ms"]["p10"] > 0
    assert config["environment"]["torch"] == torch.__version__
    assert config["moprune_version"] == moprune.__version__
    assert config["spec"]["data"]["name"] == "digits"
    for name, digest in config["files"].items():
        assert file_sha256(out / name) == digest
    assert set(kept_export.files) == {"config.yaml", *config["files"]}


def test_export_after_weights_are_gone_refinetunes_the_same_model(kept_study, kept_export, tmp_path, val, caplog):
    spec, study = kept_study
    empty = tmp_path / "no-artifacts"
    empty.mkdir()
    elsewhere = spec.model_copy(update={"search": spec.search.model_copy(update={"artifacts_dir": empty})})
    with caplog.at_level("INFO", logger="moprune"):
        result = export_trial(study, elsewhere, "trial:0", tmp_path / "refit")
    messages = [r.getMessage() for r in caplog.records]

    assert result.weights_source == "re-fine-tuned" and not result.warnings
    assert "re-fine-tuned" in result.summary() and "equal" in result.summary()
    assert any("re-running its fine-tune" in m for m in messages)
    x, _ = next(val.batches(64))
    with torch.inference_mode():
        assert torch.equal(moprune.load_exported(result.out)(x), moprune.load_exported(kept_export.out)(x))
    assert result.accuracy_checked == study.trials[0].values[0]
    config = yaml.safe_load((result.out / "config.yaml").read_text())
    assert config["finetune"]["weights"] == "re-fine-tuned"


@pytest.mark.skipif(not HAS_ONNX, reason="needs the onnx extra (onnx, onnxruntime)")
def test_onnx_export_matches_torch(kept_export, val):
    import onnxruntime as ort

    out = kept_export.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["onnx"]["max_abs_diff"] <= 1e-4
    x, _ = next(val.batches(50))  # a batch size the export was not traced with
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.inference_mode():
        want = moprune.load_exported(out)(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_onnx_without_the_extra_exits_2(tiny_study, tmp_path, monkeypatch, capsys):
    spec, _ = tiny_study
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    code = main(["export", str(spec_file), "--pick", "knee", "--out", str(tmp_path / "x"), "--format", "onnx"])
    assert code == 2 and "install moprune[onnx]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_reevaluated_trial_exports_its_own_weights_accuracy_and_the_mean(kept_study, tmp_path):
    spec, study = kept_study
    db = tmp_path / "copy.db"
    shutil.copy(spec.storage_url.removeprefix("sqlite:///"), db)  # a copy: the module's study stays as it was
    copy = spec.model_copy(update={"storage": f"sqlite:///{db}"})
    reopened = optuna.load_study(study_name=spec.name, storage=copy.storage)
    reopened.set_user_attr("reeval:0", [0.5, 0.25])  # as moprune.search records two fresh fine-tunes
    result = export_trial(reopened, copy, "trial:0", tmp_path / "out")

    first = study.trials[0].values[0]
    accuracy = json.loads((result.out / "metrics.json").read_text())["metrics"]["accuracy"]
    assert result.weights_source == "kept" and result.accuracy_checked == accuracy["value"] == first
    assert accuracy["finetunes"] == 3 and accuracy["mean_over_finetunes"] == pytest.approx((first + 0.75) / 3)


def test_export_refuses_a_folder_that_is_not_an_export(tiny_study, tmp_path):
    spec, study = tiny_study
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SpecError, match="not empty and holds no export"):
        export_trial(study, spec, "knee", tmp_path)


def test_load_exported_names_what_is_missing(tmp_path):
    with pytest.raises(MopruneError, match="no config.yaml"):
        moprune.load_exported(tmp_path)


def test_a_searched_plan_that_dropped_blocks_exports_and_loads_as_the_trial_model(session_cwd, tmp_path):
    """prune.drop_blocks: the sampler drops residual blocks; the export replays the drops, then the channels."""
    from moprune.search import run_study

    spec = make_spec(name="dropblocks", storage=f"sqlite:///{session_cwd / 'dropblocks.db'}",
                     prune={"drop_blocks": True, "ratio": {"low": 0.0, "high": 0.6, "step": 0.1}},
                     finetune={"steps": 3}, measure={"threads": 1, "ci_half_width": None},
                     search={"n_trials": 4, "seed_trials": ["dense"], "sampler": "random", "keep_weights": "all"})
    study = run_study(spec, progress=False)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    dropped = [t for t in done if any(k.startswith("drop:") and v for k, v in t.user_attrs["plan"].items())]
    assert dropped, "three random plans over five residual blocks drop at least one"
    assert not any(k.startswith("drop:") for k in done[0].user_attrs["plan"]), "the dense start drops nothing"
    trial = dropped[0]
    assert all(trial.params[f"drop/{k[5:]}"] == 1 for k, v in trial.user_attrs["plan"].items()
               if k.startswith("drop:") and v)
    got = export_trial(study, spec, f"trial:{trial.number}", tmp_path / "dropped", formats=("torch",))
    loaded = moprune.load_exported(got.out)
    val = load_data(spec.data, seed=spec.seed, device=torch.device("cpu")).val
    assert evaluate(loaded, val) == trial.values[0] == got.accuracy_checked
    assert kept_channels(loaded) == trial.user_attrs["channels"]
    assert (count_complexity(loaded, next(val.batches(2))[0]).macs == trial.user_attrs["macs"]
            < study.trials[0].user_attrs["macs"])
