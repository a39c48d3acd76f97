"""What an export's files say: metrics.json (the trial's measured values, spread and how they were taken) and
config.yaml (everything needed to rebuild and re-measure the model without the study database)."""

from __future__ import annotations

import copy
import datetime
import os
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from ..pareto import Pick
from ..record import TrialRecord, baseline_of, environment_of, spec_of
from ..search import environment, redact
from ..spec import StudySpec
from ..train import DataBundle, file_sha256
from ..version import __version__
from .load import model_config


def write_bytes(path: Path, payload: bytes) -> None:
    """Atomically: a killed export never leaves a half-written file under the final name."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def write_weights(path: Path, model: nn.Module) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)


def trial_metrics(study: optuna.Study, trial: optuna.trial.FrozenTrial, row: dict[str, Any], objectives: list[str],
                  accuracy: float | None, val_size: int, spec: StudySpec, check: dict[str, Any],
                  onnx_info: dict[str, Any] | None) -> dict[str, Any]:
    """metrics.json: the trial's recorded values with their device and spread, and the export's own checks.

    ``accuracy.value`` is the accuracy of the exported weights (the trial's own fine-tune); where the study
    re-evaluated the trial on fresh seeds, ``mean_over_finetunes``/``std``/``finetunes`` give what the front used.
    """
    r = TrialRecord.of(trial)
    env = environment_of(study)
    values = dict(zip(objectives, trial.values or []))
    m = spec.measure
    metrics: dict[str, Any] = {
        "accuracy": {"value": accuracy, "split": "validation", "samples": val_size, "finetune_seed": r.finetune_seed},
        "latency_ms": {"value": r.latency_ms, "p10": r.latency_ms_p10, "p90": r.latency_ms_p90,
                       "batch_size": m.batch_size, "repeats": m.repeats},
        "speedup": {"value": r.speedup, "p10": r.speedup_p10, "p90": r.speedup_p90,
                    "against": "dense model, timed in alternating rounds"},
        "energy_mj": {"value": r.energy_mj, "method": r.energy_method},
        "macs": {"value": r.macs},
        "params": {"value": r.params},
        "accuracy_pre_ft": {"value": r.accuracy_pre_ft},
    }
    if (row.get("accuracy_n") or 1) > 1:
        metrics["accuracy"].update(mean_over_finetunes=_plain(row["accuracy"]), std=_plain(row["accuracy_std"]),
                                   finetunes=int(row["accuracy_n"]))
    result = {
        "study": study.study_name, "trial": trial.number, "feasible": bool(row["feasible"]),
        "device": r.device or env.get("device"), "device_name": r.device_name or env.get("device_name"),
        "objectives": values, "metrics": metrics, "measured_with": r.how_measured(),
        "constraints": dict(trial.constraints),
        "baseline": _baseline_dict(study), "export_check": check,
    }
    if onnx_info:
        result["onnx"] = onnx_info
    return result


def export_config(study: optuna.Study, spec: StudySpec, run_spec: StudySpec, trial: optuna.trial.FrozenTrial,
                  pick: Pick, rule: str, data: DataBundle, dense_path: Path, source: str, metrics: dict[str, Any],
                  device: torch.device, hashes: dict[str, str], model: nn.Module | None = None) -> dict[str, Any]:
    """config.yaml: everything needed to rebuild and re-measure the model without the study database."""
    baseline = _baseline_dict(study)
    dense_sha = baseline.get("sha256")
    present = dense_path.is_file()
    # The spec as the study stored it (not re-dumped: keys added to moprune since would look as if they were used).
    dumped = copy.deepcopy(spec_of(study)) or run_spec.model_dump(mode="json")
    dumped["storage"] = redact(spec.storage_url)
    # Absolute paths: evaluate may run from another directory.
    dumped.setdefault("data", {})["root"] = str(Path(run_spec.data.root).resolve())
    for key in ("path", "val_path"):  # a text data set's files
        if getattr(run_spec.data, key) is not None:
            dumped["data"][key] = str(Path(getattr(run_spec.data, key)).resolve())
    if run_spec.model.arch.startswith("hf-config:"):
        dumped["model"]["arch"] = "hf-config:" + str(Path(run_spec.model.arch.partition(":")[2]).resolve())
    if run_spec.model.checkpoint is not None:
        dumped["model"]["checkpoint"] = str(Path(run_spec.model.checkpoint).resolve())
    record = TrialRecord.of(trial)
    return {
        "moprune_version": __version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "study": {"name": study.study_name, "storage": redact(spec.storage_url), "trial": trial.number,
                  "pick": {"rule": rule, "reason": pick.reason}},
        "model": {
            **model_config(run_spec, data, model),
            "dense_weights": {"path": str(dense_path.resolve()), "sha256": dense_sha, "source": baseline.get("source"),
                              "present_at_export": present and file_sha256(dense_path) == dense_sha},
        },
        "prune": {"method": run_spec.prune.method, "importance": run_spec.prune.importance,
                  "granularity": run_spec.prune.granularity, "round_to": run_spec.prune.round_to,
                  "plan": dict(record.plan or {}), "channels": dict(record.channels or {})},
        "finetune": {**run_spec.finetune.model_dump(mode="json"), "seed": record.finetune_seed, "weights": source},
        "metrics": {"device": metrics["device"], "device_name": metrics["device_name"], **metrics["metrics"]},
        "environment": environment_of(study),
        "export_environment": environment(device),
        **({"onnx": metrics["onnx"]} if "onnx" in metrics else {}),
        "files": hashes,
        "spec": dumped,
    }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _baseline_dict(study: optuna.Study) -> dict[str, Any]:
    found = baseline_of(study)
    return found.as_dict() if found is not None else {}
