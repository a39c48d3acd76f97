"""Allocation proposals for the screen: what each unit's ratio does to the proxy and to the cost, and the plans that
trade them best.

A sampler that treats every unit's ratio as a free dimension needs many plans before it learns that, say, the
expansion layers of the first blocks buy latency cheaply while the bottlenecks cost accuracy. The screen already
holds that information: every screened plan has a proxy and a cost. ``fit_additive`` fits each of them as a sum of
one quadratic per unit (ridge, its strength chosen by leave-one-out error), the proxy on the logit scale, so that
many small losses add up to a collapse the way a network's damage does. Under such a model the best plan for a
trade-off ``lambda`` is found one unit at a time (maximise ``proxy_u(r) - lambda * cost_u(r)`` for each unit, a
Lagrangian relaxation of "best proxy within a cost budget"), and sweeping ``lambda`` gives every plan on the model's
front, from light to heavy pruning. A droppable residual block is a unit of two settings (kept, dropped), so the
model also says which blocks buy latency cheaply. ``propose_allocations`` picks those next to the accuracy budget, and a neighbour
of each so the model keeps learning, to be screened for real: the model only chooses what is measured next, and
nothing it predicts is stored.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Proxies are fitted on the logit scale, clipped here (a proxy of exactly 0 or 1 has no logit).
_CLIP = 0.005


@dataclass(frozen=True)
class AdditiveModel:
    """``y ~ intercept + sum_u (linear_u * r_u + quadratic_u * r_u ** 2)`` over the units' ratios ``r``."""

    intercept: float
    linear: tuple[float, ...]
    quadratic: tuple[float, ...]
    loo_rmse: float  # leave-one-out error of the fit, in the units of y

    def terms(self, values: np.ndarray) -> np.ndarray:
        """Each column's contribution at each of its settings (``values``: columns x settings, or one grid that
        every column shares)."""
        lin, quad = np.asarray(self.linear)[:, None], np.asarray(self.quadratic)[:, None]
        v = np.atleast_2d(np.asarray(values, dtype=float))
        return lin * v + quad * v**2

    def predict(self, ratios: np.ndarray) -> np.ndarray:
        """Predictions for plans (rows of per-unit ratios)."""
        r = np.atleast_2d(ratios)
        return self.intercept + r @ np.asarray(self.linear) + (r**2) @ np.asarray(self.quadratic)


def fit_additive(ratios: np.ndarray, y: np.ndarray, *,
                 alphas: Sequence[float] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)) -> AdditiveModel:
    """Ridge regression of ``y`` on every unit's ratio and squared ratio; the penalty with the lowest
    leave-one-out error wins (closed form through the hat matrix, so choosing it costs one solve per penalty)."""
    x = np.asarray(ratios, dtype=float)
    y = np.asarray(y, dtype=float)
    n, units = x.shape
    features = np.hstack([x, x**2])
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0
    z = (features - mean) / scale
    y_mean = y.mean()
    best: tuple[float, np.ndarray] | None = None
    for alpha in alphas:
        gram = z.T @ z + alpha * n * np.eye(z.shape[1])
        coef = np.linalg.solve(gram, z.T @ (y - y_mean))
        hat_diag = np.einsum("ij,ji->i", z, np.linalg.solve(gram, z.T)) + 1.0 / n
        residual = (y - y_mean - z @ coef) / np.clip(1.0 - hat_diag, 1e-6, None)
        err = float(np.sqrt(np.mean(residual**2)))
        if best is None or err < best[0]:
            best = (err, coef)
    assert best is not None
    err, coef = best
    raw = coef / scale
    intercept = float(y_mean - raw @ mean)
    return AdditiveModel(intercept, tuple(raw[:units].tolist()), tuple(raw[units:].tolist()), err)


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), _CLIP, 1 - _CLIP)
    return np.log(q / (1 - q))


