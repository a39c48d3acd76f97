"""Which screened plans are fine-tuned: those expected to add most to the fine-tuned front, then by Pareto rank.

Pareto rank on proxy x latency alone spends fine-tunes where the fine-tuned front is already full: on the bench's
VGG (seed 0, 2026-12-03, budget 0.03 below dense) the screen's last rounds promoted the uniform 0.44 plan (1.57x,
dominated by the uniform 0.57 plan fine-tuned in round 1 at 2.6x and the same accuracy) and neighbours of its 2.5-
3.3x plans, while its fastest feasible fine-tuned plan stood at 3.3x and the uniform sweep's at 4.1x: the
allocation model's 4-5x plans of round 4 were never fine-tuned. ``Outlook`` weighs each screened plan by the
hypervolume it is expected to add to the fine-tuned front, over where its accuracy may land (the proxy line's
reading, give or take the line's residual sd widened away from the proxies it was fitted on; never above the dense
model's accuracy), as expected-improvement acquisition does in Bayesian optimisation: a plan the front already
dominates adds nothing, a plan in the front's gap at the fast end adds its area times its chance of meeting the
budget. It replaced (2026-12-04) an optimistic reading (line plus one sd) of the plans above the floor only, under
which the bench's ResNet-20 (seed 4) fine-tuned twelve plans at 1.4-2.3x on a saturated accuracy. Since 2026-12-05
it weighs the plans at or above the floor (the line plus one sd reaches the budget there) and no others: under it
the chance is too small for the area to pay, and the bench's plans there met the budget 2 times in 38 (``promote``).

The proxy floor (``ProxyLine.floor``) is read off a line fitted on the plans fine-tuned so far, and under the
lowest of their proxies it is an extrapolation. A few fine-tune steps say least about the most heavily pruned
plans, so the line can put the floor too high there, and no plan under it is then weighed: in the quickstart
(ResNet-18, 2-step proxies, 2026-12-03) the floor sat at a proxy of 0.69, global pruning at 0.9 screened at 0.44,
and all but one screened plan faster than 2.9x lay under the floor. ``probe`` spends one promotion of a round on a
plan under the floor, halving the proxy interval where the floor is untested each time: met, the floor drops to
its proxy; missed, it bounds the interval. It is ``search.screen.probe``, off by default: on the bench's tasks
(8-step proxies) the screen with it read 0.93x and 0.94x the better sweep (medians over 3 seeds) against 1.02x and
0.96x without (``bench/search_quality.py --quick --seeds 3``, ``bench/search_quality.md``): the fine-tunes it
spent were needed more above the floor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import optuna
from optuna.trial import TrialState

from ..pareto import pareto_ranks
from ..pruning import dropped_count
from ..record import TrialRecord, baseline_of
from .proxy_line import ProxyLine

log = logging.getLogger(__name__)

#: Fine-tuned plans (dense among them) the proxy line must rest on before a round promotes only what is expected to
#: add: with fewer, one a round all the same (``promote``).
LEARNING_POINTS = 4

#: Proxy interval under the floor narrower than this is not probed: the fine-tune's own seed noise is about as wide.
MIN_PROBE_GAP = 0.02


#: Equal-probability points of a standard normal (the midpoints of 8 bins) at which ``Outlook.expected_gain`` reads a
#: plan's accuracy: the expectation of its gain over where its fine-tune may land.
_QUANTILES = tuple(NormalDist().inv_cdf((i + 0.5) / 8) for i in range(8))


@dataclass(frozen=True)
class Outlook:
    """The fine-tuned front (feasible plans' accuracy and first cost), the proxy line, and the cost of dense (the
    hypervolume's reference with the accuracy budget).

    The reference is the budget, not that of the hypervolume ``status`` reports (dense's accuracy less twice the
    drop, under which meeting the budget is worth a box of its own): tried on 2026-12-05 (``bench/search_quality.py
    --quick --tasks resnet20``), that reference promoted more fast plans read near the budget, and on seed 4 two of
    them, screened at 0.44, gave 0.70 and 0.72 against 0.90: 0.99x the better sweep (1.16x with the budget). Seeds
    0-2 and 3, 5 moved by no more than the seed-to-seed spread (1.22-1.26x, 1.12-1.15x, 1.05-1.06x; 1.25x, 1.16x).
    """

    line: ProxyLine
    front: tuple[tuple[float, float], ...]
    worst_cost: float
    # the dense model's accuracy: no reading goes above it. Uncapped, the line plus one sd (the reading before the
    # expected gain) read the slow plans with the highest proxies above every fine-tuned plan (bench VGG seed 0: the
    # uniform 0.44 plan at 1.6x, screened at 0.994), and they won the promotions on accuracy no plan had reached
    ceiling: float = 1.0
    # validation examples an accuracy is read on (0: unknown). A fine-tuned point stands on the front as its accuracy
    # plus one standard error of that reading (``resolved``): a plan expected to beat it by less cannot be told from
    # it. Without the margin the slow plans read at about the front's accuracy still had a sliver of expected gain
    # from the upper half of their spread: on the bench's ResNet-20 (``--quick`` seed 4, 2026-12-05) four of the
    # last six fine-tunes went to plans at 1.6-2.2x that a 2.27x plan fine-tuned in round 1 dominated (0.992)
    examples: int = 0

    def resolved(self, accuracy: float) -> float:
        """``accuracy`` as a point of the front: plus one standard error of an accuracy read on ``examples``."""
        if self.examples <= 0:
            return accuracy
        return accuracy + math.sqrt(max(accuracy * (1 - accuracy), 0.0) / self.examples)

    def gain(self, front: list[tuple[float, float]], point: tuple[float, float]) -> float:
        """Hypervolume (accuracy above the budget x cost below dense) that ``point`` adds to ``front``."""
        return _area([*front, point], self.line.budget, self.worst_cost) - _area(front, self.line.budget,
                                                                                 self.worst_cost)

    def expected_gain(self, front: list[tuple[float, float]], proxy: float, cost: float) -> float:
        """What a plan read at ``proxy`` (``read``) and costing ``cost`` adds to ``front``, in expectation over where
        its accuracy may land: the line's reading give or take ``ProxyLine.sd_at`` (normal on the line's scale,
        ``ProxyLine.reading``), capped at dense.

        Expected improvement, as Bayesian optimisation weighs a candidate, instead of a floor that gates promotion
        and an optimistic reading above it: a slow plan on a saturated accuracy adds almost nothing however high its
        proxy, and a fast plan in the front's gap adds its area times the chance that it meets the budget. Gated,
        the bench's ResNet-20 (seed 4, 2026-12-04) fine-tuned twelve plans at 1.4-2.3x read above the floor while
        the sampler without screening found plans at 3x that met the budget with 0.95-0.97.
        """
        base = _area(front, self.line.budget, self.worst_cost)
        if self.line.reading(proxy, _QUANTILES[-1]) <= self.line.budget:
            return 0.0
        return sum(_area([*front, (min(self.line.reading(proxy, z), self.ceiling), cost)], self.line.budget,
                         self.worst_cost) - base for z in _QUANTILES) / len(_QUANTILES)

    def pick(self, trials: list[optuna.trial.FrozenTrial], count: int, cost: dict[int, float] | None = None
             ) -> list[optuna.trial.FrozenTrial]:
        """Up to ``count`` of ``trials`` (screened: proxy, first cost), greedily by expected hypervolume gain
        (``pick_points``). ``cost``: each trial's first cost by number (default its stored value)."""
        cost = cost or stored_costs(trials)
        chosen = self.pick_points([read(t, self.line) for t in trials], [cost[t.number] for t in trials], count)
        return [trials[i] for i in chosen]

    def pick_points(self, readings: list[float], costs: list[float], count: int) -> list[int]:
        """Indices of up to ``count`` plans, each a proxy as the line reads it (``read``) and a first cost, greedily
        by expected hypervolume gain: each pick joins the front at the line's reading (at most dense's, plus the
        resolution margin) before the next is weighed, so two plans alike are not both chosen for the same gap.
        Ties go to the earlier plan. Promotion weighs screened plans with it, and the allocation model the plans its
        fit proposes (``moprune.search.proposals.queue_allocations``)."""
        front, chosen = list(self.front), []
        pool = list(range(len(readings)))
        while pool and len(chosen) < count:
            gains = {i: self.expected_gain(front, readings[i], costs[i]) for i in pool}
            best = max(pool, key=lambda i: (gains[i], -i))
            if gains[best] <= 0:
                break
            chosen.append(best)
            front.append((self.resolved(min(self.line.accuracy(readings[best]), self.ceiling)), costs[best]))
            pool.remove(best)
        return chosen


