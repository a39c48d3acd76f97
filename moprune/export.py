"""Export a chosen trial (config.yaml, pruning.json, weights.pt, metrics.json; model.onnx on request) and load it back.

The fine-tuned weights come from the files the search kept (``search.keep_weights``). When they are gone, the
trial's fine-tune is re-run from its recorded plan and data-order seed on the cached dense model: deterministic on
one CPU, and the export says which of the two it did and whether the accuracy came out equal to the recorded one.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from torch import nn

from . import __version__
from .artifacts import artifacts_dir, load_trial_files, trial_dir
from .context import StudyContext, environment, prepare_context, resolve_device
from .data import DataBundle, load_data
from .errors import MopruneError, SpecError
from .models import CACHE_DIR, build_model, file_sha256, pretrain_key
from .pareto import objective_names, trials_frame
from .pick import Pick, pick_trial
from .prune import apply_plan, replay_history
from .spec import StudySpec
from .train import evaluate, train

# Trial user attrs that say how latency and energy were taken (see moprune.measure.architecture.as_attrs).
MEASURE_ATTRS = ("latency_timer", "torch_threads", "latency_rounds", "latency_discarded_rounds", "latency_noisy",
                 "latency_disturbance_check", "latency_other_cpu_max", "dense_latency_ms", "energy_window_s",
                 "energy_passes", "idle_power_w", "driver", "sm_clock_mhz_start", "sm_clock_mhz_end",
                 "cudnn_benchmark", "measure_cached")
ONNX_ATOL = 1e-4
Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportResult:
    out: Path
    study: str
    number: int
    rule: str
    pick: Pick
    weights_source: str  # "kept" | "re-fine-tuned"
    weights_detail: str  # where the kept files were, or the seed and steps of the re-run fine-tune
    files: tuple[str, ...]
    accuracy_recorded: float | None
    accuracy_checked: float
    check_device: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    onnx: dict[str, Any] | None = None

    @property
    def accuracy_equal(self) -> bool | None:
        return None if self.accuracy_recorded is None else self.accuracy_checked == self.accuracy_recorded

    def summary(self) -> str:
        if self.accuracy_recorded is None:
            recorded = "no accuracy recorded"
        elif self.accuracy_equal:
            recorded = f"recorded {self.accuracy_recorded:.4f}, equal"
        else:
            recorded = (f"recorded {self.accuracy_recorded:.4f}, DIFFERENT by "
                        f"{self.accuracy_checked - self.accuracy_recorded:+.4f}")
        lines = [
            f"exported trial {self.number} of study {self.study!r} to {self.out}",
            f"  picked by {self.rule!r}: {self.pick.reason}",
            f"  weights: {self.weights_source} ({self.weights_detail})",
            f"  accuracy on the validation split ({self.check_device}): {self.accuracy_checked:.4f} ({recorded})",
            f"  files: {', '.join(self.files)}",
            *([f"  onnx: outputs checked with {self.onnx['checked_with']}: max abs difference "
               f"{self.onnx['max_abs_diff']:.1e} (atol {self.onnx['atol']:g})"] if self.onnx else []),
            *(f"  WARNING: {w}" for w in self.warnings),
            f"  load with moprune.load_exported({str(self.out)!r}); re-measure with `moprune evaluate {self.out}`",
        ]
        return "\n".join(lines)


# --- loading ----------------------------------------------------------------------------------------------------------

def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise MopruneError(f"{folder}: no config.yaml; is this a folder written by `moprune export`?")
    return yaml.safe_load(path.read_text())


def rebuild_model(arch: str, num_classes: int, image_size: int, in_channels: int, history: list[Any],
                  state: dict[str, torch.Tensor]) -> nn.Module:
    """Dense architecture -> replay the pruning history -> load the pruned weights; on the CPU, in eval mode."""
    # Torch-Pruning traces the graph through autograd: build normal tensors even if the caller is in inference mode.
    with torch.inference_mode(False), torch.enable_grad():
        model = build_model(arch, num_classes)
        replay_history(model, history, torch.zeros(1, in_channels, image_size, image_size))
        model.load_state_dict(state)
    return model.eval()


def load_exported(folder: str | Path) -> nn.Module:
    """The exported pruned model (CPU, eval mode); needs no dense weights and never ``weights_only=False``."""
    folder = Path(folder)
    m = read_config(folder)["model"]
    for name in ("pruning.json", "weights.pt"):
        if not (folder / name).is_file():
            raise MopruneError(f"{folder}: {name} is missing; re-run `moprune export`")
    history = json.loads((folder / "pruning.json").read_text())
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    return rebuild_model(m["arch"], m["num_classes"], m["image_size"], m["in_channels"], history, state)


# --- export -----------------------------------------------------------------------------------------------------------

def export_trial(study: optuna.Study, spec: StudySpec, rule: str, out: Path, *, formats: tuple[str, ...] = ("torch",),
                 log: Log = print) -> ExportResult:
    """Pick a trial by ``rule``, get its fine-tuned weights (kept, or re-fine-tuned) and write the export to ``out``."""
    out = Path(out)
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in ("torch", "onnx")]
    if unknown:
        raise SpecError(f"--format {unknown[0]!r}: choose torch or onnx")
    if "onnx" in formats:
        _require_onnx()
    objectives = objective_names(study)
    directions = [d.name.lower() for d in study.directions]
    frame = trials_frame(study)
    pick = pick_trial(rule, frame, objectives, directions)
    trial = {t.number: t for t in study.get_trials(deepcopy=False)}[pick.number]
    row = frame[frame["number"] == trial.number].iloc[0].to_dict()
    if trial.user_attrs.get("rejected") or "finetune_seed" not in trial.user_attrs:
        reason = trial.user_attrs.get("fail_reason", "it has no recorded fine-tune")
        raise SpecError(f"--pick {rule!r}: trial {trial.number} was never fine-tuned ({reason}); pick another trial")
    _check_out(out, log)
    run_spec, notes = _study_spec(study, spec)
    device = resolve_device(run_spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        notes.append(f"the study ran on {device} but no CUDA device is visible here; the export check runs on the CPU")
        device = torch.device("cpu")

    kept_at = trial_dir(artifacts_dir(spec), trial.number)
    files = load_trial_files(kept_at)
    if files is not None:
        got = _kept_model(run_spec, files, device, kept_at)
    else:
        log(f"trial {trial.number}: its fine-tuned weights are not under {kept_at} (search.keep_weights: "
            f"{spec.search.keep_weights}); re-running its fine-tune ({run_spec.finetune.steps} steps, seed "
            f"{trial.user_attrs['finetune_seed']}) on {device}")
        got = _refinetuned_model(run_spec, study, trial.user_attrs, device, notes, log)
    model, data = got.model, got.data

    recorded = recorded_accuracy(trial, objectives)
    checked = evaluate(model, data.val)
    if recorded is not None and checked != recorded:
        threads = study.user_attrs.get("environment", {}).get("threads")
        notes.append(f"accuracy of the exported weights is {checked:.6f} on {device}, but the trial recorded "
                     f"{recorded:.6f}" + (f" (study ran with {threads} threads, this process {torch.get_num_threads()})"
                                          if threads and threads != torch.get_num_threads() else ""))
    for note in notes:
        log(f"WARNING: {note}")

    model = model.cpu().eval()
    batch = data.example_inputs(8).cpu()
    out.mkdir(parents=True, exist_ok=True)
    _write_bytes(out / "pruning.json", json.dumps(got.history).encode())
    _write_weights(out / "weights.pt", model)
    onnx_info = None
    if "onnx" in formats:
        onnx_info = export_onnx(model, batch, out / "model.onnx")
        log(f"model.onnx: onnxruntime matches torch (max abs difference {onnx_info['max_abs_diff']:.2e})")
    check = {"accuracy": checked, "device": str(device), "weights": got.source,
             "equals_recorded": None if recorded is None else checked == recorded}
    metrics = trial_metrics(study, trial, row, objectives, recorded, len(data.val), run_spec, check, onnx_info)
    _write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    written = ["pruning.json", "weights.pt", *(["model.onnx"] if onnx_info else []), "metrics.json"]
    config = export_config(study, spec, run_spec, trial, pick, rule, data, got.dense_path, got.source, metrics, device,
                           {name: file_sha256(out / name) for name in written})
    config = json.loads(json.dumps(config))  # plain types only (torch.__version__ is a str subclass yaml refuses)
    _write_bytes(out / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())

    # The export must rebuild exactly the model we hold: check it from the files alone.
    loaded = load_exported(out)
    with torch.inference_mode():
        if not torch.equal(loaded(batch), model(batch)):
            raise MopruneError(f"{out}: the exported files do not rebuild the trial's model exactly (a bug; "
                               "please report it)")
    return ExportResult(out, study.study_name, trial.number, rule, pick, got.source, got.detail,
                        ("config.yaml", *written), recorded, checked, str(device), tuple(notes), onnx_info)


def recorded_accuracy(trial: optuna.trial.FrozenTrial, objectives: list[str]) -> float | None:
    """Accuracy of the single fine-tune the weights come from (``accuracy_first`` when re-evaluations averaged it)."""
    if "accuracy_first" in trial.user_attrs:
        return float(trial.user_attrs["accuracy_first"])
    if "accuracy" in objectives and trial.values is not None:
        return float(trial.values[objectives.index("accuracy")])
    return None


@dataclass
class _TrialModel:
    model: nn.Module  # on the export device, eval mode
    history: list[Any]  # Torch-Pruning's pruning history
    data: DataBundle
    dense_path: Path  # the dense weights the pruned model came from
    source: str  # "kept" | "re-fine-tuned"
    detail: str


def _kept_model(spec: StudySpec, files: tuple[dict[str, torch.Tensor], list[Any]], device: torch.device,
                kept_at: Path) -> _TrialModel:
    state, history = files
    data = load_data(spec.data, seed=spec.seed, device=device)
    model = rebuild_model(spec.model.arch, data.num_classes, data.image_size, data.in_channels, history, state)
    return _TrialModel(model.to(device), history, data, _dense_weights_path(spec, data.num_classes), "kept",
                       f"saved when the trial finished, {kept_at}")


def _refinetuned_model(spec: StudySpec, study: optuna.Study, attrs: dict[str, Any], device: torch.device,
                       notes: list[str], log: Log) -> _TrialModel:
    ctx = prepare_context(spec, device=device, log=log)
    baseline_sha = study.user_attrs.get("baseline", {}).get("sha256")
    if baseline_sha and ctx.dense.sha256 != baseline_sha:
        notes.append(f"the dense weights {ctx.dense.weights_path} (sha256 {ctx.dense.sha256[:12]}) are not those the "
                     f"study used (sha256 {baseline_sha[:12]}): the re-fine-tuned model is not the trial's model")
    model, history = _refinetune(ctx, attrs, notes)
    return _TrialModel(model, history, ctx.data, ctx.dense.weights_path, "re-fine-tuned",
                       f"not kept by the search; fine-tune re-run: {spec.finetune.steps} steps, seed "
                       f"{attrs['finetune_seed']}, from the dense weights {ctx.dense.weights_path}")


def _refinetune(ctx: StudyContext, attrs: dict[str, Any], notes: list[str]) -> tuple[nn.Module, list[Any]]:
    """The trial's model again, exactly as ``Objective._run`` made it: prune the dense model by the plan, fine-tune."""
    spec, ft = ctx.spec, ctx.spec.finetune
    calibration = next(ctx.data.train.batches(ft.batch_size)) if spec.prune.importance == "taylor" else None
    pruned = apply_plan(ctx.dense.model, attrs["plan"], ctx.trace_inputs, importance=spec.prune.importance,
                        round_to=spec.prune.round_to, calibration=calibration)
    if spec.prune.importance == "random":
        notes.append("prune.importance is random: the re-run chose its own channels, not the trial's")
    if attrs.get("channels") and pruned.channels != attrs["channels"]:
        notes.append("the re-pruned model's kept channels differ from the trial's recorded channels")
    train(pruned.model, ctx.data.train, steps=ft.steps, lr=ft.lr, batch_size=ft.batch_size, optimizer=ft.optimizer,
          seed=attrs["finetune_seed"])
    return pruned.model.eval(), pruned.history


