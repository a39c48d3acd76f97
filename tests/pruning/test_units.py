"""Search units: the prune groups of real torchvision models (and custom ones) tied by granularity."""

from __future__ import annotations

import pytest
import torch
import torchvision

from moprune.pruning import discover_groups, search_units

X = torch.randn(1, 3, 32, 32)


@pytest.mark.parametrize("granularity,expected", [("group", 12), ("global", 1), ("block", 9), ("stage", 5)])
def test_granularity_ties_groups(resnet18, granularity, expected):
    groups = discover_groups(resnet18, X)
    units = search_units(resnet18, groups, granularity, X)
    assert len(units) == expected
    tied = sorted(r for u in units for r in u.roots)
    assert tied == sorted(g.root for g in groups), "every group belongs to exactly one unit"


def test_block_units_follow_residual_blocks(resnet18):
    units = search_units(resnet18, discover_groups(resnet18, X), "block", X)
    by_name = {u.name: u.roots for u in units}
    assert by_name["layer2.0"] == ("layer2.0.conv1", "layer2.0.downsample.0")


def test_mobilenet_v2_blocks_are_inverted_residuals(mobilenet_v2, caplog):
    with caplog.at_level("WARNING", logger="moprune"):
        units = search_units(mobilenet_v2, discover_groups(mobilenet_v2, X), "block", X)
    assert not caplog.records and len(units) == 18
    assert {"features.3", "features.17"} <= {u.name for u in units}


class Flat(torch.nn.Module):
    """A custom model whose layers are attributes of the model itself: it has no blocks."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x).relu()).relu().mean(dim=(2, 3)))


class Wrapped(torch.nn.Module):
    """A custom model whose every layer sits in one non-Sequential container: one "block" would be one ratio."""

    def __init__(self):
        super().__init__()
        self.body = Flat()

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("model,granularity,why", [
    (torchvision.models.vgg11_bn(num_classes=10).eval(), "block", "every group is its own block"),
    (Flat().eval(), "block", "every group is its own block"),
    (Wrapped().eval(), "block", "all 2 groups fall in one block"),
    (Flat().eval(), "stage", "all 2 groups fall in one stage"),
], ids=["vgg11_bn", "flat-custom", "wrapped-custom", "one-resolution"])
def test_block_and_stage_fall_back_to_group_with_a_warning_when_the_model_has_none(model, granularity, why,
                                                                                   caplog):
    groups = discover_groups(model, X)
    with caplog.at_level("WARNING", logger="moprune"):
        units = search_units(model, groups, granularity, X)
    assert [u.roots for u in units] == [(g.root,) for g in groups], "searched per group"
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"finds no {granularity}s" in message and why in message and "prune.granularity: group" in message