def stored_costs(trials: list[optuna.trial.FrozenTrial]) -> dict[int, float]:
    """Each screened trial's first cost as stored when it was screened, by number (the default where no re-predicted
    cost is given)."""
    return {t.number: t.values[1] for t in trials}


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


def probe(below: list[optuna.trial.FrozenTrial], outlook: Outlook, cost: dict[int, float] | None = None
          ) -> optuna.trial.FrozenTrial | None:
    """The screened plan under the floor whose fine-tune tests the floor, or None.

    Only plans faster (first cost: ``cost`` by number, default the stored value) than the fastest feasible
    fine-tuned plan, and with a proxy above every fine-tuned plan that lies under the floor (those all missed the
    budget): the interval between the two is where the line is untested. Of the plans in its upper half the fastest,
    or the one with the highest proxy when none is there: bisection on the floor, aimed at the fast end the front
    lacks.
    """
    cost = cost or stored_costs(below)
    line = outlook.line
    fastest = min((c for _, c in outlook.front), default=math.inf)
    pool = [t for t in below if cost[t.number] < fastest
            and (line.missed_below is None or read(t, line) > line.missed_below)]
    if not pool:
        return None
    low = line.missed_below if line.missed_below is not None else min(read(t, line) for t in pool)
    if line.floor - low < MIN_PROBE_GAP:
        return None
    middle = (low + line.floor) / 2
    upper = [t for t in pool if read(t, line) >= middle]
    if upper:
        return min(upper, key=lambda t: (cost[t.number], t.number))
    return max(pool, key=lambda t: (read(t, line), -t.number))


