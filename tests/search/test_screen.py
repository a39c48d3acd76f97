"""Screening: screened plans live in their own study with a proxy (never an accuracy); the best are fine-tuned."""

from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.trial import TrialState

from helpers import fast_spec, make_spec
from moprune.record import TrialRecord, baseline_of
from moprune.search import finished_count, run_study
from moprune.search.promotion import promote
from moprune.search.screen import SCREEN_SUFFIX, screen_objectives

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screened_study(session_cwd):
    """A 5-trial study that screened 6+ plans (about 25 s); do not modify it."""
    url = f"sqlite:///{session_cwd / 'screened.db'}"
    spec = make_spec(name="screened", storage=url, measure={"threads": 1, "ci_half_width": None},
                     search={"n_trials": 5, "uniform_count": 2, "sampler": "random",
                             "screen": {"plans": 7, "rounds": 2, "batches": 2, "sweep": 3}})
    return spec, url, run_study(spec, progress=False)


def test_a_screened_study_fine_tunes_n_trials_promoted_by_pareto_rank(screened_study):
    spec, url, study = screened_study
    assert finished_count(study) == 5, "search.n_trials counts fine-tuned trials only"
    screened = optuna.load_study(study_name="screened" + SCREEN_SUFFIX, storage=url)
    assert screened.metric_names == screen_objectives(spec) == ["accuracy_proxy", "latency_predicted_ms", "macs"]
    done = screened.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) >= 7
    predicted = 0
    for t in done:
        record = TrialRecord.of(t)
        assert record.fidelity == "screened" and record.proxy_method == "finetune"
        assert record.accuracy_proxy == t.values[0] and "accuracy" not in t.user_attrs
        assert record.macs == t.values[2] and record.cost_features
        if record.latency_predicted_ms is not None:  # the latency model's prediction, never stored as measured
            predicted += 1
            assert record.latency_predicted_ms == t.values[1] > 0
            assert record.latency_ms is None and record.speedup is None and record.latency_screen is None
        else:  # a plan the model did not cover (the first ones: no model yet) is timed, paired: quick, or the
            # precise measurement of its shape when the study has one (the dense-shaped plan at ratio 0)
            assert record.latency_screen is not None and record.latency_ms == t.values[1] > 0 and record.speedup
    assert not TrialRecord.of(done[0]).latency_predicted_ms, "no plan is predicted before the model is fitted"
    first_three = [TrialRecord.of(t).start for t in screened.get_trials()[:3]]
    low, high = spec.prune.ratio.low, spec.prune.ratio.high
    assert first_three == [f"uniform {low:.2f}", f"uniform {high:.2f}", f"uniform {(low + high) / 2:.2f}"], \
        "the uniform sweep is screened first, coarse to fine"
    assert all(TrialRecord.of(t).start is None for t in screened.get_trials()[3:]), "then the sampler proposes"
    records = [TrialRecord.of(t) for t in study.get_trials()]
    assert all(r.fidelity == "fine-tuned" and r.accuracy_proxy is None for r in records)
    promoted = [r.screen_trial for r in records if r.screen_trial is not None]
    assert promoted and len(set(promoted)) == len(promoted), "each screened plan is fine-tuned at most once"
    first = {t.number: t for t in done}
    for t in study.get_trials():
        r = TrialRecord.of(t)
        if r.screen_trial is not None:
            assert t.params == first[r.screen_trial].params, "the promoted plan is the screened one"


def test_the_screen_times_plans_itself_only_when_asked():
    assert screen_objectives(make_spec(search={"screen": {"plans": 4}})) == ["accuracy_proxy", "latency_predicted_ms",
                                                                            "macs"]
    measured = make_spec(objectives=["accuracy", "energy_mj", "latency_ms"],
                         search={"screen": {"plans": 4, "latency": "measure"}})
    assert screen_objectives(measured) == ["accuracy_proxy", "latency_ms"], "energy is screened by its latency"


