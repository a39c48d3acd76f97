"""``moprune evaluate``: re-measure an exported model on its study's data split and print it beside the record.

Everything is measured as the trial measured it: the study's ``MeasureSettings`` (warm-up, rounds, precision rule,
disturbance check, CUDA graphs, thread count) through the same ``measure_architecture`` call, paired against the
dense model when the dense weights the study used are still there (else timed alone, and the report says so).
Energy is measured only where a meter exists, in the same window as the trial's; it is never estimated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MopruneError, SpecError
from ..measure import (EnergyMeasurementError, MeasureSettings, NoEnergyMeter, RoundsInfo, count_complexity,
                       device_name, energy_meter_for, measure_architecture, resolve_device)
from ..pruning import prunable_form
from ..spec import StudySpec, parse_spec
from ..torch_state import torch_threads
from ..train import build_model, evaluate, file_sha256, load_checkpoint, load_data
from .load import load_exported, read_config

NO_METER = "not measured (no meter on this device)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricRow:
    name: str
    unit: str
    measured: float | None
    recorded: float | None
    measured_spread: tuple[float, float] | None = None  # (p10, p90)
    recorded_spread: tuple[float, float] | None = None
    note: str = ""

    @property
    def difference(self) -> float | None:
        if self.measured is None or self.recorded is None:
            return None
        return self.measured - self.recorded

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"measured": self.measured, "recorded": self.recorded, "difference": self.difference,
                               "unit": self.unit}
        if self.measured_spread:
            out["measured_p10"], out["measured_p90"] = self.measured_spread
        if self.recorded_spread:
            out["recorded_p10"], out["recorded_p90"] = self.recorded_spread
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class EvaluationReport:
    export_dir: Path
    study: str
    trial: int
    device: str
    device_name: str
    recorded_device: str | None
    recorded_device_name: str | None
    rows: tuple[MetricRow, ...]
    latency_paired: bool
    notes: tuple[str, ...]
    measured_as: str = ""  # the settings, as the trial used them
    rounds: dict[str, Any] | None = None  # how the latency rounds went (timer, threads, disturbed rounds)
    energy: dict[str, Any] | None = None  # meter, idle power, window, passes (None: not measured)

    def metric(self, name: str) -> MetricRow:
        return next(row for row in self.rows if row.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "export": str(self.export_dir), "study": self.study, "trial": self.trial,
            "device": self.device, "device_name": self.device_name,
            "recorded_device": self.recorded_device, "recorded_device_name": self.recorded_device_name,
            "latency_paired": self.latency_paired, "measured_as": self.measured_as, "latency_rounds": self.rounds,
            "energy_measurement": self.energy,
            "metrics": {row.name: row.as_dict() for row in self.rows},
            "notes": list(self.notes),
        }


def evaluate_export(folder: Path, *, device: str | None = None, runtime: str | None = None,
                    dtype: str | None = None, channels_last: bool | None = None) -> EvaluationReport:
    """Re-measure the export in ``folder`` on ``device`` (default: the device its metrics were recorded on), in the
    study's runtime or in ``runtime`` / ``dtype`` / ``channels_last`` (the model and dense alike), so a user checks
    the front's choice where it will run. An override is validated as the spec is (a runtime not installed is a
    SpecError naming the package) before anything loads."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        recorded = json.loads((folder / "metrics.json").read_text())
    except FileNotFoundError:
        raise MopruneError(f"{folder}: metrics.json is missing; re-run `moprune export`") from None
    spec = parse_spec(config["spec"], source=str(folder / "config.yaml"))
    notes: list[str] = []
    overrides = {k: v for k, v in (("runtime", runtime), ("dtype", dtype), ("channels_last", channels_last))
                 if v is not None}
    if overrides:
        asked = {**config["spec"], "measure": {**config["spec"].get("measure", {}), **overrides}}
        spec = parse_spec(asked, source="--runtime / --dtype / --channels-last")
        was = recorded.get("measured_with", {}).get("latency_runtime") or "eager float32"
        notes.append(f"measured in another runtime than the trial ({was}): the recorded latency, speedup and energy "
                     "are the trial's in its own; the difference is the runtime's")
    dev = _device(device, recorded.get("device"), spec, notes)
    _check_files(folder, config, notes)
    with torch_threads(spec.measure.threads):
        return _evaluate(folder, config, recorded, spec, dev, notes)