def outlook_of(study: optuna.Study, line: ProxyLine | None, cost: str, accuracy_at: int, examples: int = 0
               ) -> Outlook | None:
    """The outlook of ``study`` on its first cost ``cost`` (``latency_ms``, ``macs`` or ``params``): None without a
    line (no accuracy budget) or a dense baseline. ``examples``: the validation examples an accuracy is read on (the
    front's points stand one standard error above their accuracy: ``Outlook.resolved``)."""
    base = baseline_of(study)
    if line is None or base is None:
        return None
    front = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = TrialRecord.of(t)
        value = getattr(record, cost, None)
        if record.speedup and not record.rejected and value is not None and t.values[accuracy_at] >= line.budget:
            front.append((t.values[accuracy_at], float(value)))
    outlook = Outlook(line, (), float(getattr(base, cost)), ceiling=base.accuracy, examples=examples)
    return dataclasses.replace(outlook, front=tuple((outlook.resolved(a), c) for a, c in front))


def promoted(study: optuna.Study) -> set[int]:
    """Screen trial numbers already promoted into the fine-tuned ``study`` (queued, running or finished)."""
    return {r.screen_trial for r in (TrialRecord.of(t) for t in study.get_trials(deepcopy=False))
            if r.screen_trial is not None}


def _plan_key(trial: optuna.trial.FrozenTrial) -> str:
    return json.dumps([trial.params, TrialRecord.of(trial).fixed_plan], sort_keys=True)


