"""`moprune evaluate` re-measures an export: the same MACs, params and (on the CPU) exactly the recorded accuracy."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from moprune.cli import main
from moprune.errors import SpecError
from moprune.ship.evaluate import NO_METER, evaluate_export, format_evaluation
from moprune.pareto import knee_point, objective_names, trials_frame
from moprune.record import TrialRecord


@pytest.fixture(scope="module")
def knee_export(tiny_study, tmp_path_factory):
    """`moprune export SPEC --pick knee --out DIR`, as a user runs it."""
    spec, study = tiny_study
    folder = tmp_path_factory.mktemp("evaluate")
    spec_file = folder / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    out = folder / "knee"
    assert main(["export", str(spec_file), "--pick", "knee", "--out", str(out)]) == 0
    return out


def test_export_knee_then_evaluate_json_matches_the_trial(tiny_study, knee_export, capsys):
    _, study = tiny_study
    capsys.readouterr()
    assert main(["evaluate", str(knee_export), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)

    objectives = objective_names(study)
    frame = trials_frame(study)
    number = knee_point(frame[frame["on_front"]], objectives, [d.name.lower() for d in study.directions])
    trial = study.trials[number]
    assert report["trial"] == number and report["device"] == "cpu"
    m = report["metrics"]
    assert m["macs"]["measured"] == m["macs"]["recorded"] == trial.user_attrs["macs"]
    assert m["params"]["measured"] == m["params"]["recorded"] == trial.user_attrs["params"]
    assert m["accuracy"]["measured"] == m["accuracy"]["recorded"] == trial.values[objectives.index("accuracy")]
    assert m["accuracy"]["difference"] == 0
    assert report["latency_paired"] and m["latency_ms"]["measured"] > 0 and m["speedup"]["measured"] > 0
    assert m["energy_mj"]["measured"] is None and m["energy_mj"]["note"] == NO_METER
    assert report["measured_as"] == measured_as_the_trial(tiny_study[0], trial)


def test_without_the_dense_weights_latency_is_timed_alone(tiny_study, knee_export, tmp_path):
    _, study = tiny_study
    copy = tmp_path / "copy"
    shutil.copytree(knee_export, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["model"]["dense_weights"]["path"] = str(tmp_path / "gone.pt")
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    report = evaluate_export(copy, device="cpu")
    assert not report.latency_paired and report.metric("speedup").measured is None
    assert any("timed alone" in note for note in report.notes)
    assert report.metric("accuracy").difference == 0  # the export needs no dense weights
    table = format_evaluation(report)
    for text in ("accuracy", "equal", "latency_ms", NO_METER, "note: latency timed alone"):
        assert text in table
    number = config["study"]["trial"]
    assert table.splitlines()[2] == report.measured_as == measured_as_the_trial(tiny_study[0], study.trials[number],
                                                                               paired=False)


def test_bad_device_is_a_usage_error(knee_export):
    with pytest.raises(SpecError, match="--device 'tpu'"):
        evaluate_export(knee_export, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="no CUDA device"):
            evaluate_export(knee_export, device="cuda")


def measured_as_the_trial(spec, trial, *, paired: bool = True) -> str:
    """The line `moprune evaluate` prints: the study's measure settings, and the trial's threads and timer."""
    m, record = spec.measure, TrialRecord.of(trial)
    return (f"measured as the trial was: the study's measure settings ({m.warmup} warm-up passes, at least "
            f"{m.repeats} rounds until the 95% CI is within ±{m.ci_half_width:.0%}, batch {m.batch_size}, "
            f"{record.torch_threads} threads, {record.latency_timer}, runtime {record.latency_runtime}, "
            + ("paired against dense)" if paired else "timed alone)"))


def test_evaluate_says_it_measured_as_the_trial_was_measured(tiny_study, knee_export, capsys):
    spec, study = tiny_study
    number = yaml.safe_load((knee_export / "config.yaml").read_text())["study"]["trial"]
    capsys.readouterr()
    assert main(["evaluate", str(knee_export)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"trial {number} of study 'tiny'") and lines[1].startswith("measured on cpu")
    assert lines[2] == measured_as_the_trial(spec, study.trials[number]), "under the device line, above the table"


def test_evaluate_re_measures_in_another_runtime_where_the_model_will_run(knee_export, capsys):
    pytest.importorskip("onnxruntime")
    capsys.readouterr()
    assert main(["evaluate", str(knee_export), "--runtime", "onnxruntime", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "runtime onnxruntime" in report["measured_as"] and "CPUExecutionProvider" in report["measured_as"]
    assert any("another runtime than the trial (eager float32)" in n for n in report["notes"])
    m = report["metrics"]
    assert m["accuracy"]["difference"] == 0, "accuracy is torch's, whatever runtime is timed"
    assert report["latency_paired"] and m["speedup"]["measured"] > 0, "dense is timed in the same runtime"


def test_a_runtime_that_is_not_installed_is_named_before_anything_loads(knee_export, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SpecError, match=r"onnxruntime needs onnxruntime \(not installed\).*moprune\[onnx\]"):
        evaluate_export(knee_export, runtime="onnxruntime")
