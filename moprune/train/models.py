"""Dense models: build by name, load a user checkpoint, or pretrain once and cache by content hash."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MopruneError, SpecError
from ..spec import HF_PREFIXES, TEXT_DATASETS, StudySpec
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


#: torchvision's ViT builders' fixed shapes (patch, layers, heads, hidden, mlp): a spec that changes one of them
#: (``model.kwargs: {patch_size: 4}`` to run ViT-B on 32-px images) builds ``VisionTransformer`` from these.
_VIT_SHAPES = {"vit_b_16": (16, 12, 12, 768, 3072), "vit_b_32": (32, 12, 12, 768, 3072),
               "vit_l_16": (16, 24, 16, 1024, 4096), "vit_l_32": (32, 24, 16, 1024, 4096),
               "vit_h_14": (14, 32, 16, 1280, 5120)}
_VIT_KEYS = ("patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")
#: torchvision's Swin builders' fixed shapes (patch, embed dim, depths, heads per stage, window, stochastic depth):
#: ``model.kwargs: {patch_size: 2, window_size: 4}`` builds ``SwinTransformer`` from these, for small images.
_SWIN_SHAPES = {"swin_t": (4, 96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 0.2),
                "swin_s": (4, 96, [2, 2, 18, 2], [3, 6, 12, 24], 7, 0.3),
                "swin_b": (4, 128, [2, 2, 18, 2], [4, 8, 16, 32], 7, 0.5),
                "swin_v2_t": (4, 96, [2, 2, 6, 2], [3, 6, 12, 24], 8, 0.2),
                "swin_v2_s": (4, 96, [2, 2, 18, 2], [3, 6, 12, 24], 8, 0.3),
                "swin_v2_b": (4, 128, [2, 2, 18, 2], [4, 8, 16, 32], 8, 0.5)}
_SWIN_KEYS = ("patch_size", "embed_dim", "depths", "num_heads", "window_size", "stochastic_depth_prob")


def _swin(arch: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """A torchvision Swin with the shape keys of ``kwargs`` replacing its builder's (sizes may be ints or pairs)."""
    from torchvision.models import swin_transformer as swin

    shape = dict(zip(_SWIN_KEYS, _SWIN_SHAPES[arch])) | {k: kwargs.pop(k) for k in _SWIN_KEYS if k in kwargs}
    for key in ("patch_size", "window_size"):
        shape[key] = [shape[key]] * 2 if isinstance(shape[key], int) else list(shape[key])
    if arch.startswith("swin_v2"):
        kwargs.setdefault("block", swin.SwinTransformerBlockV2)
        kwargs.setdefault("downsample_layer", swin.PatchMergingV2)
    return swin.SwinTransformer(num_classes=num_classes, **shape, **kwargs)


def build_model(arch: str, num_classes: int, kwargs: dict[str, Any] | None = None,
                image_size: int | None = None, text: dict[str, Any] | None = None,
                hf_config: dict[str, Any] | None = None) -> nn.Module:
    """A fresh, randomly initialised model: a torchvision classifier by name, or ``package.module:factory``.

    ``kwargs`` (``model.kwargs``) go to the builder or factory. torchvision's ``vit_*`` get the data's
    ``image_size`` unless given (a ViT's position embedding is sized by it), and may change their patch size and
    shape, which their builders fix; so may ``swin_*`` (patch, window, depths, heads). ``hf:`` and ``hf-config:``
    models are Hugging Face classifiers (``hf.py``); ``text`` (a text data set's vocabulary size, pad id, sequence
    length) sizes their embeddings; ``hf_config`` (an export's copy of the model's config) rebuilds one offline.
    """
    kwargs = dict(kwargs or {})
    if arch.startswith(HF_PREFIXES):
        from .hf import build_hf

        return build_hf(arch, num_classes, text, hf_config)
    if ":" in arch:
        module_name, _, factory_name = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"model.arch: cannot import {arch!r} ({exc}); is the package installed?") from None
        return factory(num_classes=num_classes, **kwargs)
    import torchvision

    if arch in _VIT_SHAPES:
        if image_size is not None:
            kwargs.setdefault("image_size", image_size)
        if any(k in kwargs for k in _VIT_KEYS):
            shape = dict(zip(_VIT_KEYS, _VIT_SHAPES[arch])) | {k: kwargs.pop(k) for k in _VIT_KEYS if k in kwargs}
            return torchvision.models.VisionTransformer(num_classes=num_classes, **shape, **kwargs)
    try:
        if arch in _SWIN_SHAPES and any(k in kwargs for k in _SWIN_KEYS):
            return _swin(arch, num_classes, kwargs)
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise SpecError(f"model.kwargs: {arch} does not take {sorted(kwargs)} ({exc}); remove the key") from None