def test_a_plan_the_screen_times_reads_the_dense_latency_over_its_paired_speedup(session_cwd):
    spec = fast_spec("screen-timed", n_trials=3, seed_trials=["dense"],
                     screen={"plans": 4, "rounds": 1, "batches": 1, "sweep": 0, "latency": "measure"})
    spec = spec.model_copy(update={"storage": f"sqlite:///{session_cwd / 'screen-timed.db'}"})
    study = run_study(spec, progress=False)
    dense = baseline_of(study).latency_ms
    screened = optuna.load_study(study_name="screen-timed" + SCREEN_SUFFIX, storage=spec.storage)
    timed = [t for t in screened.get_trials(states=(TrialState.COMPLETE,))]
    assert len(timed) == 4
    for t in timed:
        record = TrialRecord.of(t)
        assert record.latency_screen is not None and record.speedup is not None  # (a dense shape reuses the baseline's)
        # like a fine-tuned trial's: the paired ratio, not the plan's own median (kept as latency_ms_rounds)
        assert t.values[1] == record.latency_ms == pytest.approx(dense / record.speedup)
        assert record.latency_ms_rounds is not None


def test_promotion_takes_the_first_pareto_rank_first():
    screened = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"ratio/global": optuna.distributions.FloatDistribution(0, 1)}
    points = [(0.9, 10.0), (0.8, 5.0), (0.7, 9.0), (0.5, 4.0), (0.6, 12.0)]  # front: 0, 1, 3
    for i, values in enumerate(points):
        screened.add_trial(optuna.trial.create_trial(values=list(values), params={"ratio/global": i / 10},
                                                     distributions=dist))
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert sorted(promote(screened, study, 3)) == [0, 1, 3]
    assert promote(screened, study, 1) == [2], "then the next rank, never a plan twice"


def test_below_the_calibrated_floor_plans_wait_until_those_above_run_out():
    screened = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"ratio/global": optuna.distributions.FloatDistribution(0, 1)}
    points = [(0.9, 10.0), (0.8, 5.0), (0.5, 4.0), (0.3, 1.0), (0.4, 2.0)]  # front: 0, 1, 2, 4, 3
    for i, values in enumerate(points):
        screened.add_trial(optuna.trial.create_trial(values=list(values), params={"ratio/global": i / 10},
                                                     distributions=dist))
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert sorted(promote(screened, study, 2, floor=0.6)) == [0, 1], "the fast end is below the budget's proxy"
    assert promote(screened, study, 2, floor=0.6) == [2, 4], "then the closest to the floor first"


def test_a_global_plan_with_a_run_uniform_plans_parameters_is_still_promoted_itself():
    """Its nearest parameters equal the uniform plan's; what runs must be the global plan (its fixed plan)."""
    dist = {"ratio/global": optuna.distributions.FloatDistribution(0, 1)}
    screened = optuna.create_study(directions=["maximize", "minimize"])
    fixed = TrialRecord(start="global 0.40", fixed_plan={"a": 0.2, "b": 0.6}).attrs()
    screened.add_trial(optuna.trial.create_trial(values=[0.9, 1.0], params={"ratio/global": 0.4},
                                                 distributions=dist, user_attrs=fixed))
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 1.2], params={"ratio/global": 0.4}, distributions=dist,
                                              user_attrs=TrialRecord(start="uniform 0.40").attrs()))
    assert promote(screened, study, 1) == [0]
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert len(queued) == 1 and TrialRecord.of(queued[0]).fixed_plan == {"a": 0.2, "b": 0.6}
    assert promote(screened, study, 1) == [], "and never twice"


@pytest.mark.parametrize(("plans", "rounds", "fine_tunes", "per_round", "quotas"), [
    (40, 4, 9, 10, [2, 2, 2, 3]), (40, 4, 3, 14, [1, 1, 1]), (90, 3, 5, 30, [1, 2, 2]), (8, 2, 3, 4, [1, 2]),
    (10, 4, 0, 10, [1])])
