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
from ..pruning import prunable_form, replay_history
from ..spec import StudySpec, read_yaml
from ..train import DataBundle, build_model, hf_config_of


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise MopruneError(f"{folder}: no config.yaml; is this a folder written by `moprune export`?")
    return read_yaml(path)


def model_config(spec: StudySpec, data: DataBundle, model: nn.Module | None = None) -> dict[str, Any]:
    """What rebuilds the study's dense architecture without the study: the ``model`` section of ``config.yaml``.

    A Hugging Face model's full config goes with it (``hf_config``): no hub and no config file is needed to load
    the export, and its per-layer widths come from ``pruning.json`` as a CNN's do.
    """
    hf = hf_config_of(model) if model is not None else None
    return {"arch": spec.model.arch, "num_classes": data.num_classes, "image_size": data.image_size,
            "in_channels": data.in_channels, "kwargs": dict(spec.model.kwargs),
            **({"text": dict(data.text)} if data.text is not None else {}),
            **({"hf_config": hf} if hf is not None else {})}


def dense_architecture(m: dict[str, Any]) -> nn.Module:
    """The dense architecture of a ``model`` section, freshly initialised, in the form trials prune (attention
    by head)."""
    model = build_model(m["arch"], m["num_classes"], m.get("kwargs") or {}, m.get("image_size"), m.get("text"),
                        m.get("hf_config"))
    prunable_form(model)
    return model


def rebuild_model(m: dict[str, Any], history: list[Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """Dense architecture -> replay the pruning history -> load the pruned weights; on the CPU, in eval mode."""
    text = m.get("text")
    # Torch-Pruning traces the graph through autograd: build normal tensors even if the caller is in inference mode.
    with torch.inference_mode(False), torch.enable_grad():
        trace = (torch.zeros(1, text["max_length"], dtype=torch.long) if text
                 else torch.zeros(1, m["in_channels"], m["image_size"], m["image_size"]))
        model = dense_architecture(m)
        replay_history(model, history, trace)
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
    return rebuild_model(m, history, state)
