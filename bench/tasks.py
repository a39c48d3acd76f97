"""The bench tasks: three small networks on scikit-learn's digits (offline), pruned into the cheap region.

- ``vgg``: a compact VGG on 32 px, the net where Li et al. (2017) found per-layer sensitivity to differ most; its
  wide late layers carry most of the MACs and lose little when cut.
- ``mobilenetv2``: a MobileNetV2-style network on 16 px, whose expansion layers at the high-resolution blocks buy
  little accuracy for much latency.
- ``resnet8``: the CIFAR ResNet-8 on 32 px; in the full run, not in ``--quick`` (a seed takes about 10 minutes).
- ``resnet20``: the CIFAR ResNet-20 (three blocks a stage, 12 groups) on 16 px, for ``bench/structure.py``: does a
  deeper network with twice the groups leave more for an allocation to find? In the full run too.

Whether a per-group search has anything to find on a task is measured by ``bench/headroom.py`` on a bench run's
studies: every allocated plan any method fine-tuned against every sweep plan. On the 3-seed runs of 2026-12-03 the
allocated front held 1.00-1.05x the better sweep's on ResNet-8 and 0.98-1.05x on MobileNetV2 (stale BatchNorm
statistics), 0.91-1.04x on VGG and 0.88-1.07x on MobileNetV2 (recalibrated). ``bench/structure.py --task resnet20``
asks the same of designed and random plans: all pooled, 1.02x the better sweep (uniform) on ResNet-20.

Every task sets ``prune.drop_blocks``: the searches may also drop residual blocks (ResNet-20 has 7 that keep their
input's shape, MobileNetV2 3, ResNet-8 1, VGG none), which the uniform and global sweeps never do. That is where
the room is: with it, TPE with every plan fine-tuned held 1.14-1.20x the better sweep's hypervolume on ResNet-20
(``bench/search_quality.py --quick --seeds 3``, 2026-12-04, ``bench/search_quality.md``); ``bench/structure.py
--drop`` sweeps chosen sets of dropped blocks against the sweeps.

Every method of ``bench/search_quality.py`` searches the same space under the same budgets: at least 60% of the
dense MACs removed (``constraints.max_macs``), accuracy within the task's ``max_accuracy_drop`` of dense, accuracy
against the latency measured in paired rounds with the dense model. Every fine-tune ends with 8 batches of
BatchNorm recalibration (``finetune.recalibrate_bn``, bench/recalibration.py). The budget is 0.10 on ResNet-8 and
MobileNetV2, where recalibrated plans at 40% of the MACs still lose 0.03-0.10 (at 0.05, in the 3-seed bench of
2026-12-03 without recalibration, ResNet-8 seed 2 kept no feasible front point for any method: a table of zeros
ranks luck, not search), and 0.03 on VGG, where at 0.10 every plan of the space was feasible.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# --- models ----------------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """A ResNet basic block; a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class CompactResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2): a 3x3 stem, three stages of widths 16/32/64, global pooling."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for stage, width in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean(dim=(2, 3)))


def resnet8(num_classes: int = 10) -> nn.Module:
    """ResNet-8: 6 DependencyGraph groups (4 blocks), 12.7M MACs on 32-px images (0.79M on the raw 8x8 digits)."""
    return CompactResNet(num_classes, blocks=1)


def resnet20(num_classes: int = 10) -> nn.Module:
    """ResNet-20 (He et al. 2016, sec. 4.2): 12 DependencyGraph groups (9 blocks), 10.3M MACs on 16-px images."""
    return CompactResNet(num_classes, blocks=3)