def test_every_round_promotes_so_that_every_round_runs(plans, rounds, fine_tunes, per_round, quotas):
    """Promotions spread over the rounds: rounded up per round (3, 3, 3 for 9 over 4) the last round, where the
    allocation model's plans wait, never ran."""
    from moprune.search.screen import round_sizes

    size, promoted_each = round_sizes(plans, rounds, fine_tunes)
    assert promoted_each == quotas and size == per_round
    assert sum(promoted_each) == max(fine_tunes, 1)


def test_promotion_ranks_on_the_proxy_and_the_first_cost_only():
    """A plan cheap in MACs but slow on the device is not promoted for its MACs."""
    screened = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    dist = {"ratio/global": optuna.distributions.FloatDistribution(0, 1)}
    points = [(0.9, 10.0, 50.0), (0.8, 5.0, 40.0), (0.8, 6.0, 1.0)]  # the third: best MACs, dominated on latency
    for i, values in enumerate(points):
        screened.add_trial(optuna.trial.create_trial(values=list(values), params={"ratio/global": i / 10},
                                                     distributions=dist))
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    assert sorted(promote(screened, study, 2)) == [0, 1]


def test_status_counts_the_screened_plans_apart_and_ranks_the_proxy(screened_study):
    from moprune.report import format_status, study_status
    from moprune.search import open_screen_study

    spec, url, study = screened_study
    screened = open_screen_study(spec, url)
    status = study_status(study, spec, screened)
    assert status.screen is not None and status.screen.scored >= 6 and status.screen.promoted >= 1
    assert status.screen.proxy_methods == {"finetune": status.screen.scored}
    assert sum(status.screen.proposers.values()) == status.screen.scored and status.screen.proposers["sweep"] >= 3
    assert sum(status.states.values()) == len(study.get_trials()), "screened plans are not the study's trials"
    assert "screened (never fine-tuned, kept apart in their own study)" in format_status(status)
    assert "scored plans proposed by: " in format_status(status)
    assert open_screen_study(make_spec(name="tiny-unscreened", storage=url), url) is None


def test_the_report_draws_the_screened_plans_in_a_section_of_their_own(screened_study):
    from moprune.report.data import report_data
    from moprune.report.html import render_html
    from moprune.search import open_screen_study

    spec, url, study = screened_study
    d = report_data(study, spec, open_screen_study(spec, url))
    assert d.screen is not None and len(d.screen) >= 6 and d.screen["promoted_as"].notna().any()
    assert set(d.trials["number"]) == {t.number for t in study.get_trials()}
    page = render_html(d)
    assert "id=screen" in page and "accuracy proxy (not an accuracy)" in page
    # the fixture's screen predicts latency: the page must not say it timed the screened plans
    assert "latency predicted by the study&#x27;s latency model (never a measurement)" in page or \
        "latency predicted by the study's latency model (never a measurement)" in page
    assert "timed with the quick paired measurement" not in page
    assert "latency predicted by the latency model, starting plans fine-tuned first" in page
    # the report says the floor was probed only where the study did (search.screen.probe)
    assert "untested extrapolation" not in page and "proxy floor probed" not in page
    probed = spec.model_copy(update={"search": spec.search.model_copy(
        update={"screen": spec.search.screen.model_copy(update={"probe": True})})})
    page = render_html(report_data(study, probed, open_screen_study(spec, url)))
    assert "untested extrapolation" in page and "the proxy floor probed" in page


