"""The accuracy proxies: adaptive BN recalibrates in place and leaves the model as it was otherwise."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from moprune.pruning import apply_plan
from moprune.spec import DataSpec
from moprune.train import evaluate, load_data, train
from moprune.train.proxy import adaptive_bn, batch_norms, proxy_accuracy


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec(name="digits", image_size=8), seed=0, device=torch.device("cpu"))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def trained(digits):
    model = _cnn()
    train(model, digits.train, steps=150, lr=0.05, batch_size=64, seed=0)
    return model.eval()


def test_adaptive_bn_re_estimates_the_statistics_and_restores_momentum(trained, digits):
    pruned = apply_plan(trained, {"0": 0.5, "3": 0.5}, digits.example_inputs(1)).model
    before = [m.running_mean.clone() for m in batch_norms(pruned)]
    used = adaptive_bn(pruned, digits.train, batches=4, batch_size=64, seed=1)
    assert used == 4
    assert all(not torch.equal(a, m.running_mean) for a, m in zip(before, batch_norms(pruned)))
    assert all(m.momentum == 0.1 for m in batch_norms(pruned)), "momentum is restored for a later fine-tune"
    assert not pruned.training and all(not m.training for m in pruned.modules())


def test_adaptive_bn_recovers_a_pruned_model_that_plain_evaluation_reads_near_chance(trained, digits):
    pruned = apply_plan(trained, {"0": 0.6, "3": 0.6}, digits.example_inputs(1)).model
    plain = evaluate(pruned, digits.val)
    proxy = proxy_accuracy(copy.deepcopy(pruned), digits.train, digits.val, method="adaptive_bn", batches=8,
                           batch_size=64, seed=0, lr=0.05, optimizer="sgd")
    assert proxy.method == "adaptive_bn" and proxy.batches == 8
    assert proxy.accuracy > plain + 0.05, (plain, proxy.accuracy)


def test_a_model_without_batch_norm_falls_back_to_a_few_fine_tune_steps(digits):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 10))
    start = evaluate(mlp, digits.val)
    proxy = proxy_accuracy(mlp, digits.train, digits.val, method="adaptive_bn", batches=20, batch_size=64, seed=0,
                           lr=0.05, optimizer="sgd")
    assert proxy.method == "finetune" and proxy.accuracy > start


def test_the_finetune_proxy_recalibrates_batch_norm_after_its_steps(trained, digits):
    pruned = apply_plan(trained, {"0": 0.6, "3": 0.6}, digits.example_inputs(1)).model
    stepped = copy.deepcopy(pruned)
    train(stepped, digits.train, steps=6, lr=0.05, batch_size=64, optimizer="sgd", seed=0)
    proxy = proxy_accuracy(pruned, digits.train, digits.val, method="finetune", batches=6, batch_size=64, seed=0,
                           lr=0.05, optimizer="sgd")
    assert proxy.method == "finetune" and proxy.batches == 12, "6 steps, then 6 recalibration batches"
    # the same steps; then statistics re-estimated from scratch, not the momentum mix the steps left
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(batch_norms(stepped), batch_norms(pruned)))
    assert all(not torch.allclose(a.running_var, b.running_var) for a, b in zip(batch_norms(stepped),
                                                                               batch_norms(pruned)))
    assert all(m.momentum == 0.1 for m in batch_norms(pruned))


def test_an_unknown_proxy_is_refused(trained, digits):
    with pytest.raises(ValueError, match="unknown proxy 'magic'"):
        proxy_accuracy(trained, digits.train, digits.val, method="magic", batches=1, batch_size=8, seed=0, lr=0.1,
                       optimizer="sgd")