class InvertedResidual(nn.Module):
    """MobileNetV2's block (Sandler et al. 2018): 1x1 expansion, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class CompactMobileNetV2(nn.Module):
    """A MobileNetV2 for 32-px inputs: stem 16, blocks (16,1) (24,2) (24,1) (32,2) (32,1) (64,2), head 128."""

    SETTINGS = ((16, 1), (24, 2), (24, 1), (32, 2), (32, 1), (64, 2))

    def __init__(self, num_classes: int = 10, expand: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        layers, cin = [], 16
        for cout, stride in self.SETTINGS:
            layers.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(cin, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU6())
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.layers(self.stem(x))).mean(dim=(2, 3)))


def mobilenetv2(num_classes: int = 10) -> nn.Module:
    return CompactMobileNetV2(num_classes)


class CompactVGG(nn.Module):
    """A VGG (Simonyan & Zisserman 2015) for 32-px inputs: 3x3 conv-BN-ReLU layers, 2x2 max pools, global pooling.

    The net in which Li et al. (ICLR 2017, "Pruning Filters for Efficient ConvNets") found per-layer sensitivity
    to differ most: the first layers, cheap at full resolution, lose accuracy fast, while the wide layers of the
    last stages, where most of the MACs are, barely notice half their filters gone.
    """

    CONFIG = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M")

    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in self.CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, 1, 1, bias=False), nn.BatchNorm2d(int(item)), nn.ReLU()]
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def vgg(num_classes: int = 10) -> nn.Module:
    """The compact VGG: 6 DependencyGraph groups (one per conv), 8.7M MACs on 32-px images."""
    return CompactVGG(num_classes)


# --- tasks -----------------------------------------------------------------------------------------------------------

#: What every task shares. One torch thread for the whole process (training too): on 2 cores shared with another
#: process, two threads made a 30-step fine-tune take 3-16 s instead of 0.6 s; one thread leaves a core to others.
_COMMON: dict[str, Any] = {
    "device": "cpu",
    "data": {"name": "digits"},
    "prune": {"importance": "l2", "granularity": "group", "ratio": {"low": 0.3, "high": 0.85, "step": None},
              "offset_max": 0.3, "drop_blocks": True},
    "objectives": ["accuracy", "latency_ms"],
    "constraints": {"max_accuracy_drop": 0.10},
    "measure": {"warmup": 2, "repeats": 10, "ci_half_width": None, "max_noisy_retries": 5, "threads": 1},
    "search": {"keep_weights": "none"},
}

#: name -> the task's spec keys (merged over _COMMON) and the share of dense MACs a plan may keep at most.
TASKS: dict[str, dict[str, Any]] = {
    "resnet8": {
        "model": {"arch": "bench.tasks:resnet8", "pretrain": {"epochs": 10, "lr": 0.05, "batch_size": 128}},
        "data": {"image_size": 32},
        "finetune": {"steps": 30, "lr": 0.01, "batch_size": 128, "optimizer": "sgd"},
        "measure": {"batch_size": 64},
    },
    "resnet20": {
        "model": {"arch": "bench.tasks:resnet20", "pretrain": {"epochs": 10, "lr": 0.05, "batch_size": 128}},
        "data": {"image_size": 16},
        "finetune": {"steps": 30, "lr": 0.01, "batch_size": 128, "optimizer": "sgd"},
        "measure": {"batch_size": 64},
    },
    "vgg": {
        "model": {"arch": "bench.tasks:vgg", "pretrain": {"epochs": 10, "lr": 0.05, "batch_size": 128}},
        "data": {"image_size": 32},
        "finetune": {"steps": 30, "lr": 0.01, "batch_size": 128, "optimizer": "sgd"},
        "measure": {"batch_size": 64},
        # recalibrated, uniform 0.70 keeps 0.98 and 0.85 0.89-0.94 (bench/recalibration.py, 2 seeds): at 0.10
        # every plan of the space is feasible and the front is the ratio cap's, not the accuracy's
        "constraints": {"max_accuracy_drop": 0.03},
    },
    "mobilenetv2": {
        "model": {"arch": "bench.tasks:mobilenetv2", "pretrain": {"epochs": 10, "lr": 0.05, "batch_size": 128}},
        "data": {"image_size": 16},
        "finetune": {"steps": 30, "lr": 0.01, "batch_size": 64, "optimizer": "sgd"},
        "measure": {"batch_size": 64},
    },
}

#: The cheap region: plans keep at most this share of the dense model's MACs.
MAX_MACS_SHARE = 0.4


def task_spec(task: str, *, dense_macs: int | None = None, finetune_steps: int | None = None) -> dict[str, Any]:
    """The spec (a dict for moprune.spec.parse_spec) every method of ``task`` shares, before its search keys.

    ``dense_macs`` turns the cheap region into a hard MACs budget (plans above it are rejected before the fine-tune);
    ``finetune_steps`` replaces the task's brief fine-tune length (and so what a fine-tune costs against a screen).
    """
    spec: dict[str, Any] = {}
    for source in (_COMMON, TASKS[task]):
        for key, value in source.items():
            spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}
    if finetune_steps is not None:
        spec["finetune"] = {**spec["finetune"], "steps": finetune_steps}
    if dense_macs is not None:
        spec["constraints"] = {**spec["constraints"], "max_macs": float(int(dense_macs * MAX_MACS_SHARE))}
    return spec