def lagrangian_plans(gain: np.ndarray, cost: np.ndarray, allowed: np.ndarray | None = None, *,
                     capped: np.ndarray | None = None, cap: int | None = None) -> list[tuple[int, ...]]:
    """Every plan that maximises ``sum_u gain[u, g_u] - lambda * sum_u cost[u, g_u]`` for some ``lambda >= 0``.

    ``gain`` and ``cost`` are (units, grid) tables; a plan is one grid index per unit, taken where ``allowed`` (same
    shape; default everywhere). The best index of a unit changes only where ``lambda`` crosses the slope between two
    of its entries, so evaluating ``lambda`` at 0, just past every such slope, and beyond the largest gives each
    distinct plan once, ordered from the lightest pruning (no trade-off) to the cheapest plan. With ``cap``, at most
    that many of the ``capped`` units (a bool per unit) leave their first setting: those that gain most by leaving it
    at that ``lambda`` (the exact optimum under the cap, the objective being a sum over units).
    """
    units, size = gain.shape
    allowed = np.ones_like(gain, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    slopes = {0.0}
    for u in range(units):
        g, c = gain[u][allowed[u]], cost[u][allowed[u]]
        dg, dc = g[:, None] - g[None, :], c[:, None] - c[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = dg / dc
        slopes.update(float(v) for v in s[np.isfinite(s) & (s > 0)])
    ordered = sorted(slopes)
    lambdas = [0.0] + [(a + b) / 2 for a, b in zip(ordered, ordered[1:])] + [ordered[-1] * 2 + 1.0]
    plans: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    for lam in lambdas:
        score = np.where(allowed, gain - lam * cost, -np.inf)
        # ties go to the heavier pruning (the higher index), whose cost is no higher when the gain is equal
        plan = tuple(int(size - 1 - np.argmax(row[::-1])) for row in score)
        if cap is not None and capped is not None:
            moved = [u for u in range(units) if capped[u] and plan[u] != 0]
            if len(moved) > cap:
                moved.sort(key=lambda u: score[u, plan[u]] - score[u, 0], reverse=True)
                plan = tuple(0 if u in moved[cap:] else i for u, i in enumerate(plan))
        if plan not in seen:
            seen.add(plan)
            plans.append(plan)
    return plans


@dataclass(frozen=True)
class Allocation:
    """A proposed plan: one ratio per unit and a 0/1 drop per residual block, with what the models predicted (used
    only to choose it)."""

    ratios: tuple[float, ...]
    predicted_proxy: float
    predicted_cost: float
    drops: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[float, ...]:
        """The plan as one tuple (ratios, then drops), as ``propose_allocations``' ``seen`` holds them."""
        return self.ratios + tuple(float(d) for d in self.drops)


#: Plans that vary per unit (or drop a block) before the model proposes anything: at least this many, and a third of
#: its columns. ``units + 3`` kept it silent on every seed of the bench's 24-plan screens (ResNet-20: 12 units and
#: 7 blocks; 8-12 varied plans before the last round, 2026-12-04); the ridge's leave-one-out penalty keeps a fit on
#: fewer plans than columns near "every unit alike", which the sweeps it was fitted with tell well.
MIN_VARIED = 6


def propose_allocations(ratios: np.ndarray, proxies: np.ndarray, costs: np.ndarray, grid: Sequence[float], *,
                        count: int, floor: float | None, seen: set[tuple[float, ...]], seed: int,
                        span: float | None = None, drops: np.ndarray | None = None,
                        pick: Callable[[list[Allocation], int], list[Allocation]] | None = None
                        ) -> list[Allocation]:
    """Up to ``count`` new plans: half on the fitted front (those ``pick`` chooses, then where the accuracy budget
    binds), half their neighbours.

    ``ratios`` (plans x units), ``proxies`` and ``costs`` are the screened plans so far; ``drops`` (plans x blocks,
    0/1) which residual blocks each dropped, a unit of two settings each; ``grid`` the ratios a unit may take;
    ``floor`` the proxy at which the accuracy budget is reached (None: unknown). ``span`` keeps every unit within
    that distance of the plan's reference level, as the search space does (``prune.offset_max``): a fit of a few
    dozen plans is trusted near them, not in the corners, where it extrapolates and where the proxy itself is least
    faithful. The reference levels are those of the screened plans at the fast end of what reaches the floor. For
    the same reason a proposal drops at most one block more than any screened plan that reaches the floor
    (``_most_dropped``). ``seen`` plans (``Allocation.key``), already screened or queued, are skipped.

    ``pick(plans, k)``: up to ``k`` of the model's front plans, those expected to add most to the fine-tuned front
    (``moprune.search.promotion.Outlook.pick_points`` on their predicted proxy and cost): where the front gains most is
    where a plan is worth screening. Aimed at the budget alone, every plan the model proposed would, at best, just
    meet it: on the bench's ResNet-20 (full budget, seed 2, 2026-12-05) its 24 plans screened at proxies of
    0.24-0.75, the two it promoted gave 0.73 and 0.76 against a budget of 0.89, and none reached the fine-tuned
    front, while the front a user wants is fast at an accuracy well above the budget (the sampler's best there:
    3.5x at 0.985). Aimed also at two fixed accuracies between the budget and dense's (2026-12-05), it proposed
    one plan a round at each, whatever the front already held there.
    """
    x = np.asarray(ratios, dtype=float)
    p = np.asarray(proxies, dtype=float)
    c = np.asarray(costs, dtype=float)
    n, units = x.shape
    d = np.zeros((n, 0)) if drops is None else np.asarray(drops, dtype=float).reshape(n, -1)
    blocks = d.shape[1]
    # what tells units apart is plans whose units differ (or that drop a block); sweeps of one ratio for all say
    # nothing per unit
    varied = int(np.sum((x.std(axis=1) > 0.02) | (d.sum(axis=1) > 0)))
    if count <= 0 or varied < max(MIN_VARIED, (units + blocks) // 3):
        return []
    columns = np.hstack([x, d])
    proxy_model = fit_additive(columns, logit(p))
    cost_model = fit_additive(columns, c)
    g = np.asarray(grid, dtype=float)
    size = max(len(g), 2)
    values = np.zeros((units + blocks, size))  # each column's settings: a unit's grid; a block's kept (0), dropped (1)
    values[:units, :len(g)] = g
    values[units:, 1] = 1.0
    gain, price = proxy_model.terms(values), cost_model.terms(values)
    levels = _reference_levels(x, p, c, floor, g)
    most = _most_dropped(d, p, floor) if blocks else None
    capped = np.arange(units + blocks) >= units
    candidates: dict[tuple[float, ...], Allocation] = {}
    for level in levels:
        allowed = np.zeros((units + blocks, size), dtype=bool)
        allowed[:units, :len(g)] = True
        allowed[units:, :2] = True
        if span is not None:
            allowed[:units, :len(g)] &= np.abs(g - level)[None, :] <= span + 1e-9
        for idx in lagrangian_plans(gain, price, allowed, capped=capped, cap=most):
            a = _allocation(proxy_model, cost_model, [values[k, i] for k, i in enumerate(idx)], units)
            candidates[a.key] = a
    pool = [a for a in candidates.values() if a.key not in seen]
    wanted = max(1, count // 2 + count % 2)
    on_front = list(pick(pool, wanted)) if pick is not None else []
    if floor is not None:  # where the budget binds: predicted just above it, and a little below (the fit errs)
        near = [a for a in pool if floor - 0.05 <= a.predicted_proxy <= floor + 0.15]
        pool = near or sorted(pool, key=lambda a: abs(a.predicted_proxy - floor))[:1]
    on_front += _spread(sorted((a for a in pool if a not in on_front), key=lambda a: a.predicted_cost),
                        wanted - len(on_front))
    chosen = list(on_front)
    taken = set(seen) | {a.key for a in chosen}
    rng = random.Random(seed)
    for a in on_front:  # a neighbour of each: one unit moved one grid step (or one block flipped), so the fit keeps
        if len(chosen) >= count:  # learning near the front
            break
        for _ in range(4 * (units + blocks)):
            setting = list(a.key)
            k = rng.randrange(units + blocks)
            if k >= units:
                setting[k] = 1.0 - setting[k]
                if most is not None and sum(setting[units:]) > most:
                    continue
            else:
                i = int(np.argmin(np.abs(g - setting[k]))) + rng.choice((-1, 1))
                if not 0 <= i < len(g):
                    continue
                setting[k] = round(float(g[i]), 6)
            moved = _allocation(proxy_model, cost_model, setting, units)
            if moved.key not in taken:
                chosen.append(moved)
                taken.add(moved.key)
                break
    log.debug("allocation model: proxy logit LOO RMSE %.3f, cost LOO RMSE %.3f; levels %s; %d proposed",
              proxy_model.loo_rmse, cost_model.loo_rmse, levels, len(chosen))
    return chosen[:count]


def _allocation(proxy_model: AdditiveModel, cost_model: AdditiveModel, setting: Sequence[float], units: int
                ) -> Allocation:
    """The plan of one setting per column (ratios, then drops) with the models' predictions."""
    row = np.asarray(setting, dtype=float)
    return Allocation(tuple(round(float(v), 6) for v in row[:units]), _sigmoid(float(proxy_model.predict(row)[0])),
                      float(cost_model.predict(row)[0]), tuple(int(round(v)) for v in row[units:]))


def _reference_levels(x: np.ndarray, proxies: np.ndarray, costs: np.ndarray, floor: float | None,
                      grid: np.ndarray) -> list[float]:
    """Mean ratios to build plans around: the fastest screened plan that reaches the floor (or, without one, the
    middle of the screened proxies), a grid step either side, and two steps heavier."""
    target = floor if floor is not None else float(np.median(proxies))
    ok = proxies >= target
    anchor = float(x[ok][np.argmin(costs[ok])].mean()) if ok.any() else float(x[np.argmax(proxies)].mean())
    step = float(np.min(np.diff(grid))) if len(grid) > 1 else 0.05
    return sorted({round(float(np.clip(anchor + k * step, grid[0], grid[-1])), 6) for k in (-1, 0, 1, 2)})


def _most_dropped(drops: np.ndarray, proxies: np.ndarray, floor: float | None) -> int:
    """How many blocks a proposal may drop: one more than the most that a screened plan reaching the floor (or,
    without one, the median proxy) has dropped, so the region the model is trusted in grows a block a round as the
    screen finds what holds.

    The proxy's fit is additive on the logit scale, and a network's damage is not additive past a point: on the
    bench's ResNet-20 (2026-12-04, seeds 0-5) the model's first round proposed plans that drop all 7 blocks on five
    seeds of six, and they screened at 0.12-0.45, where the plans screened before (3-6 blocks dropped) read 0.41-0.96.
    Capped, its first proposals (4-5 blocks) read 0.38-0.91 on seeds 0-2.
    """
    target = floor if floor is not None else float(np.median(proxies))
    ok = proxies >= target
    return int(drops[ok].sum(axis=1).max()) + 1 if ok.any() else 1


def _sigmoid(v: float) -> float:
    return float(1 / (1 + math.exp(-v)))


def _spread(items: list[Allocation], count: int) -> list[Allocation]:
    """``count`` items evenly spaced through ``items`` (all of them when there are no more)."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / max(count - 1, 1)
    return [items[round(i * step)] for i in range(count)]
