"""Sensitivity scan: prune each search unit alone, without fine-tuning, and see what it costs and saves.

The scan spends a few seconds per unit before the search starts and yields starting plans that put sparsity where
it costs the least accuracy per unit of the study's cost saved: per millisecond when latency is the first cost
objective, per MAC when MACs are (a single unit's latency gain is a fraction of a millisecond, well inside the
noise of a shared CPU, so ranking a MACs study by it ranks by luck). Its records are stored with the study (user
attr ``sensitivity``) and drawn in the dashboard.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from ..pruning import SearchUnit, plan_params
from ..record import Baseline
from ..spec import PruneSpec
from .context import StudyContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SensitivityRecord:
    unit: str
    ratio: float
    accuracy_drop: float  # dense accuracy - accuracy without fine-tune (fraction)
    latency_gain_ms: float  # paired: dense median - candidate median, same rounds
    macs_saved: int
    params_saved: int = 0
    cost: str = "latency_ms"  # the study's cost objective that units are ranked by (see unit_costs)

    def as_dict(self) -> dict:
        return asdict(self)


#: Which saving a unit's accuracy drop is divided by, per cost objective. The scan measures no energy: an energy
#: study is ranked by latency, its nearest measured proxy.
SAVING_OF = {"latency_ms": "latency_gain_ms", "energy_mj": "latency_gain_ms", "macs": "macs_saved",
             "params": "params_saved"}


def cost_objective(objectives: list[str]) -> str:
    """The study's first cost objective (units are ranked by it); latency when the study names none."""
    return next((o for o in objectives if o in SAVING_OF), "latency_ms")


def scan_ratios(prune: PruneSpec) -> list[float]:
    """Half the range and its top: where a unit's cost curve bends, and where it ends."""
    r = prune.ratio
    return sorted({round(r.low + (r.high - r.low) / 2, 6), r.high} - {0.0})


def sensitivity_scan(ctx: StudyContext, baseline: Baseline) -> list[SensitivityRecord]:
    """Each unit pruned alone at the scan ratios, timed with the study's settings (paired, no energy)."""
    records = []
    ratios = scan_ratios(ctx.spec.prune)
    cost = cost_objective(list(ctx.spec.objectives))
    log.info("sensitivity scan: %d units x %d ratios, no fine-tuning; ranked by %s", len(ctx.units), len(ratios),
             cost)
    for unit in ctx.units:
        for ratio in ratios:
            pruned = ctx.prune({root: ratio for root in unit.roots})
            lat = ctx.measure(pruned.model, energy=False).latency
            cx = ctx.complexity(pruned.model)
            records.append(SensitivityRecord(
                unit.name, ratio, baseline.accuracy - ctx.evaluate(pruned.model),
                lat.reference.median_ms - lat.candidate.median_ms, baseline.macs - cx.macs,
                baseline.params - cx.params, cost))
    return records


def unit_costs(records: list[SensitivityRecord]) -> dict[str, float]:
    """Accuracy lost per unit of cost saved (``rec.cost``: ms, MACs or parameters), per search unit, at the largest
    scanned ratio; lower is cheaper to prune.

    A unit that saves nothing measurable is the most expensive to prune whatever it costs in accuracy.
    """
    top: dict[str, SensitivityRecord] = {}
    for rec in records:
        if rec.unit not in top or rec.ratio > top[rec.unit].ratio:
            top[rec.unit] = rec
    costs = {}
    for unit, rec in top.items():
        drop = max(rec.accuracy_drop, 1e-4)
        saved = getattr(rec, SAVING_OF.get(rec.cost, "latency_gain_ms"))
        costs[unit] = drop / saved if saved > 0 else float("inf")
    return costs


def sensitivity_plans(records: list[SensitivityRecord], units: list[SearchUnit], prune: PruneSpec,
                      levels: list[float], blocks: tuple[str, ...] = ()) -> list[dict[str, float]]:
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
    return [plan_params(units, prune, level, offsets, blocks=blocks) for level in levels]  # no block dropped
