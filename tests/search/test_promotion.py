"""Promotion: what could add most to the fine-tuned front goes first, then the screened front by Pareto rank."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import optuna
import pytest

from moprune.search import proxy_line
from moprune.search.promotion import MIN_PROBE_GAP, Outlook, _area, probe, promote

def ProxyLine(*args, **kwargs) -> proxy_line.ProxyLine:  # noqa: N802
    """A line built by hand, as fitted on enough plans that promotion weighs only expected gain
    (``promotion.LEARNING_POINTS``) unless ``points`` says otherwise."""
    return proxy_line.ProxyLine(*args, **{"points": 10, **kwargs})


LINE = ProxyLine(slope=1.0, intercept=0.0, spread=0.0, floor=0.9, budget=0.9)
FRONT = ((0.99, 4.0), (0.95, 3.0))  # fine-tuned, feasible: (accuracy, latency)


def _screened(points):
    screened = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"ratio/global": optuna.distributions.FloatDistribution(0, 1)}
    for i, values in enumerate(points):
        screened.add_trial(optuna.trial.create_trial(values=list(values), params={"ratio/global": i / 10},
                                                     distributions=dist))
    return screened


def test_the_area_is_moocores_hypervolume():
    import moocore

    rng = random.Random(0)
    for _ in range(20):
        points = [(rng.uniform(0.85, 1.0), rng.uniform(0.5, 12.0)) for _ in range(rng.randint(1, 8))]
        inside = [p for p in points if p[0] > 0.9 and p[1] < 10.0]
        expected = float(moocore.hypervolume(np.array(inside), ref=[0.9, 10.0], maximise=[True, False])) \
            if inside else 0.0
        assert _area(points, 0.9, 10.0) == pytest.approx(expected)


def test_plans_in_the_fronts_gap_are_promoted_and_plans_it_dominates_are_not():
    """A: as accurate as a fine-tuned plan but slower (adds nothing); B: in the gap at the fast end; C: below the
    budget; D: a little faster than a front plan and a little more accurate."""
    screened = _screened([(0.99, 6.0), (0.93, 1.5), (0.85, 1.0), (0.96, 2.9)])
    outlook = Outlook(LINE, FRONT, worst_cost=10.0)
    assert outlook.gain(list(FRONT), (0.99, 6.0)) == 0.0 and outlook.gain(list(FRONT), (0.85, 1.0)) == 0.0
    assert outlook.gain(list(FRONT), (0.93, 1.5)) == pytest.approx((3.0 - 1.5) * 0.03)
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, study, 2, outlook=outlook) == [1, 3], "the gap first, each pick joining the front"
    # nothing left adds to the front: nothing more is promoted (the sampler proposes the rest), while without an
    # outlook the rest go by Pareto rank on the screened values
    assert promote(screened, study, 2, outlook=outlook) == []
    assert sorted(promote(screened, study, 2)) == [0, 2]


def test_before_the_last_round_a_plan_expected_to_add_nothing_waits_for_later_plans():
    """Bench ResNet-20 seed 5 (2026-12-04): 6 of the screen's 13 fine-tunes went to plans at 1.3-2.0x, filled by
    Pareto rank once no plan was expected to add, while its front stopped at 3.1x; later rounds' plans, proposed
    knowing more fine-tuned plans, may add where these cannot."""
    screened = _screened([(0.99, 6.0), (0.93, 1.5), (0.85, 1.0), (0.96, 2.9)])
    outlook = Outlook(LINE, FRONT, worst_cost=10.0)
    early = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, early, 4, floor=LINE.floor, outlook=outlook) == [1, 3], \
        "the rest of the quota waits for later rounds (the caller carries it), or in the last goes to the sampler"
    nothing = _screened([(0.99, 6.0), (0.85, 1.0)])
    alone = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(nothing, alone, 2, floor=LINE.floor, outlook=outlook) == [], \
        "not one a round all the same: bench ResNet-20 seed 4 spent two fine-tunes so, at 0.70 and 0.86 of 0.90"
    learning = Outlook(ProxyLine(slope=1.0, intercept=0.0, spread=0.0, floor=0.9, budget=0.9, points=1), FRONT,
                       worst_cost=10.0)
    fresh = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(nothing, fresh, 2, floor=LINE.floor, outlook=learning) == [0], \
        "while the line rests on dense alone, one a round all the same: it learns from what is fine-tuned"


def test_no_reading_goes_above_the_dense_models_accuracy():
    """A slow plan with the top proxy would otherwise win on an accuracy no plan has reached (bench VGG seed 0)."""
    line = ProxyLine(slope=1.0, intercept=0.0, spread=0.02, floor=0.9, budget=0.9)
    capped = Outlook(line, ((0.99, 4.0),), worst_cost=10.0, ceiling=0.99)
    assert capped.expected_gain(list(capped.front), 0.995, 6.0) == 0.0
    uncapped = Outlook(line, ((0.99, 4.0),), worst_cost=10.0)
    assert uncapped.expected_gain(list(uncapped.front), 0.995, 6.0) > 0.0


def test_a_plan_read_just_under_the_budget_is_weighed_by_the_chance_that_it_meets_it():
    screened = _screened([(0.89, 1.5)])  # its line reading is below the budget, within one sd of it
    study = optuna.create_study(directions=["maximize", "minimize"])
    wide = Outlook(ProxyLine(1.0, 0.0, 0.02, 0.9, 0.9), FRONT, worst_cost=10.0)
    assert wide.pick(screened.get_trials(), 1) == screened.get_trials()
    narrow = Outlook(LINE, FRONT, worst_cost=10.0)
    assert narrow.pick(screened.get_trials(), 1) == []
    assert promote(screened, study, 1, outlook=narrow) == [], "it waits, or the sampler proposes instead"


def test_one_promotion_a_round_tests_an_untested_floor_with_the_fastest_plan_in_its_upper_half():
    """Under the floor (0.7) the line is an extrapolation: 0.40 missed the budget, (0.40, 0.70) is untested.

    0: above the floor, in the front's gap; 1: under it and slower than the front's fastest plan (adds nothing if it
    met the budget); 2, 3: the interval's upper half (>= 0.55), 3 the faster; 4: its lower half; 5: at or below
    the plan that missed."""
    line = ProxyLine(1.0, 0.25, 0.01, floor=0.70, budget=0.95, missed_below=0.40)
    outlook = Outlook(line, ((0.97, 4.0),), worst_cost=10.0, ceiling=0.99)
    screened = _screened([(0.74, 3.5), (0.65, 5.0), (0.66, 2.0), (0.58, 1.5), (0.45, 1.0), (0.40, 0.5)])
    below = sorted((t for t in screened.get_trials() if t.values[0] < line.floor), key=lambda t: -t.values[0])
    assert probe(below, outlook).number == 3
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, study, 2, floor=line.floor, outlook=outlook, probing=True) == [0, 3]
    alone = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, alone, 1, floor=line.floor, outlook=outlook, probing=True) == [0], \
        "a round of one is not spent on it"
    off = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, off, 2, floor=line.floor, outlook=outlook) == [0], \
        "not probing (the default): nothing under the floor in the last round (the sampler proposes the rest)"


def test_with_no_plan_in_the_upper_half_the_highest_proxy_is_probed_and_a_narrow_interval_is_not():
    outlook = Outlook(ProxyLine(1.0, 0.25, 0.01, floor=0.70, budget=0.95, missed_below=0.40), (), worst_cost=10.0)
    screened = _screened([(0.45, 1.0), (0.50, 2.0), (0.40, 0.5)])
    below = sorted(screened.get_trials(), key=lambda t: -t.values[0])
    assert probe(below, outlook).number == 1, "no front yet: any plan may extend it"
    narrow = Outlook(ProxyLine(1.0, 0.25, 0.01, floor=0.70, budget=0.95, missed_below=0.70 - MIN_PROBE_GAP / 2),
                     (), worst_cost=10.0)
    assert probe(_screened([(0.695, 1.0)]).get_trials(), narrow) is None
    untested = Outlook(ProxyLine(1.0, 0.25, 0.01, floor=0.70, budget=0.95), (), worst_cost=10.0)
    assert probe(below, untested).number == 1, "without a miss, the interval runs from the lowest candidate (0.40)"


def test_the_line_knows_the_highest_fine_tuned_proxy_under_its_floor():
    from moprune.search.proxy_line import fit_line

    line = fit_line([0.9, 0.8, 0.7, 0.5], [0.99, 0.97, 0.93, 0.85], budget=0.96)
    assert 0.7 < line.floor < 0.8 and line.missed_below == 0.7
    assert fit_line([0.9, 0.8], [0.99, 0.97], budget=0.96).missed_below is None


def test_a_fast_plan_a_little_over_the_budget_outweighs_a_slow_plan_with_the_top_proxy():
    """Bench ResNet-20 seed 4 (2026-12-04): gated by the floor and read optimistically, every fine-tune went to slow
    plans on a saturated accuracy. In expectation, a slow plan adds a sliver (its accuracy can hardly beat the
    front's at dense's ceiling) and a fast plan in the front's gap adds its area times its chance."""
    line = ProxyLine(1.0, 0.0, 0.02, floor=0.88, budget=0.9)
    outlook = Outlook(line, ((0.986, 6.0),), worst_cost=10.0, ceiling=0.99)
    screened = _screened([(0.999, 7.0), (0.905, 2.0)])
    slow, fast = (outlook.expected_gain(list(outlook.front), t.values[0], t.values[1]) for t in screened.get_trials())
    assert 0 < slow < fast
    assert outlook.pick(screened.get_trials(), 1) == [screened.get_trials()[1]]
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, study, 1, floor=line.floor, outlook=outlook) == [1]
    hopeless = outlook.expected_gain(list(outlook.front), 0.80, 2.0)
    assert hopeless == 0.0, "five sds under the budget: no chance worth a fine-tune"


