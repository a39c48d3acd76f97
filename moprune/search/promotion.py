"""Which screened plans are fine-tuned: those that could add most to the fine-tuned front, then by Pareto rank.

Pareto rank on proxy x latency alone spends fine-tunes where the fine-tuned front is already full: on the bench's
VGG (seed 0, 2026-12-03, budget 0.03 below dense) the screen's last rounds promoted the uniform 0.44 plan (1.57x,
dominated by the uniform 0.57 plan fine-tuned in round 1 at 2.6x and the same accuracy) and neighbours of its 2.5-
3.3x plans, while its fastest feasible fine-tuned plan stood at 3.3x and the uniform sweep's at 4.1x: the
allocation model's 4-5x plans of round 4 were never fine-tuned. ``Outlook`` weighs each screened plan by what it
would add to the fine-tuned front's hypervolume if it reached the proxy line's accuracy plus one residual sd (an
optimistic reading: the line is fitted on few plans; never above the dense model's accuracy), as indicator-based
selection does (SMS-EMOA); a plan the front already dominates adds nothing, a plan in the front's gap at the fast
end adds most.

The proxy floor (``ProxyLine.floor``) is read off a line fitted on the plans fine-tuned so far, and under the
lowest of their proxies it is an extrapolation. A few fine-tune steps say least about the most heavily pruned
plans, so the line can put the floor too high there, and no plan under it is then weighed: in the quickstart
(ResNet-18, 2-step proxies, 2026-12-03) the floor sat at a proxy of 0.69, global pruning at 0.9 screened at 0.44,
and all but one screened plan faster than 2.9x lay under the floor. ``probe`` spends one promotion of a round on a
plan under the floor, halving the proxy interval where the floor is untested each time: met, the floor drops to
its proxy; missed, it bounds the interval. It is ``search.screen.probe``, off by default: on the bench's tasks
(8-step proxies) the screen with it read 0.93x and 0.94x the better sweep (medians over 3 seeds) against 1.02x and
0.96x without (``bench/search_quality.py --quick --seeds 3``, README): the fine-tunes it spent were needed more
above the floor.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from ..pareto import pareto_ranks
from ..pruning import dropped_count
from ..record import TrialRecord, baseline_of
from .calibration import ProxyLine

log = logging.getLogger(__name__)

#: Proxy interval under the floor narrower than this is not probed: the fine-tune's own seed noise is about as wide.
MIN_PROBE_GAP = 0.02


@dataclass(frozen=True)
class Outlook:
    """The fine-tuned front (feasible plans' accuracy and first cost), the proxy line, and the cost of dense (the
    hypervolume's reference with the accuracy budget)."""

    line: ProxyLine
    front: tuple[tuple[float, float], ...]
    worst_cost: float
    # the dense model's accuracy: no optimistic reading goes above it. Uncapped, the line plus one sd read the
    # slow plans with the highest proxies above every fine-tuned plan (bench VGG seed 0: the uniform 0.44 plan at
    # 1.6x, screened at 0.994), and they won the promotions on accuracy no plan had reached
    ceiling: float = 1.0

    def optimistic(self, proxy: float) -> float:
        """The line's accuracy at ``proxy`` plus one residual sd, at most the dense model's."""
        return min(self.line.accuracy(proxy) + self.line.spread, self.ceiling)

    def gain(self, front: list[tuple[float, float]], point: tuple[float, float]) -> float:
        """Hypervolume (accuracy above the budget x cost below dense) that ``point`` adds to ``front``."""
        return _area([*front, point], self.line.budget, self.worst_cost) - _area(front, self.line.budget,
                                                                                 self.worst_cost)

    def pick(self, trials: list[optuna.trial.FrozenTrial], count: int) -> list[optuna.trial.FrozenTrial]:
        """Up to ``count`` of ``trials`` (screened: proxy, first cost), greedily by optimistic hypervolume gain."""
        front, chosen, pool = list(self.front), [], list(trials)
        while pool and len(chosen) < count:
            points = {t.number: (self.optimistic(read(t, self.line)), t.values[1]) for t in pool}
            gains = {n: self.gain(front, p) for n, p in points.items()}
            best = max(pool, key=lambda t: (gains[t.number], -t.number))
            if gains[best.number] <= 0:
                break
            chosen.append(best)
            front.append(points[best.number])
            pool.remove(best)
        return chosen


def dropped_by(trial: optuna.trial.FrozenTrial) -> int:
    """How many residual blocks a screened plan drops."""
    record = TrialRecord.of(trial)
    return dropped_count(record.fixed_plan or record.plan)


def read(trial: optuna.trial.FrozenTrial, line: ProxyLine | None) -> float:
    """A screened plan's proxy as the line reads it (``ProxyLine.adjusted``); the proxy itself without a line."""
    return trial.values[0] if line is None else line.adjusted(trial.values[0], dropped_by(trial))


def explore_depth(fresh: list[optuna.trial.FrozenTrial], line: ProxyLine | None) -> optuna.trial.FrozenTrial | None:
    """While no fine-tuned plan has dropped a block, the screened plan that drops blocks with the highest proxy:
    its fine-tune gives the line its first reading of what a block costs the proxy (``ProxyLine.per_block``)."""
    if line is None or line.blocks_tried:
        return None
    deep = [t for t in fresh if dropped_by(t) > 0]
    return max(deep, key=lambda t: (t.values[0], -t.number)) if deep else None


def _area(points: list[tuple[float, float]], budget: float, worst: float) -> float:
    """2-D hypervolume (moocore, as ``moprune.pareto``) of (accuracy, cost) points: accuracy maximised above
    ``budget``, cost minimised below ``worst``."""
    import moocore
    import numpy as np

    inside = [p for p in points if p[0] > budget and p[1] < worst]
    if not inside:
        return 0.0
    return float(moocore.hypervolume(np.array(inside, dtype=float), ref=[budget, worst], maximise=[True, False]))


def probe(below: list[optuna.trial.FrozenTrial], outlook: Outlook) -> optuna.trial.FrozenTrial | None:
    """The screened plan under the floor whose fine-tune tests the floor, or None.

    Only plans faster (first cost) than the fastest feasible fine-tuned plan, and with a proxy above every
    fine-tuned plan that lies under the floor (those all missed the budget): the interval between the two is where
    the line is untested. Of the plans in its upper half the fastest, or the one with the highest proxy when none is
    there: bisection on the floor, aimed at the fast end the front lacks.
    """
    line = outlook.line
    fastest = min((cost for _, cost in outlook.front), default=math.inf)
    pool = [t for t in below if t.values[1] < fastest
            and (line.missed_below is None or read(t, line) > line.missed_below)]
    if not pool:
        return None
    low = line.missed_below if line.missed_below is not None else min(read(t, line) for t in pool)
    if line.floor - low < MIN_PROBE_GAP:
        return None
    middle = (low + line.floor) / 2
    upper = [t for t in pool if read(t, line) >= middle]
    if upper:
        return min(upper, key=lambda t: (t.values[1], t.number))
    return max(pool, key=lambda t: (read(t, line), -t.number))


def outlook_of(study: optuna.Study, line: ProxyLine | None, cost: str, accuracy_at: int) -> Outlook | None:
    """The outlook of ``study`` on its first cost ``cost`` (``latency_ms``, ``macs`` or ``params``): None without a
    line (no accuracy budget) or a dense baseline."""
    base = baseline_of(study)
    if line is None or base is None:
        return None
    front = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = TrialRecord.of(t)
        value = getattr(record, cost, None)
        if record.speedup and not record.rejected and value is not None and t.values[accuracy_at] >= line.budget:
            front.append((t.values[accuracy_at], float(value)))
    return Outlook(line, tuple(front), float(getattr(base, cost)), ceiling=base.accuracy)


def promoted(study: optuna.Study) -> set[int]:
    """Screen trial numbers already promoted into the fine-tuned ``study`` (queued, running or finished)."""
    return {r.screen_trial for r in (TrialRecord.of(t) for t in study.get_trials(deepcopy=False))
            if r.screen_trial is not None}


def _plan_key(trial: optuna.trial.FrozenTrial) -> str:
    return json.dumps([trial.params, TrialRecord.of(trial).fixed_plan], sort_keys=True)


def promote(screened: optuna.Study, study: optuna.Study, count: int, *, floor: float | None = None,
            outlook: Outlook | None = None, probing: bool = False) -> list[int]:
    """Queue the ``count`` best screened plans not yet promoted into ``study``.

    With an ``outlook`` (the proxy line and the fine-tuned front), first the plans whose optimistic accuracy (the
    line plus one residual sd) would add most to the fine-tuned front's hypervolume on accuracy x the first cost,
    greedily, each pick joining the front before the next is weighed (``Outlook.pick``). Then, and without an
    outlook, by Pareto rank on the proxy and the first cost (latency where the study has it): the trade-off the
    user deploys against, not the MACs beside it, which would put every plan that is cheap in MACs but slow on the
    device on the front too. Within a rank the picks are spread evenly along the front by that cost, so one round
    does not promote near-duplicates. With a ``floor`` (the lowest proxy the budget may admit: ``ProxyLine.floor``),
    plans below it are ranked only when those above run out, highest proxy first; but with ``probing``, an outlook
    and room for two or more, one plan under the floor is promoted to test it (``probe``). Proxies are read as the
    line reads them (``read``: plus the shift of the blocks a plan dropped), and while no fine-tuned plan has
    dropped a block, one promotion of a round of two or more goes to the best that does (``explore_depth``).
    """
    done = [t for t in screened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    taken = promoted(study)
    ran = {_plan_key(t) for t in study.get_trials(deepcopy=False)}  # e.g. a sweep level also fine-tuned as a start
    fresh = [t for t in done if t.number not in taken and _plan_key(t) not in ran]
    if not fresh or count <= 0:
        return []
    line = outlook.line if outlook is not None else None
    explorer = explore_depth(fresh, line) if count >= 2 else None
    if explorer is not None:
        log.info("promoting screened plan %d (proxy %.3f, %d block(s) dropped) to learn what a dropped block costs "
                 "the proxy: no fine-tuned plan has dropped one yet", explorer.number, explorer.values[0],
                 dropped_by(explorer))
        fresh = [t for t in fresh if t is not explorer]
        count -= 1
    above = [t for t in fresh if floor is None or read(t, line) >= floor]
    below = sorted((t for t in fresh if floor is not None and read(t, line) < floor), key=lambda t: -read(t, line))
    tester = probe(below, outlook) if probing and outlook is not None and count >= 2 else None
    room = count - (tester is not None)
    chosen = outlook.pick(above, room) if outlook is not None else []
    rest = [t for t in above if t not in chosen]
    chosen += _spread_by_rank(rest, [d.name.lower() for d in screened.directions][:2], room - len(chosen))
    if tester is not None:
        assert outlook is not None
        log.info("probing the proxy floor %.3f with screened plan %d (proxy %.3f): the line from proxy to accuracy "
                 "is untested there, %s", outlook.line.floor, tester.number, tester.values[0],
                 "no fine-tuned plan lies under the floor" if outlook.line.missed_below is None
                 else f"between {outlook.line.missed_below:.3f} (a fine-tuned plan that missed the budget) and the floor")
        chosen.append(tester)
    chosen += [t for t in below if t is not tester][:count - len(chosen)]
    if explorer is not None:
        chosen.insert(0, explorer)
    for t in chosen:
        record = TrialRecord.of(t)
        # not skip_if_exists (which compares parameters only): a global plan's nearest parameters may be those of a
        # uniform plan already run, and the global plan was then skipped and a sampler trial run in its place.
        # `taken` and `ran` above already keep a plan from being promoted twice
        study.enqueue_trial(dict(t.params), user_attrs=TrialRecord(screen_trial=t.number, start=record.start,
                                                                   fixed_plan=record.fixed_plan,
                                                                   proposer=record.proposer).attrs())
    return [t.number for t in chosen]


def _spread_by_rank(trials: list[optuna.trial.FrozenTrial], directions: list[str], count: int
                    ) -> list[optuna.trial.FrozenTrial]:
    """Up to ``count`` of ``trials``, first Pareto rank first, each rank's picks evenly spaced along its cost."""
    if not trials or count <= 0:
        return []
    ranks = pareto_ranks([t.values[:2] for t in trials], directions)
    chosen: list[optuna.trial.FrozenTrial] = []
    for rank in sorted({int(r) for r in ranks}):
        members = sorted((t for t, r in zip(trials, ranks) if r == rank), key=lambda t: (t.values[1], t.number))
        need = count - len(chosen)
        if len(members) > need:
            step = len(members) / need
            members = [members[int(i * step)] for i in range(need)]
        chosen += members
        if len(chosen) >= count:
            break
    return chosen
