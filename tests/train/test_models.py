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


def test_pretrain_keys_change_with_what_makes_the_model_and_not_with_keys_it_does_not_read():
    from helpers import make_spec
    from moprune.train import pretrain_key

    base = make_spec()
    assert pretrain_key(make_spec(data={"name": "digits", "image_size": 16, "max_length": 128}), 10) == \
        pretrain_key(base, 10), "text-only keys do not touch an image model's cache entry"
    assert pretrain_key(make_spec(model={"arch": "resnet18", "kwargs": {"zero_init_residual": True}}), 10) != \
        pretrain_key(base, 10)
    adamw = make_spec(model={"arch": "resnet18", "pretrain": {"epochs": 3, "lr": 0.05, "batch_size": 128,
                                                              "optimizer": "adamw"}})
    assert pretrain_key(adamw, 10) != pretrain_key(base, 10)


def test_a_vit_builder_takes_the_data_image_size_and_a_smaller_shape_and_refuses_unknown_kwargs():
    from moprune.train import build_model

    model = build_model("vit_b_16", 10, {"patch_size": 4, "num_layers": 2, "num_heads": 2, "hidden_dim": 16,
                                         "mlp_dim": 32}, image_size=16)
    assert (model.image_size, model.patch_size, len(model.encoder.layers), model.hidden_dim) == (16, 4, 2, 16)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    with pytest.raises(SpecError, match=r"model.kwargs: resnet18 does not take \['depth'\]"):
        build_model("resnet18", 10, {"depth": 3})