def _study_spec(study: optuna.Study, spec: StudySpec) -> tuple[StudySpec, list[str]]:
    """The spec the trials ran with (stored in the study); the given one when the study holds none."""
    stored = study.user_attrs.get("spec")
    if stored is None:
        return spec, []
    try:
        return StudySpec.model_validate(stored), []
    except Exception as exc:  # a study written by an older moprune whose spec no longer validates
        return spec, [f"the study's stored spec does not validate ({type(exc).__name__}); using the given spec"]


def _dense_weights_path(spec: StudySpec, num_classes: int) -> Path:
    # Mirrors moprune.models.load_dense: the user's checkpoint, else the pretrain cache entry.
    if spec.model.checkpoint is not None:
        return Path(spec.model.checkpoint)
    return CACHE_DIR / f"{spec.model.arch.replace(':', '.')}-{pretrain_key(spec, num_classes)}.pt"


def _check_out(out: Path, log: Log) -> None:
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {str(out)!r} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "config.yaml").is_file():
            raise SpecError(f"--out {str(out)!r} is not empty and holds no export; choose a new or empty folder")
        log(f"replacing the export in {out}")
        (out / "model.onnx").unlink(missing_ok=True)


def _write_bytes(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _write_weights(path: Path, model: nn.Module) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)


