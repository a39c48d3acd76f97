"""Data sets as device tensors: digits upsampled, stratified split, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moprune.train import load_data, stratified_split
from moprune.errors import MopruneError
from moprune.spec import DataSpec

CPU = torch.device("cpu")


def test_digits_are_three_channel_images_of_the_requested_size():
    data = load_data(DataSpec(name="digits", image_size=24, val_fraction=0.25), seed=0, device=CPU)
    x, y = next(data.train.batches(32))
    assert x.shape == (32, 3, 24, 24) and y.dtype == torch.long
    assert data.num_classes == 10
    assert len(data.train) + len(data.val) == 1797
    assert len(data.val) == pytest.approx(1797 * 0.25, abs=1)
    assert abs(float(data.train.x.mean())) < 0.05, "normalised with the training split's statistics"


def test_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    a = stratified_split(labels, 0.2, seed=1)
    b = stratified_split(labels, 0.2, seed=1)
    c = stratified_split(labels, 0.2, seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert np.bincount(labels[a[1]]).tolist() == [10] * 10
    assert not set(a[0]) & set(a[1])


def test_shuffled_batches_depend_only_on_the_generator_seed():
    data = load_data(DataSpec(name="digits", image_size=8), seed=0, device=CPU)
    first = [y for _, y in data.train.batches(100, shuffle=True, generator=torch.Generator().manual_seed(3))]
    again = [y for _, y in data.train.batches(100, shuffle=True, generator=torch.Generator().manual_seed(3))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert sum(len(y) for y in first) == len(data.train)


def test_fake_data_set_builds():
    data = load_data(DataSpec(name="fake", image_size=16), seed=0, device=CPU)
    assert data.example_inputs(4).shape == (4, 3, 16, 16)


def test_missing_torchvision_data_set_says_how_to_get_it(tmp_path):
    with pytest.raises(MopruneError, match="download: true"):
        load_data(DataSpec(name="cifar10", root=tmp_path, download=False), seed=0, device=CPU)


def test_imagefolder_with_train_and_val(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 20), (i * 40, 100 if cls == "cat" else 200, 0)).save(folder / f"{i}.png")
    data = load_data(DataSpec(name="imagefolder", root=tmp_path, image_size=16), seed=0, device=CPU)
    assert data.num_classes == 2 and len(data.train) == 6 and len(data.val) == 6
    x, y = next(data.val.batches(6))
    assert x.shape == (6, 3, 16, 16) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]


def test_an_image_folder_keeps_one_loader_and_its_workers_across_passes(tmp_path):
    """A fine-tune's passes and each evaluation reuse the loader; the order is still the generator's."""
    from PIL import Image

    for cls in ("cat", "dog"):
        folder = tmp_path / cls
        folder.mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (i * 40, 100 if cls == "cat" else 200, 0)).save(folder / f"{i}.png")
    data = load_data(DataSpec(name="imagefolder", root=tmp_path, image_size=8, val_fraction=0.5), seed=0,
                     device=CPU)

    def labels(seed: int, stop: int | None = None) -> list[int]:
        out = []
        for i, (_, y) in enumerate(data.train.batches(2, shuffle=True, generator=torch.Generator().manual_seed(seed))):
            out += y.tolist()
            if stop is not None and i + 1 == stop:
                break  # a pass abandoned part-way (adaptive BN, a fine-tune's last steps)
        return out

    first = labels(1)
    loader = data.train.loader(2)[0]
    assert labels(1, stop=1) == first[:2]
    assert labels(1) == first and labels(2) != first or len(set(first)) == 1
    assert data.train.loader(2)[0] is loader and loader.persistent_workers, "the same loader and workers each pass"
