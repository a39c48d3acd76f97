"""Dropping residual blocks: which blocks are offered, what a plan that drops them builds, and that it replays."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from moprune.measure import count_complexity
from moprune.pruning import apply_plan, discover_groups, drop_key, droppable_blocks, split_plan

from helpers import assert_replays

X = torch.randn(2, 3, 32, 32)


def test_resnet18_offers_exactly_its_blocks_without_a_downsample(resnet18):
    # the first block of layers 2-4 changes the shape (stride 2, a projection): never offered
    assert droppable_blocks(resnet18, X[:1]) == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]


def test_mobilenet_v2_offers_its_residual_inverted_blocks(mobilenet_v2):
    blocks = droppable_blocks(mobilenet_v2, X[:1])
    expected = [f"features.{i}" for i, m in enumerate(mobilenet_v2.features)
                if getattr(m, "use_res_connect", False)]
    assert blocks == expected and len(blocks) == 10


def test_a_plain_stack_that_keeps_its_shape_is_not_a_residual_block():
    # two conv-BN-ReLU blocks 16 -> 16: shape-preserving, but silencing them gives zeros, not their input
    plain = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1),
                          *[nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                          nn.Conv2d(16, 16, 3, padding=1)) for _ in range(2)],
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    assert droppable_blocks(plain, X[:1]) == []


def test_a_plan_that_drops_blocks_removes_their_layers_and_macs_and_replays(resnet18):
    groups = discover_groups(resnet18, X[:1])
    plan = {g.root: 0.3 for g in groups} | {drop_key("layer1.1"): 1.0, drop_key("layer3.1"): 1.0}
    pruned = apply_plan(resnet18, plan, X[:1])
    model = pruned.model
    assert isinstance(model.layer1[1], nn.Identity) and isinstance(model.layer3[1], nn.Identity)
    assert "layer1.1.conv1" not in pruned.channels and "layer1.0.conv1" in pruned.channels
    widths_only = apply_plan(resnet18, split_plan(plan)[0], X[:1]).model
    assert count_complexity(model, X[:1]).macs < 0.8 * count_complexity(widths_only, X[:1]).macs
    assert pruned.history[0] == {"dropped": ["layer1.1", "layer3.1"]}
    assert_replays(lambda: torchvision.models.resnet18(num_classes=10), pruned, X)


def test_a_drop_key_set_to_zero_drops_nothing(resnet18):
    pruned = apply_plan(resnet18, {drop_key("layer1.1"): 0.0}, X[:1])
    assert isinstance(pruned.model.layer1[1], torchvision.models.resnet.BasicBlock)
    assert pruned.history == []


def test_the_dense_model_keeps_its_blocks(resnet18):
    apply_plan(resnet18, {drop_key("layer2.1"): 1.0}, X[:1])
    assert isinstance(resnet18.layer2[1], torchvision.models.resnet.BasicBlock)


def test_a_transformer_plan_cannot_drop_blocks():
    from moprune.pruning import prunable_form

    vit = torchvision.models.VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=10).eval()
    prunable_form(vit)
    with pytest.raises(ValueError, match="Transformer"):
        apply_plan(vit, {drop_key("encoder.layers.encoder_layer_0"): 1.0}, X[:1])
