"""What the screen screens next, besides its sampler's proposals: the sweeps, the allocation model's plans, and
neighbours of the fine-tuned front.

Each is queued in the screen study (``moprune.search.screen``) and carries who proposed it (``TrialRecord.proposer``,
``start`` for a sweep level), so the report and the bench can tell which proposals reached the front.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from ..pruning import DROP_PARAM, GLOBAL_PARAM, drop_key, nearest_params, plan_params, split_plan
from ..record import TrialRecord
from ..spec import StudySpec
from .context import StudyContext
from .promotion import Outlook
from .study import coarse_to_fine

if TYPE_CHECKING:
    from .allocate import Allocation


def queue_sweeps(screened: optuna.Study, ctx: StudyContext) -> int:
    """Queue ``screen.sweep`` levels of each sweep among the study's starting kinds (uniform, global) to be screened
    first, coarse to fine over the ratio range: the best of what a user would sweep reaches the screened front, so
    promotion can pick it, and the sampler learns from the sweeps before it proposes anything."""
    prune = ctx.spec.prune
    for kind, level in sweep_levels(ctx.spec):
        if kind == "uniform":
            params = plan_params(ctx.units, prune, level, blocks=ctx.blocks)
            record = TrialRecord(start=f"uniform {level:.2f}")
        else:
            plan = ctx.global_plan(level)
            params = nearest_params(ctx.units, prune, level, plan, blocks=ctx.blocks)
            record = TrialRecord(start=f"global {level:.2f}", fixed_plan=plan)
        screened.enqueue_trial(params, user_attrs=record.attrs())
    return len(sweep_levels(ctx.spec))


def sweep_levels(spec: StudySpec) -> list[tuple[str, float]]:
    """(kind, level) of every sweep plan ``queue_sweeps`` queues, in its order (global pruning has no level 0)."""
    n, r = spec.search.screen.sweep, spec.prune.ratio
    kinds = [k for k in spec.search.seed_trials if k in ("uniform", "global")]
    if n < 2 or not kinds:
        return []
    levels = [r.low + (r.high - r.low) * k / (n - 1) for k in coarse_to_fine(n)]
    return [(kind, level) for level in levels for kind in kinds if kind == "uniform" or level > 0]

def unit_ratios(ctx: StudyContext, plan: dict[str, float]) -> tuple[float, ...]:
    """A plan as one ratio per search unit (the mean over the unit's roots: a global-pruning plan may differ)."""
    return tuple(round(sum(plan.get(root, 0.0) for root in u.roots) / len(u.roots), 6) for u in ctx.units)


def block_drops(ctx: StudyContext, plan: dict[str, float]) -> tuple[int, ...]:
    """A plan's drop (1) or keep (0) of each droppable block, in ``ctx.blocks`` order."""
    dropped = set(split_plan(plan)[1])
    return tuple(int(b in dropped) for b in ctx.blocks)


def queue_allocations(screened: optuna.Study, ctx: StudyContext, count: int, *, floor: float | None, seed: int,
                      cost: Callable[[optuna.trial.FrozenTrial], float] | None = None,
                      outlook: Outlook | None = None) -> int:
    """Queue up to ``count`` plans the additive allocation model (``moprune.search.allocate``) puts on its front,
    and a neighbour of each, to be screened next: with an ``outlook`` (the proxy line and the fine-tuned front)
    those it expects to add most to the fine-tuned front, as promotion weighs a screened plan (``Outlook.pick_points``
    on the model's predicted proxy, read with the line's shift per dropped block, and predicted cost), then those
    near the accuracy budget (``floor``, in proxy units). Its units are the search units' ratios and the droppable
    blocks; ``cost(trial)`` a screened plan's first cost (default the stored value), the model's cost."""
    import numpy as np

    from .allocate import propose_allocations

    spec = ctx.spec
    rows, drops, proxies, costs, seen = [], [], [], [], set()
    for t in screened.get_trials(deepcopy=False):
        record = TrialRecord.of(t)
        plan = record.fixed_plan or record.plan
        if plan:
            seen.add(unit_ratios(ctx, plan) + tuple(float(d) for d in block_drops(ctx, plan)))
        if t.state == TrialState.COMPLETE and plan:
            rows.append(unit_ratios(ctx, plan))
            drops.append(block_drops(ctx, plan))
            proxies.append(t.values[0])
            costs.append(t.values[1] if cost is None else cost(t))
    if not rows or len(screened.directions) < 2:
        return 0
    r = spec.prune.ratio
    step = r.step or 0.05
    grid = [round(min(r.low + step * k, r.high), 6) for k in range(int(round((r.high - r.low) / step)) + 1)]
    proposals = propose_allocations(np.array(rows), np.array(proxies), np.array(costs), grid, count=count,
                                    floor=floor, pick=_gain_pick(outlook), seen=seen, seed=seed,
                                    span=spec.prune.offset_max or None,
                                    drops=np.array(drops, dtype=float).reshape(len(rows), len(ctx.blocks)))
    for a in proposals:
        plan = {root: ratio for u, ratio in zip(ctx.units, a.ratios) for root in u.roots}
        plan |= {drop_key(b): 1.0 for b, d in zip(ctx.blocks, a.drops) if d}
        params = nearest_params(ctx.units, spec.prune, sum(a.ratios) / len(a.ratios), plan, blocks=ctx.blocks)
        screened.enqueue_trial(params, user_attrs=TrialRecord(fixed_plan=plan, proposer="allocation").attrs())
    return len(proposals)


def _gain_pick(outlook: Outlook | None) -> Callable[[list[Allocation], int], list[Allocation]] | None:
    """The allocation model's pick: its front plans by the hypervolume they are expected to add (None without an
    outlook)."""
    if outlook is None:
        return None
    line = outlook.line

    def pick(plans: list[Allocation], count: int) -> list[Allocation]:
        readings = [line.adjusted(a.predicted_proxy, sum(a.drops)) for a in plans]
        return [plans[i] for i in outlook.pick_points(readings, [a.predicted_cost for a in plans], count)]

    return pick


def feed_back(study: optuna.Study, screened: optuna.Study, spec: StudySpec, *, per_plan: int, seed: int,
              limit: int | None = None) -> int:
    """Queue neighbours of the fine-tuned front's plans (each ratio parameter moved by one step, at random; each
    block's drop flipped with probability one over the number of blocks, one flip a neighbour on average) to be
    screened: ``per_plan`` of each front plan's, the fastest plan's first (the study's first cost), at most ``limit``.

    What the fine-tune found good is searched around next, whatever the proxy thought of its neighbours; the fast
    end first, as the front's slow end sits on an accuracy near dense's, where a neighbour adds a sliver. Drawn at
    random from every front plan's, as before 2026-12-05, most went to the slow end: on the bench's ResNet-20 (full
    budget, seed 2) six of seven front plans were 1.3-2.3x, while the fastest (4 blocks dropped, 3.0x at 0.936) was
    where TPE without screening found 3.7x at 0.969 one step away.
    """
    from ..pareto import trials_frame

    frame = trials_frame(study)
    front = frame[frame["on_front"]]
    costs = [o for o in spec.objectives if o != "accuracy" and o in front.columns]
    if costs:
        front = front.sort_values([costs[0], "number"])
    step = spec.prune.ratio.step or 0.05
    rng = random.Random(seed)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    candidates = []
    for number in front["number"]:
        params = trials[int(number)].params
        flips = sum(1 for name in params if name.startswith(DROP_PARAM))
        for _ in range(per_plan):
            moved = {}
            for name, value in params.items():
                if name.startswith(DROP_PARAM):
                    moved[name] = int(value) ^ int(rng.random() < 1 / flips)
                    continue
                delta = rng.choice((-step, 0.0, step))
                low, high = (spec.prune.ratio.low, spec.prune.ratio.high) if name == GLOBAL_PARAM else (
                    -spec.prune.offset_max, spec.prune.offset_max)
                moved[name] = round(min(max(value + delta, low), high), 6)
            candidates.append(moved)
    if limit is not None:
        candidates = candidates[:limit]
    for moved in candidates:
        screened.enqueue_trial(moved, user_attrs=TrialRecord(proposer="neighbour").attrs(), skip_if_exists=True)
    return len(candidates)
