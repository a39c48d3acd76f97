"""Export a chosen trial (config.yaml, pruning.json, weights.pt, metrics.json; model.onnx on request).

The fine-tuned weights come from the files the search kept (``search.keep_weights``). When they are gone, the
trial's fine-tune is re-run through the study's one trial step from its recorded plan and data-order seed on the
cached dense model: deterministic on one CPU, and the export says which of the two it did and whether the accuracy
came out equal to the recorded one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from torch import nn

from ..errors import MopruneError, SpecError
from ..measure import resolve_device
from ..pareto import Pick, directions_of, objective_names, pick_trial, trials_frame
from ..record import TrialRecord, baseline_of, environment_of, spec_of
from ..search import artifacts_dir, load_trial_files, prepare_context, trial_dir
from ..spec import StudySpec
from ..torch_state import torch_threads
from ..train import DataBundle, dense_weights_path, evaluate, file_sha256, load_data
from .files import export_config, trial_metrics, write_bytes, write_weights
from .load import load_exported, model_config, rebuild_model
from .onnx import export_onnx, require_onnx

log = logging.getLogger(__name__)


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


def export_trial(study: optuna.Study, spec: StudySpec, rule: str, out: Path, *,
                 formats: tuple[str, ...] = ("torch",)) -> ExportResult:
    """Pick a trial by ``rule``, get its fine-tuned weights (kept, or re-fine-tuned) and write the export to ``out``."""
    out = Path(out)
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in ("torch", "onnx")]
    if unknown:
        raise SpecError(f"--format {unknown[0]!r}: choose torch or onnx")
    if "onnx" in formats:
        require_onnx()
    objectives = objective_names(study)
    frame = trials_frame(study)
    pick = pick_trial(rule, frame, objectives, directions_of(study), baseline_of(study))
    trial = {t.number: t for t in study.get_trials(deepcopy=False)}[pick.number]
    record = TrialRecord.of(trial)
    row = frame[frame["number"] == trial.number].iloc[0].to_dict()
    if not record.fine_tuned:
        reason = record.fail_reason or "it has no recorded fine-tune"
        raise SpecError(f"--pick {rule!r}: trial {trial.number} was never fine-tuned ({reason}); pick another trial")
    _check_out(out)
    run_spec, notes = _study_spec(study, spec)
    device = resolve_device(run_spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        notes.append(f"the study ran on {device} but no CUDA device is visible here; the export check runs on the CPU")
        device = torch.device("cpu")
    with torch_threads(run_spec.measure.threads):
        return _export(study, spec, run_spec, trial, record, row, rule, pick, out, formats, device, notes)


def _export(study: optuna.Study, spec: StudySpec, run_spec: StudySpec, trial: optuna.trial.FrozenTrial,
            record: TrialRecord, row: dict[str, Any], rule: str, pick: Pick, out: Path, formats: tuple[str, ...],
            device: torch.device, notes: list[str]) -> ExportResult:
    objectives = objective_names(study)
    kept_at = trial_dir(artifacts_dir(spec), trial.number)
    files = load_trial_files(kept_at)
    if files is not None:
        got = _kept_model(run_spec, files, device, kept_at)
    else:
        log.info("trial %d: its fine-tuned weights are not under %s (search.keep_weights: %s); re-running its "
                 "fine-tune (%d steps, seed %d) on %s", trial.number, kept_at, spec.search.keep_weights,
                 run_spec.finetune.steps, record.finetune_seed, device)
        got = _refinetuned_model(run_spec, study, record, device, notes)
    model, data = got.model, got.data

    # the accuracy of the one fine-tune the weights come from (not a mean over re-evaluations)
    recorded = _plain(row.get("accuracy_first")) if "accuracy" in objectives else None
    checked = evaluate(model, data.val)
    if recorded is not None and checked != recorded:
        threads = environment_of(study).get("threads")
        notes.append(f"accuracy of the exported weights is {checked:.6f} on {device}, but the trial recorded "
                     f"{recorded:.6f}" + (f" (study ran with {threads} threads, this process {torch.get_num_threads()})"
                                          if threads and threads != torch.get_num_threads() else ""))
    for note in notes:
        log.warning("%s", note)

    model = model.cpu().eval()
    batch = data.example_inputs(8).cpu()
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "pruning.json", json.dumps(got.history).encode())
    write_weights(out / "weights.pt", model)
    onnx_info = None
    if "onnx" in formats:
        onnx_info = export_onnx(model, batch, out / "model.onnx")
        log.info("model.onnx: onnxruntime matches torch (max abs difference %.2e)", onnx_info["max_abs_diff"])
    check = {"accuracy": checked, "device": str(device), "weights": got.source,
             "equals_recorded": None if recorded is None else checked == recorded}
    metrics = trial_metrics(study, trial, row, objectives, recorded, len(data.val), run_spec, check, onnx_info)
    write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    written = ["pruning.json", "weights.pt", *(["model.onnx"] if onnx_info else []), "metrics.json"]
    tokenizer = (data.text or {}).get("tokenizer")
    if tokenizer and Path(tokenizer).is_file():  # a tokenizer moprune trained: the model reads nothing else
        write_bytes(out / "tokenizer.json", Path(tokenizer).read_bytes())
        written.append("tokenizer.json")
    config = export_config(study, spec, run_spec, trial, pick, rule, data, got.dense_path, got.source, metrics, device,
                           {name: file_sha256(out / name) for name in written}, model=model)
    if "tokenizer.json" in written:
        config["model"]["text"]["tokenizer"] = "tokenizer.json"  # this folder's copy (tokenizers.Tokenizer.from_file)
    config = json.loads(json.dumps(config))  # plain types only (torch.__version__ is a str subclass yaml refuses)
    write_bytes(out / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())

    # The export must rebuild exactly the model we hold: check it from the files alone.
    loaded = load_exported(out)
    with torch.inference_mode():
        if not torch.equal(loaded(batch), model(batch)):
            raise MopruneError(f"{out}: the exported files do not rebuild the trial's model exactly (a bug; "
                               "please report it)")
    return ExportResult(out, study.study_name, trial.number, rule, pick, got.source, got.detail,
                        ("config.yaml", *written), recorded, checked, str(device), tuple(notes), onnx_info)


def _plain(value: Any) -> Any:
    if value is None:
        return None
    value = value.item() if hasattr(value, "item") else value
    return None if value != value else float(value)  # NaN: not recorded


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
    model = rebuild_model(model_config(spec, data), history, state)
    return _TrialModel(model.to(device), history, data, dense_weights_path(spec, data.num_classes), "kept",
                       f"saved when the trial finished, {kept_at}")


def _refinetuned_model(spec: StudySpec, study: optuna.Study, record: TrialRecord, device: torch.device,
                       notes: list[str]) -> _TrialModel:
    """The trial's model again through the study's trial step: prune the dense model by the plan, fine-tune."""
    ctx = prepare_context(spec, device=device)
    baseline = baseline_of(study)
    if baseline is not None and ctx.dense.sha256 != baseline.sha256:
        notes.append(f"the dense weights {ctx.dense.weights_path} (sha256 {ctx.dense.sha256[:12]}) are not those the "
                     f"study used (sha256 {baseline.sha256[:12]}): the re-fine-tuned model is not the trial's model")
    assert record.plan is not None and record.finetune_seed is not None
    pruned = ctx.refinetuned(record.plan, record.finetune_seed)
    if spec.prune.importance == "random":
        notes.append("prune.importance is random: the re-run chose its own channels, not the trial's")
    if record.channels and pruned.channels != record.channels:
        notes.append("the re-pruned model's kept channels differ from the trial's recorded channels")
    return _TrialModel(pruned.model, pruned.history, ctx.data, ctx.dense.weights_path, "re-fine-tuned",
                       f"not kept by the search; fine-tune re-run: {spec.finetune.steps} steps, seed "
                       f"{record.finetune_seed}, from the dense weights {ctx.dense.weights_path}")


def _study_spec(study: optuna.Study, spec: StudySpec) -> tuple[StudySpec, list[str]]:
    """The spec the trials ran with (stored in the study); the given one when the study holds none."""
    stored = spec_of(study)
    if stored is None:
        return spec, []
    try:
        return StudySpec.model_validate(stored), []
    except Exception as exc:  # a study written by an older moprune whose spec no longer validates
        return spec, [f"the study's stored spec does not validate ({type(exc).__name__}); using the given spec"]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {str(out)!r} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "config.yaml").is_file():
            raise SpecError(f"--out {str(out)!r} is not empty and holds no export; choose a new or empty folder")
        log.info("replacing the export in %s", out)
        (out / "model.onnx").unlink(missing_ok=True)
