"""Plans: how a trial's parameters become a ratio per group root, and the parameters of a given plan.

Plans are keyed by the *name* of each group's root module, never by module objects or position: names survive a
``deepcopy`` and tracing order, objects do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..spec import PruneSpec, RatioSpec
from .depth import drop_key
from .units import SearchUnit

if TYPE_CHECKING:
    import optuna

#: group root name -> pruning ratio (fraction of out-channels removed); ``drop:<block>`` -> 1 drops a residual block
PrunePlan = dict[str, float]


def _grid(value: float, ratio: RatioSpec) -> float:
    """Clip to [low, high] and snap to the step grid (rounded: 0.6000000001 is 0.6)."""
    value = min(max(value, ratio.low), ratio.high)
    if ratio.step:
        value = ratio.low + ratio.step * round((value - ratio.low) / ratio.step)
        value = min(value, ratio.high)
    return round(value, 6)


def _high_on_grid(ratio: RatioSpec) -> float:
    """Optuna wants high - low to be a multiple of step."""
    if not ratio.step:
        return ratio.high
    return round(ratio.low + ratio.step * int(round((ratio.high - ratio.low) / ratio.step, 9)), 6)


GLOBAL_PARAM = "ratio/global"


def offset_param(unit: SearchUnit) -> str:
    return f"offset/{unit.name}"


DROP_PARAM = "drop/"


def drop_param(block: str) -> str:
    return DROP_PARAM + block


def _drop_params(blocks: Sequence[str], plan: PrunePlan | None) -> dict[str, int]:
    """0/1 per droppable block: enqueued plans name every block, or the sampler would draw the missing ones."""
    return {drop_param(b): int((plan or {}).get(drop_key(b), 0.0) >= 0.5) for b in blocks}


def suggest_plan(trial: optuna.trial.BaseTrial, units: list[SearchUnit], prune: PruneSpec,
                 blocks: Sequence[str] = ()) -> PrunePlan:
    """A global ratio plus one offset per unit, clipped to the ratio range, expanded to every group root; and,
    with ``blocks`` (the droppable residual blocks of ``prune.drop_blocks``), a 0/1 choice per block.

    Parameterised this way every total sparsity from none to ``ratio.high`` is reachable by every sampler, and
    uniform plans are the points whose offsets are all zero (independent per-unit ratios concentrate the total
    sparsity in the middle of the range and never visit the cheap end).
    """
    r = prune.ratio
    step = r.step if r.step and r.high > r.low else None
    if r.high == r.low:
        base = r.low
    else:
        base = trial.suggest_float(GLOBAL_PARAM, r.low, _high_on_grid(r), step=step)
    plan: PrunePlan = {}
    tie_all = len(units) == 1 or prune.offset_max == 0
    for unit in units:
        offset = 0.0
        if not tie_all:
            # rounded so that Optuna (which checks divisibility on the decimal strings) keeps the range as given
            span = prune.offset_max if not step else round(step * int(round(prune.offset_max / step, 9)), 6)
            if span > 0:
                offset = trial.suggest_float(offset_param(unit), -span, span, step=step)
        for root in unit.roots:
            plan[root] = _grid(base + offset, r)
    for block in blocks:
        if trial.suggest_int(drop_param(block), 0, 1):
            plan[drop_key(block)] = 1.0
    return plan


def plan_params(units: list[SearchUnit], prune: PruneSpec, base: float,
                offsets: dict[str, float] | None = None, *, blocks: Sequence[str] = (),
                plan: PrunePlan | None = None) -> dict[str, float]:
    """Trial parameters for an enqueued plan: a global ratio and per-unit offsets (default zero: uniform), and
    for each droppable block whether ``plan`` drops it (default: none dropped)."""
    r = prune.ratio
    params: dict[str, float] = {}
    if r.high != r.low:
        params[GLOBAL_PARAM] = _grid(base, r)
    if len(units) > 1 and prune.offset_max > 0:
        for unit in units:
            params[offset_param(unit)] = round((offsets or {}).get(unit.name, 0.0), 6)
    params.update(_drop_params(blocks, plan))
    return params


def nearest_params(units: list[SearchUnit], prune: PruneSpec, base: float, plan: PrunePlan, *,
                   blocks: Sequence[str] = ()) -> dict[str, float]:
    """The trial parameters nearest to a plan made elsewhere (global pruning's): ``base`` as the global ratio, and
    each unit's offset its roots' mean ratio less ``base``, snapped to the step grid and clipped to the offsets'
    range. The sampler learns from these; the trial itself prunes the exact plan (``TrialRecord.fixed_plan``)."""
    r = prune.ratio
    step = r.step if r.step and r.high > r.low else None
    span = prune.offset_max if not step else round(step * int(round(prune.offset_max / step, 9)), 6)
    base = _grid(base, r)
    offsets = {}
    for unit in units:
        offset = sum(plan.get(root, 0.0) for root in unit.roots) / len(unit.roots) - base
        if step:
            offset = step * round(offset / step)
        offsets[unit.name] = min(max(offset, -span), span)
    return plan_params(units, prune, base, offsets, blocks=blocks, plan=plan)
