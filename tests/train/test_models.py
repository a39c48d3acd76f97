"""Dense models: sparsity training (network slimming) shrinks BatchNorm scales, is cached, and is recorded."""

from __future__ import annotations

import pytest
import torch

from helpers import make_spec
from moprune.errors import SpecError
from moprune.spec import DataSpec
from moprune.train import dense_weights_path, evaluate, file_sha256, load_data, load_dense, train
from tiny_models import small_cnn

SLIM = {"arch": "tiny_models:small_cnn", "pretrain": {"epochs": 2, "lr": 0.05, "batch_size": 64},
        "sparsity_training": {"l1": 0.01, "epochs": 2, "lr": 0.02, "batch_size": 64}}


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSpec(name="digits", image_size=8), seed=0, device=torch.device("cpu"))


def _scales(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().abs() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])


def test_l1_on_batchnorm_scales_drives_them_toward_zero(digits):
    models = []
    for l1 in (0.0, 0.05):
        torch.manual_seed(0)
        model = small_cnn(10)
        train(model, digits.train, steps=80, lr=0.05, batch_size=64, seed=0, l1_bn=l1)
        models.append(model)
    plain, slim = (_scales(m) for m in models)
    assert slim.mean() < 0.5 * plain.mean()  # 0.25 vs 1.06 here
    assert evaluate(models[1], digits.val) > 0.5, "the penalty still leaves a model that classifies"


def test_sparsity_training_runs_once_is_cached_and_says_what_it_started_from(session_cwd):
    spec = make_spec(name="slim", model=SLIM, data={"name": "digits", "image_size": 8})
    data = load_data(spec.data, seed=spec.seed, device=torch.device("cpu"))
    first = load_dense(spec, data, torch.device("cpu"))
    assert first.source == "sparsity-trained" and first.weights_path.name.endswith("-slim.pt")
    assert first.weights_path == dense_weights_path(spec, data.num_classes)
    base = make_spec(name="slim", model={**SLIM, "sparsity_training": None}, data={"name": "digits", "image_size": 8})
    base_path = dense_weights_path(base, data.num_classes)
    assert first.trained_from == file_sha256(base_path) != first.sha256
    again = load_dense(spec, data, torch.device("cpu"))
    assert again.source == "cache" and again.sha256 == first.sha256 and again.trained_from == first.trained_from
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    stronger = make_spec(name="slim", model={**SLIM, "sparsity_training": {**SLIM["sparsity_training"], "l1": 0.02}},
                         data={"name": "digits", "image_size": 8})
    assert dense_weights_path(stronger, data.num_classes) != first.weights_path, "another recipe, another entry"


def test_a_model_without_batchnorm_is_refused_before_any_training(session_cwd):
    spec = make_spec(name="plain", model={**SLIM, "arch": "tiny_models:plain_cnn"},
                     data={"name": "digits", "image_size": 8})
    data = load_data(spec.data, seed=spec.seed, device=torch.device("cpu"))
    with pytest.raises(SpecError, match="model.sparsity_training: tiny_models:plain_cnn has no BatchNorm"):
        load_dense(spec, data, torch.device("cpu"))
    assert not dense_weights_path(spec, data.num_classes).exists()
