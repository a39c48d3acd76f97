"""Prune groups: DependencyGraph groups of real torchvision models, in module order, never the classifier."""

from __future__ import annotations

import torch

from moprune.pruning import discover_groups

X = torch.randn(1, 3, 32, 32)


def test_resnet18_has_twelve_groups_and_never_the_classifier(resnet18):
    groups = discover_groups(resnet18, X)
    roots = [g.root for g in groups]
    assert len(groups) == 12
    assert "fc" not in roots  # (fc is a member of layer4's group: its input channels follow)
    assert roots[0] == "conv1"  # module order, not tracing order
    assert {"layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"} <= set(roots)
    residual = next(g for g in groups if g.root == "layer2.0.downsample.0")
    # the residual chain couples every block output of the stage: one group, one ratio
    assert {"layer2.0.conv2", "layer2.1.conv2"} <= set(residual.members)
    assert residual.channels == 128


def test_mobilenet_v2_groups_couple_depthwise_convs(mobilenet_v2):
    groups = discover_groups(mobilenet_v2, X)
    assert len(groups) > 10
    assert "classifier.1" not in [g.root for g in groups]
    depthwise = [n for n, m in mobilenet_v2.named_modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    grouped = {m for g in groups for m in g.members}
    assert set(depthwise) <= grouped