def test_the_proxy_calibration_finds_the_proxy_at_the_accuracy_budget(screened_study):
    """Fitted over the fine-tuned plans (the promoted ones' screened proxies, the starting plans' computed once)."""
    from moprune.record import baseline_of
    from moprune.search.calibration import ProxyCalibration
    from moprune.search.proxy_line import (PRIOR_SPREAD_ODDS, PROXY_NOISE_ODDS, fit_line, odds, probability, scattered,
                                           shrunk_line)
    from moprune.search.context import prepare_context

    spec, url, study = screened_study
    screened = optuna.load_study(study_name="screened" + SCREEN_SUFFIX, storage=url)
    calibration = ProxyCalibration(prepare_context(spec))
    floor = calibration.floor(study, screened)
    proxies = {t.number: t.values[0] for t in screened.get_trials(states=(TrialState.COMPLETE,))}
    xs, ys = [], []
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        r = TrialRecord.of(t)
        if r.speedup and not r.rejected:
            xs.append(proxies[r.screen_trial] if r.screen_trial is not None else calibration.computed[t.number])
            ys.append(t.values[0])
    tx, ty = [odds(x) for x in xs], [odds(y) for y in ys]  # the line is fitted on the log-odds of both
    budget = baseline_of(study).accuracy - spec.constraints.max_accuracy_drop
    line = fit_line(xs, ys, budget)
    # each plan weighed by one over its variance: the fine-tune's scatter (fitted, in accuracy units) and the proxy's
    weights = [1 / scattered(line.spread, PROXY_NOISE_ODDS, y) ** 2 for y in ys]
    slope, intercept = shrunk_line(tx, ty, PRIOR_SPREAD_ODDS, weights)
    assert slope > 0 and floor == pytest.approx(line.floor) and line.spread > 0
    assert (line.slope, line.intercept) == pytest.approx((slope, intercept))
    assert line.scatter_at(budget) == pytest.approx(scattered(line.spread, PROXY_NOISE_ODDS, budget))
    assert floor <= line.proxy_at(probability(odds(budget) - line.scatter_at(budget))) + 1e-12, \
        "within one sd of the budget"
    assert line.accuracy(0.5) == pytest.approx(probability(intercept + slope * odds(0.5)))
    if statistics.pstdev(tx) > 4 * PRIOR_SPREAD_ODDS:
        plain = statistics.linear_regression(tx, ty)
        assert slope == pytest.approx(plain.slope, rel=0.1, abs=0.05), "spread proxies fit their own slope"
    assert set(calibration.computed) == {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))
                                         if TrialRecord.of(t).screen_trial is None and TrialRecord.of(t).speedup}


def test_the_allocation_model_proposes_plans_inside_the_space_and_they_are_screened_for_real(session_cwd):
    """After the first round, the additive model's plans are queued first; each is pruned, timed and scored like any
    screened plan, carries who proposed it into the trial it is promoted to, and stores none of its predictions."""
    spec = fast_spec("screen-allocate", n_trials=5, seed_trials=["dense"],
                     screen={"plans": 24, "rounds": 2, "batches": 1, "sweep": 0, "latency": "measure",
                             "allocate": 0.5, "neighbours": 0})
    spec = spec.model_copy(update={"storage": f"sqlite:///{session_cwd / 'screen-allocate.db'}"})
    study = run_study(spec, progress=False)
    screened = optuna.load_study(study_name="screen-allocate" + SCREEN_SUFFIX, storage=spec.storage)
    trials = screened.get_trials()
    allocated = [t for t in trials if TrialRecord.of(t).proposer == "allocation"]
    assert allocated, "the second round starts with the allocation model's plans"
    first_allocated = min(t.number for t in allocated)
    assert all(TrialRecord.of(t).proposer != "allocation" for t in trials[:12]), "none before the model is fitted"
    span, r = spec.prune.offset_max, spec.prune.ratio
    for t in allocated:
        record = TrialRecord.of(t)
        plan = record.fixed_plan
        assert plan and (t.state == TrialState.WAITING or record.plan == plan), "the exact plan chosen is pruned"
        assert all(r.low <= v <= r.high for v in plan.values())
        assert max(plan.values()) - min(plan.values()) <= 2 * span + 1e-9, "within the search space's offsets"
        if t.state == TrialState.COMPLETE:
            assert record.accuracy_proxy == t.values[0] and record.speedup is not None, "scored and timed for real"
        assert not any("predict" in key for key in t.user_attrs), "a prediction is never stored"
    assert first_allocated == 12, "the second round starts with them, ahead of the sampler's own proposals"
    for t in study.get_trials():
        record = TrialRecord.of(t)
        if record.screen_trial is not None:
            assert record.proposer == TrialRecord.of(screened.trials[record.screen_trial]).proposer


