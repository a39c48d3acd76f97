"""Dense models: build by name, load a user checkpoint, or pretrain once and cache by content hash."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import MopruneError, SpecError
from ..spec import StudySpec
from ..torch_state import seeded
from .data import DataBundle
from .loop import batch_norm_scales, evaluate, train

log = logging.getLogger(__name__)

CACHE_DIR = Path("runs/cache")
#: Bump when data preparation or the training loop changes what a cached model is (2: the loop seeds dropout).
_CACHE_FORMAT = 2


@dataclass(frozen=True)
class DenseModel:
    model: nn.Module
    source: str  # "checkpoint" | "pretrained" | "cache"
    weights_path: Path
    sha256: str
    val_accuracy: float
    trained_from: str | None = None  # sha256 of the weights sparsity training started from (None: not slimmed)


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


def _num_outputs(model: nn.Module) -> int | str:
    """The classifier's outputs: the last Linear's (the convention of torchvision and most factories)."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return heads[-1].out_features if heads else "?"


def _base_weights_path(spec: StudySpec, num_classes: int) -> Path:
    """The user's checkpoint, else the pretrain cache entry for this recipe (before any sparsity training)."""
    if spec.model.checkpoint is not None:
        return Path(spec.model.checkpoint)
    return CACHE_DIR / f"{spec.model.arch.replace(':', '.')}-{pretrain_key(spec, num_classes)}.pt"


def sparsity_key(spec: StudySpec, base_sha256: str) -> str:
    """Hash of what determines a sparsity-trained dense model: the weights it starts from and the recipe."""
    st = spec.model.sparsity_training
    assert st is not None
    recipe = {"format": _CACHE_FORMAT, "from": base_sha256, "sparsity_training": st.model_dump(), "seed": spec.seed,
              "data": spec.data.model_dump(mode="json", exclude={"download"}), "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def dense_weights_path(spec: StudySpec, num_classes: int) -> Path:
    """Where the study's dense weights are: the checkpoint or pretrain cache entry, or, with
    ``model.sparsity_training``, the cache entry of that stage run on them."""
    base = _base_weights_path(spec, num_classes)
    if spec.model.sparsity_training is None or not base.is_file():
        return base
    return CACHE_DIR / f"{spec.model.arch.replace(':', '.')}-{sparsity_key(spec, file_sha256(base))}-slim.pt"


def load_dense(spec: StudySpec, data: DataBundle, device: torch.device) -> DenseModel:
    """The dense model on ``device`` in eval mode: from the checkpoint, the pretrain cache, or pretrained now;
    then, with ``model.sparsity_training``, slimmed (or loaded from that stage's cache)."""
    model = build_model(spec.model.arch, data.num_classes)
    if spec.model.sparsity_training is not None and not batch_norm_scales(model):
        raise SpecError(f"model.sparsity_training: {spec.model.arch} has no BatchNorm layers whose scales L1 could "
                        f"make sparse; remove model.sparsity_training for this model")
    dense = _load_base(spec, data, device, model)
    return _sparsity_trained(spec, data, device, dense) if spec.model.sparsity_training is not None else dense


def _sparsity_trained(spec: StudySpec, data: DataBundle, device: torch.device, base: DenseModel) -> DenseModel:
    st = spec.model.sparsity_training
    assert st is not None
    path = dense_weights_path(spec, data.num_classes)
    model = base.model
    if path.is_file():
        load_checkpoint(model, path)
        source = "cache"
    else:
        steps = st.epochs * -(-len(data.train) // st.batch_size)
        log.info("sparsity training (L1 %g on BatchNorm scales) of dense %s for %d epochs (%d steps); cached in %s",
                 st.l1, spec.model.arch, st.epochs, steps, path)
        train(model, data.train, steps=steps, lr=st.lr, batch_size=st.batch_size, seed=spec.seed + 1, l1_bn=st.l1)
        _save_atomically(model, path)
        source = "sparsity-trained"
    model.eval()
    return DenseModel(model, source, path, file_sha256(path), evaluate(model, data.val), trained_from=base.sha256)


def _save_atomically(model: nn.Module, path: Path) -> None:
    """A killed training never leaves a half-written cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)


def _load_base(spec: StudySpec, data: DataBundle, device: torch.device, model: nn.Module) -> DenseModel:
    if spec.model.checkpoint is not None:
        path, source = Path(spec.model.checkpoint), "checkpoint"
        load_checkpoint(model, path)
        model.to(device)
    else:
        path = _base_weights_path(spec, data.num_classes)
        if path.is_file():
            source = "cache"
            load_checkpoint(model, path)
            model.to(device)
        else:
            source = "pretrained"
            pre = spec.model.pretrain
            steps_per_epoch = -(-len(data.train) // pre.batch_size)
            log.info("pretraining dense %s for %d epochs (%d steps); cached in %s", spec.model.arch, pre.epochs,
                     pre.epochs * steps_per_epoch, path)
            with seeded(spec.seed, device):  # the initial weights, without reseeding the caller's generator
                model = build_model(spec.model.arch, data.num_classes).to(device)
            train(model, data.train, steps=pre.epochs * steps_per_epoch, lr=pre.lr, batch_size=pre.batch_size,
                  seed=spec.seed, warmup=steps_per_epoch // 2)
            _save_atomically(model, path)
    model.eval()
    return DenseModel(model, source, path, file_sha256(path), evaluate(model, data.val))