# --- what the files say -----------------------------------------------------------------------------------------------

def trial_metrics(study: optuna.Study, trial: optuna.trial.FrozenTrial, row: dict[str, Any], objectives: list[str],
                  accuracy: float | None, val_size: int, spec: StudySpec, check: dict[str, Any],
                  onnx_info: dict[str, Any] | None) -> dict[str, Any]:
    """metrics.json: the trial's recorded values with their device and spread, and the export's own checks.

    ``accuracy.value`` is the accuracy of the exported weights (the trial's own fine-tune); where the study
    re-evaluated the trial on fresh seeds, ``mean_over_finetunes``/``std``/``finetunes`` give what the front used.
    """
    a = trial.user_attrs
    env = study.user_attrs.get("environment", {})
    values = dict(zip(objectives, trial.values or []))
    m = spec.measure
    metrics: dict[str, Any] = {
        "accuracy": {"value": accuracy, "split": "validation", "samples": val_size,
                     "finetune_seed": a.get("finetune_seed")},
        "latency_ms": {"value": a.get("latency_ms", values.get("latency_ms")), "p10": a.get("latency_ms_p10"),
                       "p90": a.get("latency_ms_p90"), "batch_size": m.batch_size, "repeats": m.repeats},
        "speedup": {"value": a.get("speedup"), "p10": a.get("speedup_p10"), "p90": a.get("speedup_p90"),
                    "against": "dense model, timed in alternating rounds"},
        "energy_mj": {"value": a.get("energy_mj", values.get("energy_mj")), "method": a.get("energy_method")},
        "macs": {"value": a.get("macs", values.get("macs"))},
        "params": {"value": a.get("params", values.get("params"))},
        "accuracy_pre_ft": {"value": a.get("accuracy_pre_ft")},
    }
    if (row.get("accuracy_n") or 1) > 1:
        metrics["accuracy"].update(mean_over_finetunes=_plain(row["accuracy"]), std=_plain(row["accuracy_std"]),
                                   finetunes=int(row["accuracy_n"]))
    result = {
        "study": study.study_name, "trial": trial.number, "feasible": bool(row["feasible"]),
        "device": a.get("device", env.get("device")), "device_name": a.get("device_name", env.get("device_name")),
        "objectives": values, "metrics": metrics, "measured_with": {k: a[k] for k in MEASURE_ATTRS if k in a},
        "constraints": dict(trial.constraints),
        "baseline": study.user_attrs.get("baseline", {}), "export_check": check,
    }
    if onnx_info:
        result["onnx"] = onnx_info
    return result


