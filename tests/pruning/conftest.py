"""Fixtures of the pruning tests: real torchvision models (untrained, seeded), one per test module."""

from __future__ import annotations

import pytest
import torch
import torchvision


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def mobilenet_v2():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=10).eval()
