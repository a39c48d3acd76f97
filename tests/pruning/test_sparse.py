"""Unstructured and N:M sparsity: the plan's share of weights zeroed per group, N:M rows, masks the fine-tune holds."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from moprune.pruning import (apply_sparsity, discover_groups, mask_holder, nm_mask, nonzero_params,
                             semi_structured_linears, sparsity_of)
from moprune.spec import DataSpec
from moprune.train import load_data, train


def _resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 16, 16)
    return model, x, discover_groups(model, x)


def test_groups_name_every_layer_whose_outputs_they_own_once():
    model, _, groups = _resnet()
    owned = [name for g in groups for name in g.outputs]
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n != "fc"]
    assert sorted(owned) == sorted(layers), "each conv belongs to exactly one group's outputs; the classifier to none"


def test_unstructured_zeroes_the_plans_share_of_each_groups_smallest_weights():
    model, _, groups = _resnet()
    plan = {g.root: (0.5 if i % 2 else 0.0) for i, g in enumerate(groups)}
    pruned = apply_sparsity(model, plan, groups, method="unstructured")
    for i, g in enumerate(groups):
        weights = [pruned.model.get_submodule(n).weight for n in g.outputs]
        zero = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        assert abs(zero - plan[g.root]) < 1e-3, g.root
        if plan[g.root]:  # the zeroed ones are the smallest in magnitude across the group
            dense = torch.cat([model.get_submodule(n).weight.detach().abs().flatten() for n in g.outputs])
            kept = torch.cat([w.detach().flatten() for w in weights]) != 0
            assert dense[~kept].max() <= dense[kept].min()
    assert pruned.channels == {n: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
                               for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert nonzero_params(pruned.model) < nonzero_params(model)
    assert not any(hasattr(m, "weight_orig") for m in pruned.model.modules()), "permanent: no forward hooks"
    assert all(torch.equal(a, b) for a, b in zip(_resnet()[0].state_dict().values(), model.state_dict().values()))


def test_nm_keeps_the_n_largest_of_every_m_along_the_reduction_dimension():
    w = torch.tensor([[0.1, -0.9, 0.3, 0.2, 5.0, 4.0, -6.0, 0.0]])
    assert nm_mask(w, 2, 4).tolist() == [[0, 1, 1, 0, 1, 0, 1, 0]]
    model, _, groups = _resnet()
    pruned = apply_sparsity(model, {g.root: 0.3 for g in groups}, groups, method="nm", nm="2:4")
    for name, mask in pruned.masks.items():
        rows = pruned.model.get_submodule(name.removesuffix(".weight")).weight.detach().reshape(mask.shape[0], -1, 4)
        assert ((rows != 0).sum(dim=-1) <= 2).all(), name
    assert "conv1.weight" not in pruned.masks, "the 3-channel stem (27 weights a row) cannot carry 2:4"
    assert sparsity_of(pruned.model, pruned.masks) == 0.5


def test_the_fine_tune_holds_the_masks():
    data = load_data(DataSpec(name="digits", image_size=16), seed=0, device=torch.device("cpu"))
    model, _, groups = _resnet()
    pruned = apply_sparsity(model, {g.root: 0.6 for g in groups}, groups, method="unstructured")
    zeros = {name: mask == 0 for name, mask in pruned.masks.items()}
    train(pruned.model, data.train, steps=3, lr=0.05, batch_size=32, seed=0,
          after_step=mask_holder(pruned.model, pruned.masks))
    params = dict(pruned.model.named_parameters())
    assert all(float(params[name].detach()[zero].abs().max()) == 0.0 for name, zero in zeros.items())
    moved = any(not torch.equal(params[n], model.state_dict()[n] * pruned.masks[n]) for n in pruned.masks)
    assert moved, "the kept weights trained"


@pytest.mark.gpu
def test_two_four_linears_become_semi_structured_on_a_gpu_and_compute_the_same():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("semi-structured sparse kernels need an Ampere-or-newer GPU")
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10)).cuda().eval()
    with torch.no_grad():
        model[0].weight.mul_(nm_mask(model[0].weight, 2, 4))
    sparse, converted = semi_structured_linears(model, torch.float16)  # cuSPARSELt: float16 and bfloat16 only
    assert converted == ["0"], "only the 2:4 layer; the dense classifier stays dense"
    assert model[0].weight.dtype == torch.float32, "the model itself is untouched"
    x = torch.randn(64, 128, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        assert torch.allclose(sparse(x), copy.deepcopy(model).half()(x), atol=1e-2, rtol=1e-2)


@pytest.mark.gpu
def test_a_two_four_model_is_timed_in_half_precision_against_dense():
    """The measurement copies and casts the model it times: the semi-structured weights must survive both."""
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("semi-structured sparse kernels need an Ampere-or-newer GPU")
    from moprune.measure import MeasureSettings, measure_architecture
    from moprune.spec import parse_spec

    dense = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 16)).cuda().eval()
    two_four = copy.deepcopy(dense)
    with torch.no_grad():
        two_four[0].weight.mul_(nm_mask(two_four[0].weight, 2, 4))
    sparse, converted = semi_structured_linears(two_four, torch.bfloat16)
    spec = parse_spec({"device": "cuda", "measure": {"batch_size": 256, "dtype": "bfloat16"}}, source="test")
    m = measure_architecture(sparse, dense, torch.randn(256, 512, device="cuda"),
                             MeasureSettings.from_spec(spec.measure), device=torch.device("cuda"), want_energy=False)
    assert converted == ["0"] and "bfloat16" in m.runtime and m.latency.speedup > 0



def test_where_the_kernels_refuse_a_layer_it_is_timed_dense_as_it_would_run():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    with torch.no_grad():
        model[0].weight.mul_(nm_mask(model[0].weight, 2, 4))
    copied, converted = semi_structured_linears(model)  # on the CPU torch refuses semi-structured tensors
    assert converted == [] and copied is not model
    x = torch.randn(4, 64)
    with torch.no_grad():
        assert torch.equal(copied(x), model(x))