def test_a_fast_plan_under_the_floor_is_not_promoted_for_its_expected_gain():
    """Bench ResNet-20 ``--quick`` seed 4 (2026-12-05): the uniform 0.85 plan, read under the floor, was fine-tuned
    for the area it would add at 4x if it met the budget (it gave 0.76 against 0.90). Fine-tuned plans the line put
    under the floor met the budget 2 times in 38 over the bench's studies."""
    line = ProxyLine(1.0, 0.0, 0.02, floor=0.89, budget=0.9)
    outlook = Outlook(line, ((0.986, 6.0),), worst_cost=10.0, ceiling=0.99)
    screened = _screened([(0.93, 5.9), (0.885, 1.0)])
    front = list(outlook.front)
    assert outlook.expected_gain(front, 0.885, 1.0) > outlook.expected_gain(front, 0.93, 5.9) > 0
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, study, 1, floor=line.floor, outlook=outlook) == [0]
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, study, 2, floor=line.floor, outlook=outlook) == [0], "its quota waits or is the sampler's"


def test_a_plan_expected_to_beat_the_front_by_less_than_an_accuracy_can_tell_gains_nothing():
    """Bench ResNet-20 ``--quick`` seed 4 (2026-12-05): four of the last six fine-tunes went to plans at 1.6-2.2x
    that a 2.27x plan at 0.992 (fine-tuned in round 1) dominated, for the sliver of their spread above it. Read on
    360 validation examples, an accuracy of 0.992 is +-0.005 (one standard error)."""
    line = ProxyLine(1.0, 0.0, 0.01, floor=0.9, budget=0.9)
    blunt = Outlook(line, ((0.992, 6.4),), worst_cost=14.6, ceiling=0.994)
    sharp = dataclasses.replace(blunt, examples=360)
    resolved = sharp.resolved(0.992)
    assert resolved == pytest.approx(0.992 + (0.992 * 0.008 / 360) ** 0.5)
    slow = (0.993, 8.9)  # read a little above the front's plan, slower
    assert blunt.expected_gain(list(blunt.front), *slow) > 0
    sharp = dataclasses.replace(sharp, front=((resolved, 6.4),))
    assert sharp.expected_gain(list(sharp.front), *slow) == 0.0
    fast = (0.95, 3.0)  # in the front's gap at the fast end: gains as before
    assert sharp.expected_gain(list(sharp.front), *fast) > 0