def export_config(study: optuna.Study, spec: StudySpec, run_spec: StudySpec, trial: optuna.trial.FrozenTrial,
                  pick: Pick, rule: str, data: DataBundle, dense_path: Path, source: str, metrics: dict[str, Any],
                  device: torch.device, hashes: dict[str, str]) -> dict[str, Any]:
    """config.yaml: everything needed to rebuild and re-measure the model without the study database."""
    baseline = study.user_attrs.get("baseline", {})
    dense_sha = baseline.get("sha256")
    present = dense_path.is_file()
    # The spec as the study stored it (not re-dumped: keys added to moprune since would look as if they were used).
    dumped = copy.deepcopy(study.user_attrs.get("spec")) or run_spec.model_dump(mode="json")
    dumped["storage"] = _hide_password(spec.storage_url)
    # Absolute paths: evaluate may run from another directory.
    dumped.setdefault("data", {})["root"] = str(Path(run_spec.data.root).resolve())
    if run_spec.model.checkpoint is not None:
        dumped["model"]["checkpoint"] = str(Path(run_spec.model.checkpoint).resolve())
    return {
        "moprune_version": __version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "study": {"name": study.study_name, "storage": _hide_password(spec.storage_url), "trial": trial.number,
                  "pick": {"rule": rule, "reason": pick.reason}},
        "model": {
            "arch": run_spec.model.arch, "num_classes": data.num_classes, "image_size": data.image_size,
            "in_channels": data.in_channels,
            "dense_weights": {"path": str(dense_path.resolve()), "sha256": dense_sha, "source": baseline.get("source"),
                              "present_at_export": present and file_sha256(dense_path) == dense_sha},
        },
        "prune": {"method": run_spec.prune.method, "importance": run_spec.prune.importance,
                  "granularity": run_spec.prune.granularity, "round_to": run_spec.prune.round_to,
                  "plan": dict(trial.user_attrs.get("plan", {})),
                  "channels": dict(trial.user_attrs.get("channels", {}))},
        "finetune": {**run_spec.finetune.model_dump(mode="json"), "seed": trial.user_attrs.get("finetune_seed"),
                     "weights": source},
        "metrics": {"device": metrics["device"], "device_name": metrics["device_name"], **metrics["metrics"]},
        "environment": study.user_attrs.get("environment", {}),
        "export_environment": environment(device),
        **({"onnx": metrics["onnx"]} if "onnx" in metrics else {}),
        "files": hashes,
        "spec": dumped,
    }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


