"""Dense models: build by name, load a user checkpoint, or pretrain once and cache by content hash."""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .data import DataBundle
from .errors import MopruneError, SpecError
from .spec import StudySpec
from .train import evaluate, train

CACHE_DIR = Path("runs/cache")
_CACHE_FORMAT = 1  # bump when data preparation or the training loop changes what a cached model is


@dataclass(frozen=True)
class DenseModel:
    model: nn.Module
    source: str  # "checkpoint" | "pretrained" | "cache"
    weights_path: Path
    sha256: str
    val_accuracy: float


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A fresh, randomly initialised model: a torchvision classifier by name, or ``package.module:factory``."""
    if ":" in arch:
        module_name, _, factory_name = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"model.arch: cannot import {arch!r} ({exc}); is the package installed?") from None
        return factory(num_classes=num_classes)
    import torchvision

    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def classifier_of(model: nn.Module) -> nn.Module:
    """The output layer, which pruning must never touch: the last Linear (or, failing that, the last Conv2d)."""
    for kind in (nn.Linear, nn.Conv2d):
        layers = [m for m in model.modules() if isinstance(m, kind)]
        if layers:
            return layers[-1]
    raise MopruneError(f"{type(model).__name__} has no Linear or Conv2d layer to classify with")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pretrain_key(spec: StudySpec, num_classes: int) -> str:
    """Hash of everything that determines a pretrained dense model."""
    recipe = {
        "format": _CACHE_FORMAT, "arch": spec.model.arch, "num_classes": num_classes, "seed": spec.seed,
        "pretrain": spec.model.pretrain.model_dump(), "data": spec.data.model_dump(mode="json", exclude={"download"}),
        "torch": torch.__version__.split("+")[0],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def load_checkpoint(model: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle that needs weights_only=False
        raise MopruneError(
            f"model.checkpoint: cannot load {str(path)!r} as a state_dict with weights_only=True ({exc}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise MopruneError(
            f"model.checkpoint: {str(path)!r} does not fit {type(model).__name__} with this data set's "
            f"{_num_outputs(model)} classes: {detail}"
        ) from None


def _num_outputs(model: nn.Module) -> int:
    head = classifier_of(model)
    return head.out_features if isinstance(head, nn.Linear) else head.out_channels


def load_dense(spec: StudySpec, data: DataBundle, device: torch.device, *, log=print) -> DenseModel:
    """The dense model on ``device`` in eval mode: from the checkpoint, the pretrain cache, or pretrained now."""
    model = build_model(spec.model.arch, data.num_classes)
    if spec.model.checkpoint is not None:
        path, source = Path(spec.model.checkpoint), "checkpoint"
        load_checkpoint(model, path)
        model.to(device)
    else:
        path = CACHE_DIR / f"{spec.model.arch.replace(':', '.')}-{pretrain_key(spec, data.num_classes)}.pt"
        if path.is_file():
            source = "cache"
            load_checkpoint(model, path)
            model.to(device)
        else:
            source = "pretrained"
            pre = spec.model.pretrain
            steps_per_epoch = -(-len(data.train) // pre.batch_size)
            log(f"pretraining dense {spec.model.arch} for {pre.epochs} epochs ({pre.epochs * steps_per_epoch} steps); "
                f"cached in {path}")
            torch.manual_seed(spec.seed)
            model = build_model(spec.model.arch, data.num_classes).to(device)
            train(model, data.train, steps=pre.epochs * steps_per_epoch, lr=pre.lr, batch_size=pre.batch_size,
                  seed=spec.seed, warmup=steps_per_epoch // 2)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
            tmp.replace(path)  # atomic: a killed pretraining never leaves a half-written cache entry
    model.eval()
    return DenseModel(model, source, path, file_sha256(path), evaluate(model, data.val))
