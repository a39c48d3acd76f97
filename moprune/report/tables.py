"""Terminal and JSON views of trials: the Pareto table, JSON records, plan summaries, one value's formatting."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

import statistics

from ..pruning.depth import split_plan
from ..record import REJECTED_PREFIX, TrialRecord, environment_of, spec_of
from .measured import format_measured_with, measured_with


def format_value(name: str, value: Any) -> str:
    if value is None or pd.isna(value):
        return "-"
    if name == "accuracy":
        return f"{value:.4f}"
    if name in ("macs", "params"):
        return f"{value / 1e6:.2f}M"
    if name == "latency_ms":
        return f"{value:.2f} ms"
    if name == "energy_mj":
        return f"{value:.1f} mJ"
    return f"{value:.4g}"


def plan_summary(plan: dict[str, float]) -> str:
    """``mean 0.42 [0.00-0.80] over 12 groups; 2 blocks dropped``: a one-glance view of a per-group plan."""
    ratios, dropped = split_plan(plan or {})
    blocks = f"{len(dropped)} block{'s' if len(dropped) != 1 else ''} dropped" if dropped else ""
    values = list(ratios.values())
    if not values or max(values) == min(values):
        widths = f"uniform {values[0]:.2f}" if values and values[0] else ""
    else:
        widths = f"mean {sum(values) / len(values):.2f} [{min(values):.2f}-{max(values):.2f}] over {len(values)} groups"
    return "; ".join(x for x in (widths, blocks) if x) or "dense"


def to_records(frame: pd.DataFrame, objectives: list[str]) -> list[dict[str, Any]]:
    """JSON-ready rows: ``values`` maps objective name to value; measured attributes beside it."""
    records = []
    for row in frame.to_dict(orient="records"):
        rec: dict[str, Any] = {"number": int(row["number"]), "state": row["state"], "feasible": bool(row["feasible"]),
                               "values": {o: _plain(row[o]) for o in objectives}}
        for key in ("macs", "params", "speedup", "speedup_p10", "speedup_p90", "latency_ms_p10", "latency_ms_p90",
                    "accuracy_pre_ft", "accuracy_first", "accuracy_std", "accuracy_n", "energy_method", "device_name",
                    "fail_reason"):
            rec[key] = _plain(row.get(key))
        rec["plan"] = row["plan"]
        rec["origin"] = row.get("origin")
        if "score" in row:  # `pareto --rank-by`: the weighted score the rows are sorted by
            rec["score"] = _plain(row["score"])
        records.append(rec)
    return records


def _plain(value: Any) -> Any:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value


def format_table(frame: pd.DataFrame, objectives: list[str]) -> str:
    """A fixed-width table for terminals: one line a trial, units in the headers."""
    if frame.empty:
        return "(no trials)"
    shown = pd.DataFrame({"trial": frame["number"]})
    for o in objectives:
        col = frame[o]
        if o in ("macs", "params"):
            shown[f"{o} (M)"] = col.map(lambda v: f"{v / 1e6:.2f}" if pd.notna(v) else "-")
        elif o == "accuracy":
            shown[o] = col.map(lambda v: f"{v:.4f}" if pd.notna(v) else "-")
            n = frame.get("accuracy_n")
            if n is not None and (n.fillna(1) > 1).any():  # re-evaluated: the mean over seeds, with its spread
                shown[o] = [f"{v:.4f} ± {sd:.4f} (n={int(k)})" if pd.notna(k) and k > 1 else text
                            for v, sd, k, text in zip(col, frame["accuracy_std"], n, shown[o])]
        else:
            shown[o] = col.map(lambda v: f"{v:.3f}" if pd.notna(v) else "-")
    for extra in ("macs", "params"):
        if extra not in objectives:
            shown[f"{extra} (M)"] = frame[extra].map(lambda v: f"{v / 1e6:.2f}" if pd.notna(v) else "-")
    shown["speedup"] = frame["speedup"].map(lambda v: f"{v:.2f}x" if pd.notna(v) else "-")
    if "score" in frame:  # `pareto --rank-by`
        shown["score"] = frame["score"].map(lambda v: f"{v:+.4f}" if pd.notna(v) else "-")
    rejected = frame["fail_reason"].map(lambda r: isinstance(r, str) and r.startswith(REJECTED_PREFIX))
    if "accuracy" in objectives and rejected.any():
        # its value is the accuracy before any fine-tune (Optuna needs one): never shown beside fine-tuned ones
        shown["accuracy"] = ["not fine-tuned" if r else text for r, text in zip(rejected, shown["accuracy"])]
    if not frame["feasible"].all():
        shown["feasible"] = ["no: over " + r.split(" on ", 1)[-1] if out else ("yes" if ok else "no")
                             for ok, out, r in zip(frame["feasible"], rejected, frame["fail_reason"])]
    shown["plan"] = frame["plan"].map(plan_summary)
    if "origin" in frame:
        shown["from"] = frame["origin"].map(lambda o: o.removeprefix("start: ") if isinstance(o, str) else "-")
    return shown.to_string(index=False)


def measured_note(study: optuna.Study) -> list[str]:
    """Where and how the table's numbers were measured (device, timer, threads, energy meter): lines for a footer."""
    records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    note = sparsity_note(study, records)
    return format_measured_with(measured_with(records), environment_of(study)) + ([note] if note else [])


def sparsity_note(study: optuna.Study, records: list[TrialRecord] | None = None) -> str | None:
    """For unstructured / N:M studies: that zeroed weights run at dense speed, with the speedups this study measured.

    A user comparing these fronts with channel pruning's must not read fewer non-zero parameters as a faster model.
    """
    prune = (spec_of(study) or {}).get("prune") or {}
    method = prune.get("method", "channel")
    if method == "channel":
        return None
    if records is None:
        records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
    speedups = sorted(r.speedup for r in records if r.speedup is not None and r.plan and any(r.plan.values()))
    what = f"N:M {prune.get('nm', '2:4')}" if method == "nm" else "unstructured"
    measured = (f"measured speedups of the {len(speedups)} sparse trials: median {statistics.median(speedups):.2f}x "
                f"({speedups[0]:.2f}-{speedups[-1]:.2f}x)" if speedups else "no sparse trial measured yet")
    return (f"prune.method {method} ({what} sparsity): weights are zeroed, not removed, so dense kernels run them at "
            f"the dense speed; {measured}; MACs are what a dense kernel executes, params count non-zeros")
