"""How many search units each granularity gives (the README's "Blocks and stages" and Transformer tables).

    .venv/bin/python bench/units.py [--size 32] [arch ...]      CNN families: groups / blocks / stages, and the
                                                                residual blocks prune.drop_blocks may drop
    .venv/bin/python bench/units.py --transformers               Transformers: blocks, heads, head size, MLP width

Transformer rows build each model randomly initialised (Hugging Face ones from their default configs, so nothing is
downloaded) and list what moprune searches in them.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import torch
import torchvision

from moprune.pruning import discover_groups, droppable_blocks, find_sites, prunable_form, search_units

FAMILIES = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "mnasnet0_5",
            "regnet_x_400mf", "densenet121", "squeezenet1_0", "vgg11_bn", "convnext_tiny", "googlenet"]
TORCHVISION_TRANSFORMERS = ["vit_b_16", "vit_b_32", "vit_l_16", "swin_t", "swin_b", "swin_v2_t"]
HF_CONFIGS = {"BERT-base (hf)": "BertConfig", "RoBERTa-base (hf)": "RobertaConfig", "ViT-base (hf)": "ViTConfig",
              "DistilBERT (hf)": "DistilBertConfig"}


class _Notes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def cnn_rows(archs: list[str], size: int) -> None:
    x = torch.randn(1, 3, size, size)
    notes = _Notes()
    logging.getLogger("moprune").addHandler(notes)
    print(f"{'arch':<20}{'groups':>7}{'blocks':>7}{'stages':>7}{'drop':>6}  example block / note")
    for arch in archs:
        model = torchvision.models.get_model(arch, num_classes=10).eval()
        try:
            groups = discover_groups(model, x)
        except Exception as exc:  # noqa: BLE001  (a table row, not a failure of the script)
            print(f"{arch:<20}  cannot trace: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        notes.messages.clear()
        blocks = search_units(model, groups, "block", x)
        stages = search_units(model, groups, "stage", x)
        fell_back = any("finds no blocks" in n for n in notes.messages)
        shown = "block falls back to group" if fell_back else blocks[min(2, len(blocks) - 1)].name
        drop = len(droppable_blocks(model, x))
        print(f"{arch:<20}{len(groups):>7}{len(blocks):>7}{len(stages):>7}{drop:>6}  {shown}")


def _transformer_models():
    for arch in TORCHVISION_TRANSFORMERS:
        yield arch, lambda arch=arch: torchvision.models.get_model(arch, num_classes=10)
    try:
        import transformers
    except ImportError:
        print("(Hugging Face rows need pip install 'moprune[hf]')")
        return
    for name, config in HF_CONFIGS.items():
        auto = (transformers.AutoModelForImageClassification if config == "ViTConfig"
                else transformers.AutoModelForSequenceClassification)
        yield name, lambda config=config, auto=auto: auto.from_config(getattr(transformers, config)(num_labels=2))


def transformer_rows() -> None:
    print(f"{'model':<20}{'blocks':>7}{'heads':>7}{'head size':>10}{'MLP width':>10}{'groups':>7}  note")
    for name, build in _transformer_models():
        model = build().eval()
        prunable_form(model)
        sites = find_sites(model)
        heads = [s for s in sites if s.kind == "heads"]
        mlps = [s for s in sites if s.kind == "neurons"]
        if not sites:
            print(f"{name:<20}{'-':>7}{'-':>7}{'-':>10}{'-':>10}{'-':>7}  no recognised blocks: not searched by head")
            continue
        blocks = len({s.block for s in sites})
        note = "" if heads else "MLP neurons only (its attention is not recognised)"
        print(f"{name:<20}{blocks:>7}{_span(h.count for h in heads):>7}{_span(h.unit for h in heads):>10}"
              f"{_span(m.count for m in mlps):>10}{len(sites):>7}  {note}")


def _span(values) -> str:
    """One value, or low-high where blocks differ (Swin's stages)."""
    values = sorted(set(values))
    return "-" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", nargs="*", default=FAMILIES)
    parser.add_argument("--size", type=int, default=32, help="input size in pixels (default 32)")
    parser.add_argument("--transformers", action="store_true", help="the Transformer table instead")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.transformers:
        transformer_rows()
    else:
        cnn_rows(args.arch, args.size)


if __name__ == "__main__":
    main()