def dense_architecture(spec: StudySpec, data: DataBundle) -> nn.Module:
    """The spec's model, freshly initialised, for this data set's classes and image size."""
    return build_model(spec.model.arch, data.num_classes, spec.model.kwargs, data.image_size, data.text)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: DataSpec keys that only text data sets read: left out of image data sets' cache keys (made before they existed)
_TEXT_KEYS = {"path", "val_path", "dataset", "dataset_config", "data_files", "train_split", "val_split", "text_column",
              "label_column", "max_length", "tokenizer", "vocab_size"}


def data_recipe(spec: StudySpec) -> dict[str, Any]:
    """The data keys that determine a cached model (``download`` never does; text keys only for text)."""
    unused = {"download"} | (set() if spec.data.name in TEXT_DATASETS else _TEXT_KEYS)
    return spec.data.model_dump(mode="json", exclude=unused)


def pretrain_key(spec: StudySpec, num_classes: int) -> str:
    """Hash of everything that determines a pretrained dense model."""
    pre = spec.model.pretrain
    recipe = {
        "format": _CACHE_FORMAT, "arch": spec.model.arch, "num_classes": num_classes, "seed": spec.seed,
        # the default optimizer is left out, so keys made before it was a setting stay valid
        "pretrain": pre.model_dump(exclude={"optimizer"} if pre.optimizer == "sgd" else None),
        "data": data_recipe(spec),
        "torch": torch.__version__.split("+")[0],
        **({"kwargs": spec.model.kwargs} if spec.model.kwargs else {}),  # absent when empty: older keys stay valid
        **({"config_sha256": file_sha256(_hf_config_file(spec.model.arch))}
           if spec.model.arch.startswith("hf-config:") else {}),  # an edited config is another model
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _hf_config_file(arch: str) -> Path:
    path = Path(arch.partition(":")[2])
    return path / "config.json" if path.is_dir() else path


def cache_stem(arch: str) -> str:
    """A file-name-safe form of ``model.arch`` (a factory's colon, an hf-config: path's slashes)."""
    if arch.startswith("hf-config:"):
        arch = "hf-config-" + _hf_config_file(arch).stem
    return re.sub(r"[^\w.-]+", "-", arch.replace(":", "."))


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
    return CACHE_DIR / f"{cache_stem(spec.model.arch)}-{pretrain_key(spec, num_classes)}.pt"


def sparsity_key(spec: StudySpec, base_sha256: str) -> str:
    """Hash of what determines a sparsity-trained dense model: the weights it starts from and the recipe."""
    st = spec.model.sparsity_training
    assert st is not None
    recipe = {"format": _CACHE_FORMAT, "from": base_sha256, "sparsity_training": st.model_dump(), "seed": spec.seed,
              "data": data_recipe(spec), "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def dense_weights_path(spec: StudySpec, num_classes: int) -> Path:
    """Where the study's dense weights are: the checkpoint or pretrain cache entry, or, with
    ``model.sparsity_training``, the cache entry of that stage run on them."""
    base = _base_weights_path(spec, num_classes)
    if spec.model.sparsity_training is None or not base.is_file():
        return base
    return CACHE_DIR / f"{cache_stem(spec.model.arch)}-{sparsity_key(spec, file_sha256(base))}-slim.pt"


def load_dense(spec: StudySpec, data: DataBundle, device: torch.device) -> DenseModel:
    """The dense model on ``device`` in eval mode: from the checkpoint, the pretrain cache, or pretrained now;
    then, with ``model.sparsity_training``, slimmed (or loaded from that stage's cache)."""
    model = dense_architecture(spec, data)
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
                model = dense_architecture(spec, data).to(device)
            train(model, data.train, steps=pre.epochs * steps_per_epoch, lr=pre.lr, batch_size=pre.batch_size,
                  optimizer=pre.optimizer, seed=spec.seed, warmup=steps_per_epoch // 2)
            _save_atomically(model, path)
    model.eval()
    return DenseModel(model, source, path, file_sha256(path), evaluate(model, data.val))
