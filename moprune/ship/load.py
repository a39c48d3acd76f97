"""Load an export back: the dense architecture rebuilt, the pruning history replayed, the pruned weights loaded.

Nothing here needs the study database or ``weights_only=False``: ``config.yaml`` names the architecture and the
data shape, ``pruning.json`` is Torch-Pruning's structural record, ``weights.pt`` a plain state_dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MopruneError
from ..pruning import replay_history
from ..spec import read_yaml
from ..train import build_model


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise MopruneError(f"{folder}: no config.yaml; is this a folder written by `moprune export`?")
    return read_yaml(path)


def rebuild_model(arch: str, num_classes: int, image_size: int, in_channels: int, history: list[Any],
                  state: dict[str, torch.Tensor]) -> nn.Module:
    """Dense architecture -> replay the pruning history -> load the pruned weights; on the CPU, in eval mode."""
    # Torch-Pruning traces the graph through autograd: build normal tensors even if the caller is in inference mode.
    with torch.inference_mode(False), torch.enable_grad():
        model = build_model(arch, num_classes)
        replay_history(model, history, torch.zeros(1, in_channels, image_size, image_size))
        model.load_state_dict(state)
    return model.eval()


def load_exported(folder: str | Path) -> nn.Module:
    """The exported pruned model (CPU, eval mode); needs no dense weights and never ``weights_only=False``."""
    folder = Path(folder)
    m = read_config(folder)["model"]
    for name in ("pruning.json", "weights.pt"):
        if not (folder / name).is_file():
            raise MopruneError(f"{folder}: {name} is missing; re-run `moprune export`")
    history = json.loads((folder / "pruning.json").read_text())
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    return rebuild_model(m["arch"], m["num_classes"], m["image_size"], m["in_channels"], history, state)
