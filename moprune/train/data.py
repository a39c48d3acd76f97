"""Data sets as train/validation splits ready for brief fine-tunes.

Small data sets are held as normalised tensors on the study's device: a fine-tune of 100 steps would otherwise be
dominated by DataLoader overhead. Only ImageFolder data stream through a DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import MopruneError
from ..spec import TEXT_DATASETS, DataSpec
from .split import stratified_split

Batch = tuple[Tensor, Tensor]
FAKE_SIZE = 1024  # images in the `fake` data set (torchvision FakeData), for smoke tests


class Split(Protocol):
    """A labelled set that yields (images, labels) batches on the study's device."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
                ) -> Iterator[Batch]: ...


@dataclass
class TensorSplit:
    """Images (N, C, H, W), or token ids (N, L), and labels (N,) held as tensors on one device."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
                ) -> Iterator[Batch]:
        n = len(self.y)
        order = torch.randperm(n, generator=generator).to(self.x.device) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                yield self.x[start:start + batch_size], self.y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                yield self.x[idx], self.y[idx]


class _Order(torch.utils.data.Sampler):
    """The indices of the next pass over a dataset, set by ``LoaderSplit.batches`` before each pass."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class LoaderSplit:
    """A torch Dataset streamed through a DataLoader (for image folders too large to hold in memory).

    One DataLoader per batch size, kept with persistent workers: a fine-tune's passes and every evaluation would
    otherwise start (and tear down) ``workers`` processes each time. The order of a pass is drawn in this process
    from the caller's generator, so shuffling stays reproducible by seed whichever workers load the images.
    """

    dataset: torch.utils.data.Dataset
    device: torch.device
    workers: int = 2
    _loaders: dict[int, tuple[torch.utils.data.DataLoader, _Order]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def loader(self, batch_size: int) -> tuple[torch.utils.data.DataLoader, _Order]:
        if batch_size not in self._loaders:
            order = _Order()
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=batch_size, sampler=order, num_workers=self.workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.workers > 0)
            self._loaders[batch_size] = (loader, order)
        return self._loaders[batch_size]

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
                ) -> Iterator[Batch]:
        loader, order = self.loader(batch_size)
        n = len(self)
        order.indices = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


@dataclass
class DataBundle:
    train: Split
    val: Split
    num_classes: int
    image_size: int
    in_channels: int = 3
    # text data: vocab_size, pad_id, max_length, tokenizer (a trained tokenizer's file, or its name); None: images
    text: dict[str, Any] | None = None

    def example_inputs(self, batch_size: int = 1) -> Tensor:
        """A batch of real validation inputs (images, or token ids), used to trace and time models."""
        x, _ = next(self.val.batches(batch_size))
        if len(x) < batch_size:  # tiny validation sets: repeat to the requested batch size
            x = x.repeat((batch_size + len(x) - 1) // len(x), *[1] * (x.dim() - 1))[:batch_size]
        return x


def _to_images(x: Tensor, image_size: int) -> Tensor:
    """(N, C, H, W) floats in [0, 1] -> 3-channel images of ``image_size`` px."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.contiguous()


def _tensor_bundle(x: Tensor, y: Tensor, spec: DataSpec, seed: int, device: torch.device) -> DataBundle:
    """Split, normalise with the training split's channel statistics, and move to the device."""
    x = _to_images(x.float(), spec.image_size)
    train_idx, val_idx = stratified_split(y.numpy(), spec.val_fraction, seed)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    mean = x[train_idx].mean(dim=(0, 2, 3), keepdim=True)
    std = x[train_idx].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    y = y.long()
    return DataBundle(
        train=TensorSplit(x[train_idx].to(device), y[train_idx].to(device)),
        val=TensorSplit(x[val_idx].to(device), y[val_idx].to(device)),
        num_classes=int(y.max()) + 1,
        image_size=spec.image_size,
    )


def _digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0
    return x, torch.from_numpy(digits.target)


def _fake(seed: int, image_size: int) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    fake = FakeData(size=FAKE_SIZE, image_size=(3, image_size, image_size), num_classes=10, random_offset=seed)
    pairs = [fake[i] for i in range(FAKE_SIZE)]
    x = torch.stack([pil_to_tensor(img) for img, _ in pairs]).float() / 255.0
    return x, torch.tensor([int(label) for _, label in pairs])


def _torchvision(spec: DataSpec) -> tuple[Tensor, Tensor]:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST,
           "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[spec.name]
    try:
        ds = cls(root=str(spec.root), train=True, download=spec.download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        raise MopruneError(
            f"data set {spec.name!r} not found under {str(spec.root)!r} ({exc}); set data.download: true "
            "or place the files there"
        ) from None
    data = torch.as_tensor(np.asarray(ds.data))
    x = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # MNIST (N,H,W); CIFAR (N,H,W,C)
    return x.float() / 255.0, torch.as_tensor(np.asarray(ds.targets))


def _imagefolder(spec: DataSpec, seed: int, device: torch.device) -> DataBundle:
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.Resize(spec.image_size), transforms.CenterCrop(spec.image_size), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    root = Path(spec.root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = datasets.ImageFolder(str(root / "train"), transform=tf)
        val = datasets.ImageFolder(str(root / "val"), transform=tf)
        if train.classes != val.classes:
            raise MopruneError(f"{root}/train and {root}/val hold different class folders")
    else:
        full = datasets.ImageFolder(str(root), transform=tf)
        train_idx, val_idx = stratified_split(np.asarray(full.targets), spec.val_fraction, seed)
        train = torch.utils.data.Subset(full, train_idx.tolist())
        val = torch.utils.data.Subset(full, val_idx.tolist())
        train.classes = full.classes  # type: ignore[attr-defined]
    return DataBundle(
        train=LoaderSplit(train, device), val=LoaderSplit(val, device),
        num_classes=len(train.classes), image_size=spec.image_size,  # type: ignore[attr-defined]
    )


def load_data(spec: DataSpec, *, seed: int, device: torch.device) -> DataBundle:
    """Load the spec's data set, split it by ``val_fraction`` (stratified, seeded) and place it on ``device``."""
    if spec.name == "imagefolder":
        return _imagefolder(spec, seed, device)
    if spec.name in TEXT_DATASETS:
        from .text import text_tensors

        (x_train, y_train), (x_val, y_val), classes, facts = text_tensors(spec, seed)
        return DataBundle(TensorSplit(x_train.to(device), y_train.to(device)),
                          TensorSplit(x_val.to(device), y_val.to(device)), classes, spec.image_size, 0, facts)
    if spec.name == "digits":
        x, y = _digits()
    elif spec.name == "fake":
        x, y = _fake(seed, spec.image_size)
    else:
        x, y = _torchvision(spec)
    return _tensor_bundle(x, y, spec, seed, device)