def promote(screened: optuna.Study, study: optuna.Study, count: int, *, floor: float | None = None,
            outlook: Outlook | None = None, probing: bool = False,
            cost: Callable[[optuna.trial.FrozenTrial], float] | None = None) -> list[int]:
    """Queue up to ``count`` of the best screened plans not yet promoted into ``study``.

    With an ``outlook`` (the proxy line and the fine-tuned front), first the plans at or above the ``floor`` whose
    fine-tune is expected to add most to the fine-tuned front's hypervolume on accuracy x the first cost, greedily,
    each pick joining the front before the next is weighed (``Outlook.pick``). Not the plans under it, however fast:
    the line puts each under a one-in-six chance of meeting the budget, and expected gain still chose them for the
    area they would add. Over the fourteen bench runs of 2026-12-04/05 (42 studies, ``bench/proxy_line.py``), 2 of
    the 38 fine-tuned plans the line (as of 2026-12-05) puts under the floor met the budget, 29 of 61 between the
    floor and the aim; the bench's ResNet-20 (``--quick`` seed 4) spent two of its eight searched fine-tunes on such
    plans (4.1-4.3x; 0.76 and 0.81 against a budget of 0.90). With an outlook that is all: before the last round
    the rest of the quota waits for plans screened later (the caller carries it), and in the last round what no
    screened plan is expected to add, the caller leaves to the sampler, which learns from the fine-tuned trials.
    Until 2026-12-05 the last round filled its quota by Pareto rank, and spent it on slow plans that a faster
    fine-tuned plan of the same accuracy dominated; and each earlier round promoted one plan all the same when none
    was expected to add (so that the line kept learning), which on the bench's ResNet-20 (``--quick`` seed 4) went to
    the global 0.85 plan and a neighbour screened at 0.44 and 0.58: 0.70 and 0.86 against a budget of 0.90. Now that
    happens only while the line rests on fewer than ``LEARNING_POINTS`` plans (the first the line puts within reach
    of the budget, ``within_reach``, or the highest under the floor), and then in any round. Twins of
    a promoted plan (``distinct``) are not weighed. Without an outlook, the plans at or above the ``floor`` (the
    lowest proxy the budget may admit: ``ProxyLine.floor``) go by Pareto rank on the proxy and the first cost
    (latency where the study has it): the trade-off the user deploys against, not the MACs beside it, which would
    put every plan that is cheap in MACs but slow on the device on the front too. Within a rank the picks are spread
    evenly along the front by that cost, so one round does not promote near-duplicates. Plans under the floor come
    last, highest proxy first. Round 1 of the bench's ResNet-20 (seed 4) once fine-tuned the uniform 0.85 plan,
    screened at 0.28, because nothing else had been screened yet.

    ``cost(trial)`` is a screened plan's first cost (default: its stored value; the screen re-predicts a latency with
    the model refitted since it was screened). With ``probing``, an outlook and room for two or more, one plan under
    the floor is promoted to test it (``probe``). Proxies are read as the line reads them (``read``: plus the shift
    of the blocks a plan dropped), and while no fine-tuned plan has dropped a block, one promotion of a round of two
    or more goes to the best that does (``explore_depth``).
    """
    done = [t for t in screened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    taken = promoted(study)
    ran = {_plan_key(t) for t in study.get_trials(deepcopy=False)}  # e.g. a sweep level also fine-tuned as a start
    fresh = [t for t in done if t.number not in taken and _plan_key(t) not in ran]
    if not fresh or count <= 0:
        return []
    costs = stored_costs(fresh) if cost is None else {t.number: cost(t) for t in fresh}
    anchors = [(t.values[0], t.values[1] if cost is None else cost(t)) for t in done if t.number in taken]
    fresh = distinct(fresh, anchors, costs)
    line = outlook.line if outlook is not None else None
    explorer = explore_depth(fresh, line) if count >= 2 else None
    if explorer is not None:
        log.info("promoting screened plan %d (proxy %.3f, %d block(s) dropped) to learn what a dropped block costs "
                 "the proxy: no fine-tuned plan has dropped one yet", explorer.number, explorer.values[0],
                 dropped_by(explorer))
        fresh = [t for t in fresh if t is not explorer]
        count -= 1
    below = sorted((t for t in fresh if floor is not None and read(t, line) < floor), key=lambda t: -read(t, line))
    tester = probe(below, outlook, costs) if probing and outlook is not None and count >= 2 else None
    room = count - (tester is not None)
    pool = [t for t in fresh if t is not tester]
    # only plans at or above the floor are weighed by their expected gain (``Outlook.pick``): see ``promote``
    chosen = outlook.pick([t for t in pool if t not in below], room, costs) if outlook is not None else []
    # before the last round a plan the line expects to add nothing waits: the next round's plans, proposed knowing
    # more fine-tuned plans, may add to the front where these cannot

    # while the line rests on few plans, one a round all the same, so that it learns: on dense alone it reads every
    # pruned plan under the floor, and nothing would be promoted
    learning = outlook is not None and outlook.line.points < LEARNING_POINTS

    def more(limit: int) -> int:
        """How many more to promote: up to ``limit`` in all without an outlook; with one, one if none is chosen yet
        while the line is ``learning``, else none (before the last round the quota waits for later plans; in it,
        what the outlook expects to add nothing goes to the sampler: ``moprune.search.screen.run_screened``)."""
        if outlook is None:
            return limit - len(chosen)
        return 1 if learning and not chosen and explorer is None else 0

    above = [t for t in pool if t not in chosen and (floor is None or read(t, line) >= floor)]
    chosen += _spread_by_rank(above, [d.name.lower() for d in screened.directions][:2], more(room), costs)
    if tester is not None:
        assert outlook is not None
        log.info("probing the proxy floor %.3f with screened plan %d (proxy %.3f): the line from proxy to accuracy "
                 "is untested there, %s", outlook.line.floor, tester.number, tester.values[0],
                 "no fine-tuned plan lies under the floor" if outlook.line.missed_below is None
                 else f"between {outlook.line.missed_below:.3f} (a fine-tuned plan that missed the budget) and the floor")
        chosen.append(tester)
    waiting = [t for t in below if t is not tester and t not in chosen]
    if learning:  # the one promoted all the same: the first the line puts within reach, else the highest
        reachable = [t for t in waiting if within_reach(outlook, read(t, line))]
        waiting = reachable or waiting[:1]
    chosen += waiting[:more(count)]
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


#: Two screened plans whose first costs lie within this share of each other and whose proxies within ``TWIN_PROXY``
#: are one point to the fine-tuned front (``distinct``): the uniform and the global plan of one sweep level prune to
#: such twins (bench ResNet-20 ``--quick`` seed 4, 2026-12-05: the 0.71 pair screened at 3.00x and 2.92x, 0.669 and
#: 0.647, both were fine-tuned, 0.942 and 0.933), and the second fine-tune tells the front nothing the first did not.
TWIN_COST = 0.08
#: About the spread of an 8-step proxy between two fine-tune seeds on a few hundred validation images.
TWIN_PROXY = 0.03


def _twins(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (proxy, first cost) points are within ``TWIN_PROXY`` and ``TWIN_COST`` of each other."""
    return abs(a[0] - b[0]) <= TWIN_PROXY and abs(a[1] - b[1]) <= TWIN_COST * min(a[1], b[1])


def distinct(fresh: list[optuna.trial.FrozenTrial], anchors: list[tuple[float, float]], cost: dict[int, float]
             ) -> list[optuna.trial.FrozenTrial]:
    """``fresh`` (screened plans, in their order) less each twin (``_twins``) of an ``anchor`` (a promoted plan's
    proxy and first cost) or of a plan kept before it, highest proxy first: of twins, the one with the best proxy
    is weighed for promotion."""
    points, kept = list(anchors), set()
    for t in sorted(fresh, key=lambda t: (-t.values[0], t.number)):
        point = (t.values[0], cost[t.number])
        if not any(_twins(point, q) for q in points):
            kept.add(t.number)
            points.append(point)
    return [t for t in fresh if t.number in kept]


def within_reach(outlook: Outlook, proxy: float) -> bool:
    """Whether the line puts a plan read at ``proxy`` within three of its sds (at that proxy) of the budget."""
    return outlook.line.reading(proxy, 3.0) >= outlook.line.budget


def _spread_by_rank(trials: list[optuna.trial.FrozenTrial], directions: list[str], count: int,
                    cost: dict[int, float] | None = None) -> list[optuna.trial.FrozenTrial]:
    """Up to ``count`` of ``trials``, first Pareto rank first, each rank's picks evenly spaced along its cost
    (``cost`` by number; default the stored value)."""
    if not trials or count <= 0:
        return []
    cost = cost or stored_costs(trials)
    ranks = pareto_ranks([(t.values[0], cost[t.number]) for t in trials], directions)
    chosen: list[optuna.trial.FrozenTrial] = []
    for rank in sorted({int(r) for r in ranks}):
        members = sorted((t for t, r in zip(trials, ranks) if r == rank), key=lambda t: (cost[t.number], t.number))
        need = count - len(chosen)
        if len(members) > need:
            step = len(members) / need
            members = [members[int(i * step)] for i in range(need)]
        chosen += members
        if len(chosen) >= count:
            break
    return chosen
