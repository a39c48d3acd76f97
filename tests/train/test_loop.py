"""The shared training loop: learns, is reproducible for a seed, and stops on a non-finite loss."""

from __future__ import annotations

import pytest
import torch

from moprune.train import load_data
from moprune.spec import DataSpec
from moprune.train import NonFiniteLoss, cosine_lr, evaluate, train
from tiny_models import small_cnn


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec(name="digits", image_size=8), seed=0, device=torch.device("cpu"))


def test_small_cnn_learns_digits(digits):
    torch.manual_seed(0)
    model = small_cnn(10)
    chance = evaluate(model, digits.val)
    train(model, digits.train, steps=150, lr=0.05, batch_size=64, seed=0)
    assert evaluate(model, digits.val) > max(0.9, chance + 0.5)


def test_same_seed_same_weights(digits):
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = small_cnn(10)
        train(model, digits.train, steps=10, lr=0.05, batch_size=64, seed=7)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_non_finite_loss_stops_with_a_reason(digits):
    torch.manual_seed(0)
    model = small_cnn(10)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="non-finite loss"):
        train(model, digits.train, steps=30, lr=0.05, batch_size=64, seed=0)


def test_cosine_schedule_warms_up_and_decays():
    assert cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(99, 100, 1.0) < 0.01