def test_the_spread_widens_away_from_the_fine_tuned_proxies():
    from moprune.search.proxy_line import fit_line

    line = fit_line([0.90, 0.92, 0.95, 0.97], [0.96, 0.97, 0.98, 0.99], budget=0.9)
    assert line.sd_at(0.935) < line.sd_at(0.6)
    assert line.sd_at(0.935) == pytest.approx(line.scatter_at(line.accuracy(0.935)), rel=0.2), "among the proxies"
    assert ProxyLine(1.0, 0.0, 0.02, 0.9, 0.9).sd_at(0.1) == 0.02, "no fit: the prior spread"


def test_a_round_keeps_its_quota_for_later_plans_rather_than_fine_tune_one_far_under_the_floor():
    """Round 1 of bench ResNet-20 seed 4 fine-tuned the uniform 0.85 plan (proxy 0.28, budget 0.89): nothing else
    was screened yet. Plans under the floor are not promoted; one above it is."""
    line = ProxyLine(1.0, 0.0, 0.02, floor=0.89, budget=0.89)
    outlook = Outlook(line, (), worst_cost=10.0, ceiling=0.99)
    screened = _screened([(0.92, 4.0), (0.28, 0.5), (0.86, 2.0)])
    early = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(screened, early, 3, floor=line.floor, outlook=outlook) == [0], \
        "the rest waits for later rounds' plans, or in the last round the sampler proposes it"
    alone = optuna.create_study(directions=["maximize", "minimize"])
    assert promote(_screened([(0.28, 0.5)]), alone, 2, floor=line.floor, outlook=outlook) == []