def _evaluate(folder: Path, config: dict[str, Any], recorded: dict[str, Any], spec: StudySpec, dev: torch.device,
              notes: list[str]) -> EvaluationReport:
    data = load_data(spec.data, seed=spec.seed, device=dev)
    if data.num_classes != config["model"]["num_classes"]:
        raise MopruneError(f"{folder}: the data set now has {data.num_classes} classes, the export "
                           f"{config['model']['num_classes']}; is data.root pointing at other data?")
    model = load_exported(folder).to(dev)
    log.info("re-measuring trial %s of %r on %s, as the trial measured it", config["study"]["trial"],
             config["study"]["name"], dev)
    accuracy = evaluate(model, data.val)
    cx = count_complexity(model, data.example_inputs(1))
    m = spec.measure
    settings = MeasureSettings.from_spec(m)
    inputs = data.example_inputs(m.batch_size)
    dense = _dense_model(config, notes)
    want_energy, energy_note = _energy_wanted(dev, settings, notes)
    try:
        arch = measure_architecture(model, dense.to(dev) if dense is not None else None, inputs, settings,
                                    device=dev, want_energy=want_energy)
    except EnergyMeasurementError as exc:
        notes.append(f"energy not measured: {exc}")
        energy_note = "not measured (the meter's reading was unusable; see notes)"
        arch = measure_architecture(model, dense.to(dev) if dense is not None else None, inputs, settings,
                                    device=dev, want_energy=False)
    paired = arch.latency
    latency, info, energy = paired.candidate, paired.info, arch.energy
    speedup = (paired.speedup, paired.speedup_p10, paired.speedup_p90) if arch.paired else None
    _note_disturbance(info, notes)
    if energy is not None:
        energy_note = f"{energy.method}, idle {energy.idle_power_w:.1f} W subtracted"
    rounds = f"median of {info.rounds} rounds" if info is not None else f"median of at least {m.repeats} rounds"

    rec = recorded["metrics"]
    rows = [
        MetricRow("accuracy", "fraction", accuracy, rec["accuracy"]["value"],
                  note=f"{len(data.val)} validation {'texts' if data.text is not None else 'images'}"),
        MetricRow("latency_ms", "ms", latency.median_ms, rec["latency_ms"]["value"], (latency.p10_ms, latency.p90_ms),
                  _spread(rec["latency_ms"]), note=f"{rounds} at batch {m.batch_size}"),
        MetricRow("speedup", "x", speedup[0] if speedup else None, rec["speedup"]["value"],
                  speedup[1:] if speedup else None, _spread(rec["speedup"]),
                  note="paired against dense" if speedup else "not measured (dense weights unavailable)"),
        MetricRow("macs", "MACs", cx.macs, rec["macs"]["value"], note="one sample"),
        MetricRow("params", "count", cx.params, rec["params"]["value"]),
        MetricRow("energy_mj", "mJ", energy.energy_mj if energy else None, rec.get("energy_mj", {}).get("value"),
                  note=energy_note),
    ]
    measured_as = (f"measured as the trial was: the study's measure settings ({settings.warmup} warm-up passes, "
                   f"at least {settings.repeats} rounds"
                   + (f" until the 95% CI is within ±{settings.ci_half_width:.0%}" if settings.ci_half_width else "")
                   + f", batch {settings.batch_size}"
                   + (f", {info.threads} threads, {info.timer}" if info is not None else "")
                   + f", runtime {arch.runtime}"
                   + (f" (prepared in {arch.prepare_s:.1f} s, not timed)" if arch.prepare_s else "")
                   + (", paired against dense" if arch.paired else ", timed alone") + ")")
    return EvaluationReport(folder, config["study"]["name"], config["study"]["trial"], str(dev), device_name(dev),
                            recorded.get("device"), recorded.get("device_name"), tuple(rows), speedup is not None,
                            tuple(notes), measured_as, dataclasses.asdict(info) if info else None,
                            dataclasses.asdict(energy) if energy else None)


def _spread(entry: dict[str, Any]) -> tuple[float, float] | None:
    p10, p90 = entry.get("p10"), entry.get("p90")
    return (p10, p90) if p10 is not None and p90 is not None else None