# --- ONNX -------------------------------------------------------------------------------------------------------------

def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise SpecError(f"--format onnx needs the onnx extra ({exc.name} is not installed): "
                        "install moprune[onnx], e.g. pip install 'moprune[onnx]'") from None


def export_onnx(model: nn.Module, batch: torch.Tensor, path: Path) -> dict[str, Any]:
    """Write ``model.onnx`` (dynamic batch) and check onnxruntime's outputs against torch's (atol 1e-4)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo=True, which needs onnxscript as well.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (batch[:2],), str(tmp), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(str(tmp))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": batch.numpy()})[0]
    with torch.inference_mode():
        want = model(batch).numpy()
    diff = float(np.abs(got - want).max())
    if not diff <= ONNX_ATOL:
        tmp.unlink(missing_ok=True)
        raise MopruneError(f"model.onnx: onnxruntime's outputs differ from torch's by {diff:.2e} (> {ONNX_ATOL}); "
                           "not written")
    os.replace(tmp, path)
    opset = onnx.load(str(path), load_external_data=False).opset_import[0].version
    return {"file": path.name, "opset": opset, "checked_with": f"onnxruntime {ort.__version__} (CPU)",
            "batch": len(batch), "max_abs_diff": diff, "atol": ONNX_ATOL}