def test_the_sampler_keeps_its_share_of_every_round_however_many_neighbours_the_front_offers(session_cwd):
    """``screen.explore``: the neighbours of the fine-tuned front (4 a plan here) fill at most the rest of a round, and
    none is left waiting: before, they filled every round and the sampler never proposed a plan after the first."""
    spec = fast_spec("screen-explore", n_trials=5, seed_trials=["dense"],
                     screen={"plans": 16, "rounds": 2, "batches": 1, "sweep": 0, "latency": "measure",
                             "allocate": 0, "neighbours": 4, "explore": 0.5})
    spec = spec.model_copy(update={"storage": f"sqlite:///{session_cwd / 'screen-explore.db'}"})
    run_study(spec, progress=False)
    screened = optuna.load_study(study_name="screen-explore" + SCREEN_SUFFIX, storage=spec.storage)
    trials = screened.get_trials()
    assert len(trials) == 16 and not screened.get_trials(states=(TrialState.WAITING,)), "nothing left queued"
    proposers = [TrialRecord.of(t).proposer for t in trials]
    assert set(proposers[:8]) == {None}, "the first round is the sampler's"
    assert 1 <= proposers[8:].count("neighbour") <= 4, "the front's neighbours come second, at most half a round"
    assert proposers[8:].count(None) >= 4, "the sampler proposes at least half of the round"


def test_queue_room_counts_what_is_waiting_and_keeps_the_explore_share():
    from moprune.search.screen import queue_room

    study = optuna.create_study()
    assert queue_room(study, 6, 0.5) == 3 and queue_room(study, 5, 0.5) == 2 and queue_room(study, 6, 0.0) == 6
    for x in (0.1, 0.2):
        study.enqueue_trial({"x": x})
    assert queue_room(study, 6, 0.5) == 1 and queue_room(study, 6, 1.0) == 0


def test_screened_starts_are_fine_tuned_only_when_the_screen_promotes_them(session_cwd, caplog):
    """``screen.starts: screen``: the uniform and global plans are screened as the sweep, not fine-tuned up front;
    the only starting trial is dense, and every other fine-tune goes to a plan the screen promoted. With dense alone
    fine-tuned, the first round promotes on a line of slope 1 through it."""
    import logging

    caplog.set_level(logging.INFO, logger="moprune")
    spec = fast_spec("screen-starts", n_trials=4, seed_trials=["dense", "uniform", "global"], uniform_count=3,
                     screen={"plans": 8, "rounds": 2, "batches": 1, "sweep": 3, "starts": "screen",
                             "allocate": 0, "neighbours": 0})
    spec = spec.model_copy(update={"storage": f"sqlite:///{session_cwd / 'screen-starts.db'}"})
    study = run_study(spec, progress=False)
    records = [TrialRecord.of(t) for t in study.get_trials()]
    assert finished_count(study) == 4
    assert records[0].start == "dense" and records[0].screen_trial is None
    assert all(r.screen_trial is not None or r.start is None for r in records[1:]), \
        "no start is fine-tuned unless promoted"
    promoted = [(t, r) for t, r in zip(study.get_trials()[1:], records[1:]) if r.screen_trial is not None]
    assert promoted and records[1].screen_trial is not None
    # what the last round expected no screened plan to add, the sampler proposed (no screen_trial)
    screened = optuna.load_study(study_name="screen-starts" + SCREEN_SUFFIX, storage=spec.storage)
    starts = [TrialRecord.of(t).start for t in screened.get_trials()]
    assert sum(1 for s in starts if s and s.startswith("uniform")) == 3
    assert sum(1 for s in starts if s and s.startswith("global")) == 2, "global at every sweep level but 0"
    assert "proxy calibration over 1 fine-tuned plan(s)" in caplog.text, "dense alone sets the offset"
    round_one = {}
    for t in screened.get_trials(states=(TrialState.COMPLETE,)):  # the sampler learns where the budget lies
        assert set(t.constraints) == {"accuracy_proxy_aim"}
        if t.number < 4:  # round 1: one aim for all
            round_one[t.number] = t.constraints["accuracy_proxy_aim"] + t.values[0]
    assert len(round_one) >= 2 and max(round_one.values()) == pytest.approx(min(round_one.values()))
    # 3 fine-tunes over 2 rounds: 1, then 2. Round 1 screened plans 0-3 (4 a round); plan 0 is dense's shape,
    # already fine-tuned
    assert all(t.params == screened.trials[r.screen_trial].params for t, r in promoted)
    first = records[1].screen_trial
    proxies = {t.number: t.values[0] for t in screened.get_trials(states=(TrialState.COMPLETE,)) if 0 < t.number < 4}
    aim = next(iter(round_one.values()))  # at or above the floor (ProxyLine.aim)
    above = [n for n in proxies if proxies[n] >= aim]
    # one above the aim if any, else the highest proxy: not the fast end, where plans read chance
    assert first in above if above else first == max(proxies, key=proxies.get)