def _device(asked: str | None, recorded: str | None, spec: StudySpec, notes: list[str]) -> torch.device:
    """The asked device; by default the one the trial was measured on, when it exists here."""
    if asked is not None:
        try:
            dev = resolve_device(asked)
        except RuntimeError:
            raise SpecError(f"--device {asked!r}: use cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SpecError(f"--device {asked!r}: no CUDA device is visible here; use --device cpu")
    elif recorded and (not recorded.startswith("cuda") or torch.cuda.is_available()):
        dev = torch.device(recorded)
    else:
        dev = resolve_device(spec.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            dev = torch.device("cpu")
    if recorded and str(dev) != recorded:
        notes.append(f"measured on {dev}, recorded on {recorded}: latency and energy are not comparable, and "
                     "accuracy may differ in the last digits")
    return dev


def _check_files(folder: Path, config: dict[str, Any], notes: list[str]) -> None:
    for name, digest in (config.get("files") or {}).items():
        path = folder / name
        if path.is_file() and file_sha256(path) != digest:
            notes.append(f"{name} changed since the export (sha256 differs from config.yaml)")


def _dense_model(config: dict[str, Any], notes: list[str]) -> nn.Module | None:
    """The dense model the study used, for paired timing; None (and a note) when its weights are gone or changed."""
    info = config["model"].get("dense_weights") or {}
    path = Path(info.get("path") or "")
    if not info.get("path") or not path.is_file():
        notes.append(f"latency timed alone: the dense weights {info.get('path')} are not here, so no paired speedup")
        return None
    if file_sha256(path) != info.get("sha256"):
        notes.append(f"latency timed alone: {path} is not the dense model the study used (sha256 differs)")
        return None
    m = config["model"]
    model = build_model(m["arch"], m["num_classes"], m.get("kwargs"), m.get("image_size"), m.get("text"))
    load_checkpoint(model, path)
    prunable_form(model)  # as the study timed it
    notes.append(f"latency paired against the dense model {path} (sha256 matches the study's)")
    return model.eval()


def _note_disturbance(info: RoundsInfo | None, notes: list[str]) -> None:
    """Say when other processes disturbed the CPU timing rounds: the latency is then not to be trusted."""
    if info is None or info.disturbance_check is None:
        return
    others = f"{info.other_cpu_max:.0%}" if info.other_cpu_max is not None else "some"
    if info.noisy:
        notes.append(f"latency is unreliable: other processes kept the CPUs busy (up to {others} of them in the rounds "
                     "used) and clean rounds could not be had; re-run evaluate when the machine is idle")
    elif info.discarded:
        notes.append(f"{info.discarded} timing rounds disturbed by other processes were taken again")


def _energy_wanted(device: torch.device, settings: MeasureSettings, notes: list[str]) -> tuple[bool, str]:
    """Energy is measured where this device has a meter, as the trial measured it; never an estimate."""
    try:
        energy_meter_for(device, sample_ms=settings.power_sample_ms)
    except NoEnergyMeter as exc:
        notes.append(f"energy {NO_METER}: {exc}")
        return False, NO_METER
    return True, ""


# --- formatting -------------------------------------------------------------------------------------------------------

def _value(row: MetricRow, value: float | None, spread: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    if row.name == "accuracy":
        text = f"{value:.4f}"
    elif row.name in ("macs", "params"):
        text = f"{int(value):,}"
    elif row.name == "speedup":
        text = f"{value:.2f}x"
    else:
        text = f"{value:.2f} {row.unit}"
    if spread:
        text += f" [{spread[0]:.2f}-{spread[1]:.2f}]"
    return text


def _difference(row: MetricRow) -> str:
    diff = row.difference
    if diff is None:
        return "-"
    if diff == 0:
        return "equal"
    if row.name == "accuracy":
        return f"{diff:+.4f}"
    if row.name in ("macs", "params"):
        return f"{int(diff):+,}"
    pct = f" ({diff / row.recorded:+.0%})" if row.recorded else ""
    return f"{diff:+.2f}{pct}"


def format_evaluation(report: EvaluationReport) -> str:
    """A table: measured vs recorded, with the difference, then the notes."""
    recorded_on = report.recorded_device or "?"
    if report.recorded_device_name:
        recorded_on += f" ({report.recorded_device_name})"
    lines = [f"trial {report.trial} of study {report.study!r} from {report.export_dir}",
             f"measured on {report.device} ({report.device_name}); recorded on {recorded_on}",
             *([report.measured_as] if report.measured_as else []), ""]
    table = [("metric", "measured [p10-p90]", "recorded [p10-p90]", "difference")]
    for row in report.rows:
        measured = _value(row, row.measured, row.measured_spread) if row.measured is not None else (row.note or "-")
        table.append((row.name, measured, _value(row, row.recorded, row.recorded_spread), _difference(row)))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
