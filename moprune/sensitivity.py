"""Sensitivity scan: prune each search unit alone, without fine-tuning, and see what it costs and saves.

The scan spends a few seconds per unit before the search starts and yields starting plans that put sparsity where
it costs the least accuracy per millisecond saved. Its records are stored with the study (user attr
``sensitivity``) and drawn in the dashboard.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .context import Baseline, StudyContext
from .measure import count_complexity, measure_paired
from .prune import apply_plan
from .space import SearchUnit, plan_params
from .spec import PruneSpec
from .train import evaluate


@dataclass(frozen=True)
class SensitivityRecord:
    unit: str
    ratio: float
    accuracy_drop: float  # dense accuracy - accuracy without fine-tune (fraction)
    latency_gain_ms: float  # paired: dense median - candidate median, same rounds
    macs_saved: int

    def as_dict(self) -> dict:
        return asdict(self)


def scan_ratios(prune: PruneSpec) -> list[float]:
    """Half the range and its top: where a unit's cost curve bends, and where it ends."""
    r = prune.ratio
    return sorted({round(r.low + (r.high - r.low) / 2, 6), r.high} - {0.0})


def sensitivity_scan(ctx: StudyContext, baseline: Baseline, *, log=print) -> list[SensitivityRecord]:
    spec, records = ctx.spec, []
    m = spec.measure
    ratios = scan_ratios(spec.prune)
    log(f"sensitivity scan: {len(ctx.units)} units x {len(ratios)} ratios, no fine-tuning")
    for unit in ctx.units:
        for ratio in ratios:
            plan = {root: ratio for root in unit.roots}
            calibration = (next(ctx.data.train.batches(spec.finetune.batch_size))
                           if spec.prune.importance == "taylor" else None)
            pruned = apply_plan(ctx.dense.model, plan, ctx.trace_inputs, importance=spec.prune.importance,
                                round_to=spec.prune.round_to, calibration=calibration)
            lat = measure_paired(pruned.model, ctx.dense.model, ctx.measure_inputs, warmup=m.warmup,
                                 repeats=m.repeats)
            macs = count_complexity(pruned.model, ctx.trace_inputs).macs
            records.append(SensitivityRecord(
                unit.name, ratio, baseline.accuracy - evaluate(pruned.model, ctx.data.val),
                lat.reference.median_ms - lat.candidate.median_ms, baseline.macs - macs))
    return records


def unit_costs(records: list[SensitivityRecord]) -> dict[str, float]:
    """Accuracy lost per millisecond saved, per unit (at the largest scanned ratio); lower is cheaper to prune.

    A unit that saves no measurable time is the most expensive to prune whatever it costs in accuracy.
    """
    top: dict[str, SensitivityRecord] = {}
    for rec in records:
        if rec.unit not in top or rec.ratio > top[rec.unit].ratio:
            top[rec.unit] = rec
    costs = {}
    for unit, rec in top.items():
        drop = max(rec.accuracy_drop, 1e-4)
        costs[unit] = drop / rec.latency_gain_ms if rec.latency_gain_ms > 0 else float("inf")
    return costs


def sensitivity_plans(records: list[SensitivityRecord], units: list[SearchUnit], prune: PruneSpec,
                      levels: list[float]) -> list[dict[str, float]]:
    """For each global level: the cheapest third of units pruned ``offset_max`` more, the dearest third less."""
    costs = unit_costs(records)
    ranked = sorted((u.name for u in units), key=lambda name: (costs.get(name, float("inf")), name))
    third = max(1, len(ranked) // 3)
    offsets = {name: 0.0 for name in ranked}
    for name in ranked[:third]:
        offsets[name] = prune.offset_max
    for name in ranked[-third:]:
        offsets[name] = -prune.offset_max
    if prune.ratio.step:  # offsets on the step grid, as the sampler's distributions require
        step = prune.ratio.step
        offsets = {k: step * round(v / step) for k, v in offsets.items()}
    return [plan_params(units, prune, level, offsets) for level in levels]
