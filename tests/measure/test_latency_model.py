"""The screen's latency model: what it counts, how it fits, and what it does before it can fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moprune.measure import FEATURES, cost_features, fit_latency_model
from moprune.measure.latency_model import MIN_POINTS


def test_features_count_dense_and_depthwise_macs_apart_every_written_element_and_every_layer_run():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),  # 8x4x4 out, 27 MACs each
                          nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 9 MACs per output
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    feats = dict(zip(FEATURES, cost_features(model, torch.zeros(4, 3, 4, 4))))  # one sample, whatever the batch
    assert feats["macs"] == 8 * 16 * 27 + 5 * 8
    assert feats["macs_depthwise"] == 8 * 16 * 9
    assert feats["activations"] == 128 + 128 + 128 + 8 + 8 + 5
    assert feats["layers"] == 6
    assert model.training, "the model's mode is restored"


def test_the_fit_recovers_a_device_that_charges_depthwise_macs_more():
    truth = (2e-6, 1e-5, 5e-7, 0.01)  # ms per dense MAC, per depthwise MAC, per element written, per layer run
    xs = [(1e6, 1e5, 2e5, 60), (5e5, 8e4, 1e5, 60), (2e5, 6e4, 8e4, 52), (8e5, 2e4, 1.5e5, 44),
          (3e5, 9e4, 3e4, 60), (6e5, 5e4, 1.2e5, 36), (4e5, 3e4, 7e4, 52)]
    ys = [0.3 + sum(c * f for c, f in zip(truth, x)) for x in xs]
    model = fit_latency_model(xs, ys, dense=(xs[0], ys[0]))
    assert model.points == 7 and model.intercept == pytest.approx(0.3, rel=1e-3)
    assert model.coefficients == pytest.approx(truth, rel=1e-3)
    assert model.loo_error == pytest.approx(0.0, abs=1e-6)
    assert model.predict((4e5, 4e4, 9e4, 40)) == pytest.approx(0.3 + 0.8 + 0.4 + 0.045 + 0.4, rel=1e-3)


def test_coefficients_never_go_negative_so_a_cheaper_plan_is_never_predicted_slower():
    xs = [(1e6, 0.0, 1e5, 20), (5e5, 0.0, 9e4, 20), (2e5, 0.0, 1.1e5, 20), (7e5, 0.0, 1e5, 20),
          (4e5, 0.0, 1.05e5, 20)]  # noise says elements help
    ys = [1.0, 0.55, 0.2, 0.7, 0.38]
    model = fit_latency_model(xs, ys, dense=(xs[0], ys[0]))
    assert model.points == MIN_POINTS
    assert all(c >= 0 for c in model.coefficients) and model.intercept >= 0


def test_until_enough_plans_are_measured_the_model_vouches_for_no_plan_and_the_screen_times_them():
    dense = ((1e6, 2e5, 3e5, 40), 4.0)
    xs = [dense[0], (5e5, 1e5, 1.5e5, 40), (2e5, 5e4, 1e5, 40), (7e5, 1.5e5, 2e5, 40)]
    model = fit_latency_model(xs, [4.0, 2.1, 1.0, 2.9], dense=dense)
    assert model.points == MIN_POINTS - 1
    assert not model.covers(xs[1]) and not model.covers(dense[0])
    assert "plans are timed" in model.describe()


def test_the_model_vouches_only_for_plans_inside_the_range_it_was_fitted_on():
    # five plans that drop no block (44 layers run): what dropping one saves is not in them, as the layers
    # coefficient and the intercept trade freely
    xs = [(1e7, 0.0, 1e5, 44), (8e6, 0.0, 9e4, 44), (6e6, 0.0, 8e4, 44), (4e6, 0.0, 7e4, 44), (2e6, 0.0, 5e4, 44)]
    ys = [15.0, 13.5, 12.0, 10.4, 8.9]
    model = fit_latency_model(xs, ys, dense=(xs[0], ys[0]))
    assert model.covers((5e6, 0.0, 7.5e4, 44))  # between measured plans
    assert model.covers((1.5e6, 0.0, 4.6e4, 44))  # a little past the cheapest (a tenth of the range)
    assert not model.covers((5e6, 0.0, 7.5e4, 40))  # drops a block: no measured plan did
    assert not model.covers((2e5, 0.0, 1e4, 44))  # far cheaper than any measured plan


def test_a_fit_whose_free_intercept_would_be_negative_is_not_shifted_up():
    # the bench's ResNet-20 (seed 0): dense, then 8 measured plans, one dropping 2 blocks (36 layers run). A free fit
    # puts the intercept near -7 ms; clipped to 0 afterwards it read the dense model at 22.4 ms and the last plan at
    # 10.8 ms. Fitted with the intercept constrained, every plan is read within 30% of its measurement
    # (the free fit clipped: 48% over on dense, 187% over on the 2-block plan).
    xs = [(10203776, 0, 104458, 44), (2784532, 0, 53578, 44), (2298406, 0, 49706, 44), (3545142, 0, 60330, 44),
          (2262382, 0, 44138, 40), (3671770, 0, 64362, 44), (3850952, 0, 62282, 44), (3017776, 0, 55530, 44),
          (510138, 0, 15370, 36)]
    ys = [15.11, 10.8, 7.62, 11.59, 9.13, 11.89, 12.02, 10.78, 3.77]
    model = fit_latency_model(xs, ys, dense=(xs[0], ys[0]))
    assert model.intercept >= 0 and all(c >= 0 for c in model.coefficients)
    assert all(abs(model.predict(x) / y - 1) < 0.3 for x, y in zip(xs, ys))
    assert model.loo_error is not None and model.loo_error < 0.15
