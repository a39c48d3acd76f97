"""What the screen queues besides its sampler's proposals: here, the neighbours of the fine-tuned front."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from helpers import make_spec
from moprune.search.proposals import feed_back


def test_a_neighbour_moves_ratios_one_step_and_flips_about_one_block_drop():
    spec = make_spec(prune={"drop_blocks": True, "ratio": {"low": 0.0, "high": 0.8, "step": 0.1}, "offset_max": 0.3})
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms"])
    params = {"ratio/global": 0.5, "offset/a": 0.1, "drop/x": 1, "drop/y": 0, "drop/z": 0}
    distributions = {"ratio/global": FloatDistribution(0.0, 0.8, step=0.1),
                     "offset/a": FloatDistribution(-0.3, 0.3, step=0.1),
                     **{k: IntDistribution(0, 1) for k in ("drop/x", "drop/y", "drop/z")}}
    study.add_trial(create_trial(params=params, distributions=distributions, values=[0.95, 3.0]))
    screened = optuna.create_study(directions=["maximize", "minimize"])
    feed_back(study, screened, spec, per_plan=60, seed=0)
    queued = [t.system_attrs["fixed_params"] for t in screened.get_trials(states=(TrialState.WAITING,))]
    assert len(queued) > 10, "distinct neighbours are queued (duplicates are skipped)"
    flips = []
    for moved in queued:
        assert abs(moved["ratio/global"] - 0.5) <= 0.1 + 1e-9 and abs(moved["offset/a"] - 0.1) <= 0.1 + 1e-9
        assert all(moved[k] in (0, 1) for k in ("drop/x", "drop/y", "drop/z")), "a drop stays a 0/1 choice"
        flips.append(sum(moved[k] != params[k] for k in ("drop/x", "drop/y", "drop/z")))
    assert 0 in flips and 1 in flips, "some neighbours keep the front plan's blocks, others flip one"
    assert 0.5 <= sum(flips) / len(flips) <= 1.5, "one flip a neighbour on average"


def test_the_sweeps_are_every_level_of_each_kind_but_global_pruning_at_zero_and_the_sampler_starts_after_them():
    from moprune.search import make_sampler
    from moprune.search.proposals import sweep_levels

    spec = make_spec(prune={"ratio": {"low": 0.0, "high": 0.8, "step": 0.1}},
                     search={"sampler": "tpe", "seed_trials": ["dense", "uniform", "global"],
                             "screen": {"plans": 20, "sweep": 3}})
    assert sweep_levels(spec) == [("uniform", 0.0), ("uniform", 0.8), ("global", 0.8), ("uniform", 0.4),
                                  ("global", 0.4)]
    # the sweeps are one corner of the space: the sampler's own random start comes after them
    assert make_sampler(spec, seed=0, queued=5)._n_startup_trials == 15
    assert make_sampler(spec, seed=0)._n_startup_trials == 10
    mine = spec.model_copy(update={"search": spec.search.model_copy(update={"sampler_options": {"n_startup_trials": 4}})})
    assert make_sampler(mine, seed=0, queued=5)._n_startup_trials == 4, "a user's own setting wins"


def test_with_room_for_few_the_neighbours_are_those_of_the_fastest_front_plans():
    spec = make_spec(prune={"ratio": {"low": 0.0, "high": 0.9, "step": 0.1}, "offset_max": 0.3})
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms"])
    distributions = {"ratio/global": FloatDistribution(0.0, 0.9, step=0.1)}
    for ratio, accuracy, latency in ((0.2, 0.99, 10.0), (0.5, 0.95, 5.0), (0.8, 0.90, 2.0)):  # all on the front
        study.add_trial(create_trial(params={"ratio/global": ratio}, distributions=distributions,
                                     values=[accuracy, latency]))
    screened = optuna.create_study(directions=["maximize", "minimize"])
    feed_back(study, screened, spec, per_plan=3, seed=0, limit=3)
    queued = [t.system_attrs["fixed_params"]["ratio/global"] for t in screened.get_trials(states=(TrialState.WAITING,))]
    assert queued and all(abs(r - 0.8) <= 0.1 + 1e-9 for r in queued), "the fast end is searched around first"
