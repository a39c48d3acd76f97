"""How many search units each granularity gives for torchvision families (the README's "Blocks and stages" table).

    .venv/bin/python bench/units.py [--size 32] [arch ...]
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torchvision

from moprune.pruning import discover_groups, search_units

FAMILIES = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "mnasnet0_5",
            "regnet_x_400mf", "densenet121", "squeezenet1_0", "vgg11_bn", "convnext_tiny", "googlenet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", nargs="*", default=FAMILIES)
    parser.add_argument("--size", type=int, default=32, help="input size in pixels (default 32)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    x = torch.randn(1, 3, args.size, args.size)
    print(f"{'arch':<20}{'groups':>7}{'blocks':>7}{'stages':>7}  example block / note")
    for arch in args.arch:
        model = torchvision.models.get_model(arch, num_classes=10).eval()
        try:
            groups = discover_groups(model, x)
        except Exception as exc:  # noqa: BLE001  (a table row, not a failure of the script)
            print(f"{arch:<20}  cannot trace: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        notes: list[str] = []
        blocks = search_units(model, groups, "block", x, warn=notes.append)
        stages = search_units(model, groups, "stage", x, warn=notes.append)
        shown = "block falls back to group" if any("block" in n for n in notes) else blocks[min(2, len(blocks) - 1)].name
        print(f"{arch:<20}{len(groups):>7}{len(blocks):>7}{len(stages):>7}  {shown}")


if __name__ == "__main__":
    main()