def test_until_a_fine_tuned_plan_drops_a_block_one_promotion_explores_one():
    from moprune.pruning import drop_key
    from moprune.search.proxy_line import ProxyLine
    from moprune.search.promotion import Outlook

    screened = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"ratio/global": optuna.distributions.FloatDistribution(0, 1)}
    plans = [({"a": 0.5}, (0.90, 5.0)), ({"a": 0.6}, (0.88, 4.0)), ({"a": 0.5, drop_key("b"): 1.0}, (0.70, 3.0)),
             ({"a": 0.4, drop_key("b"): 1.0}, (0.75, 3.5))]
    for i, (plan, values) in enumerate(plans):
        screened.add_trial(optuna.trial.create_trial(values=list(values), params={"ratio/global": i / 10},
                                                     distributions=dist,
                                                     user_attrs=TrialRecord(fidelity="screened", plan=plan).attrs()))
    study = optuna.create_study(directions=["maximize", "minimize"])
    untried = Outlook(ProxyLine(1.0, 0.0, 0.02, 0.85, 0.85), (), 10.0)
    chosen = promote(screened, study, 2, floor=0.85, outlook=untried)
    assert chosen[0] == 3, "the depth-pruned plan with the best proxy, under the floor though it is"
    assert len(chosen) == 2 and chosen[1] in (0, 1)
    def first(per_block: float) -> list[int]:
        tried = Outlook(ProxyLine(1.0, 0.0, 0.02, 0.85, 0.85, per_block=per_block, blocks_tried=True), (), 10.0)
        return promote(screened, optuna.create_study(directions=["maximize", "minimize"]), 1, floor=0.85,
                       outlook=tried)

    assert first(0.0) == [0], "a shift of nothing: the widths' best plan adds most"
    assert first(0.2) == [3], "read 0.2 higher, the faster depth-pruned plan adds more (0.95 at 3.5 ms)"


def test_a_screened_plans_latency_is_re_predicted_by_the_latest_model_where_it_covers_the_plan(screened_study):
    """A plan screened in an earlier round is read with the model refitted since, from the features it was screened
    with (its stored value is left as it was); where that model does not cover the plan, its stored value stands
    (a timing, as the screen times every plan the model does not cover)."""
    from moprune.measure import LatencyModel
    from moprune.search.screen import first_cost

    _, url, _ = screened_study
    screened = optuna.load_study(study_name="screened" + SCREEN_SUFFIX, storage=url)
    done = [t for t in screened.get_trials() if t.state == TrialState.COMPLETE]
    assert done and all(len(t.user_attrs["cost_features"]) == 4 for t in done)
    t = done[0]
    features = t.user_attrs["cost_features"]
    covering = LatencyModel(1.0, (0.0, 0.0, 0.0, 2.0), points=5, loo_error=None, low=tuple(features),
                            high=tuple(features))
    assert first_cost(covering)(t) == pytest.approx(1.0 + 2.0 * features[3])
    narrow = LatencyModel(1.0, (0.0, 0.0, 0.0, 2.0), points=5, loo_error=None,
                          low=tuple(2 * f + 1 for f in features), high=tuple(2 * f + 1 for f in features))
    assert first_cost(narrow)(t) == t.values[1]
    assert first_cost(None)(t) == t.values[1] == float(t.user_attrs["latency_ms"])