def test_a_twin_of_a_promoted_plan_is_not_promoted():
    """Bench ResNet-20 ``--quick`` seed 4 (2026-12-05): the uniform and global 0.71 plans screened at 3.00x and 2.92x
    (0.669 and 0.647); both were fine-tuned (0.942 and 0.933), and the second told the front nothing new."""
    screened = _screened([(0.669, 3.00), (0.647, 2.92), (0.60, 2.0)])
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert sorted(promote(screened, study, 3)) == [0, 2], "of twins screened together, the better proxy"
    assert promote(screened, study, 3) == [], "and the other never after its twin was promoted"
    apart = _screened([(0.669, 3.00), (0.647, 2.70), (0.62, 3.0)])
    assert sorted(promote(apart, optuna.create_study(directions=["maximize", "minimize"]), 3)) == [0, 1, 2], \
        "a tenth cheaper, or a proxy 0.05 lower, is another point"


def test_promotion_reads_a_cost_it_is_given_over_the_stored_one():
    """The screen re-predicts a plan's latency with the latest latency model (``screen.first_cost``)."""
    screened = _screened([(0.95, 9.0), (0.95, 2.0)])
    study = optuna.create_study(directions=["maximize", "minimize"])
    outlook = Outlook(ProxyLine(1.0, 0.0, 0.02, 0.9, 0.9), (), worst_cost=10.0)
    swapped = {0: 2.0, 1: 9.0}
    assert promote(screened, study, 1, outlook=outlook, cost=lambda t: swapped[t.number]) == [0]
