"""The dataset registry: digits8 and basicmotions as uint8, their splits, constants, loaders, and errors."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import torch

import potnn.data.basicmotions as basicmotions
import potnn.data.digits as digits
from potnn.data import (
    BASICMOTIONS_MEAN,
    BASICMOTIONS_STD,
    DIGITS8_MEAN,
    DIGITS8_STD,
    ArrayDataset,
    DatasetError,
    channel_stats,
    dataset_info,
    dataset_loaders,
    load_dataset,
    normalize,
    pixel_stats,
    stratified_split,
)

def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_sklearn = pytest.mark.skipif(not _has("sklearn"), reason="needs the potnn[datasets] extra (scikit-learn)")
needs_sktime = pytest.mark.skipif(not _has("sktime"), reason="needs the potnn[datasets] extra (sktime)")


# --- the split and the batches, on made-up data --------------------------------------------


def test_stratified_split_holds_out_the_fraction_of_each_class_and_is_seeded() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 7, 3])
    kept, held = stratified_split(labels, 0.25, seed=0)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    assert np.bincount(labels[held], minlength=4).tolist() == [3, 5, 2, 1]  # round half up of 2.5, 5, 1.75, 0.75
    again_kept, again_held = stratified_split(labels, 0.25, seed=0)
    assert np.array_equal(held, again_held) and np.array_equal(kept, again_kept)
    assert not np.array_equal(held, stratified_split(labels, 0.25, seed=1)[1])
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(labels, 1.0, seed=0)


def test_array_dataset_normalises_each_channel_with_its_own_mean_and_std() -> None:
    x = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    ds = ArrayDataset(x, np.array([0, 1]), (0.1, 0.2, 0.3), (0.5, 1.0, 2.0))
    sample, label = ds[1]
    assert sample.shape == (3, 5) and int(label) == 1
    for c, (m, s) in enumerate(zip((0.1, 0.2, 0.3), (0.5, 1.0, 2.0))):
        torch.testing.assert_close(sample[c], normalize(x[1, c], m, s))
    batch, _ = ds[[0, 1]]
    torch.testing.assert_close(batch[1], sample)


def test_shift_augmentation_moves_all_channels_of_an_image_together() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(32, 3, 6, 6), dtype=np.uint8)
    ds = ArrayDataset(images, np.zeros(32, dtype=np.int64), 0.0, 1.0, 1, torch.Generator().manual_seed(0))
    x, _ = ds[list(range(32))]
    moved = np.rint(x.numpy() * 255).astype(np.uint8)
    for k in range(32):
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if np.array_equal(moved[k], np.roll(np.pad(images[k], ((0, 0), (1, 1), (1, 1))), (dy, dx), (1, 2))
                                    [:, 1:-1, 1:-1])]
        assert len(shifts) == 1, k
    with pytest.raises(ValueError, match="images"):
        ArrayDataset(images[:, :, 0], np.zeros(32, dtype=np.int64), 0.0, 1.0, 1)


def test_unknown_dataset_lists_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="mnist16, digits8, basicmotions"):
        dataset_info("cifar")


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    digits._splits.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # what an uninstalled package looks like to import
    with pytest.raises(DatasetError, match=r"dataset 'digits8' needs scikit-learn .*pip install 'potnn\[datasets\]'"):
        load_dataset("digits8", "test")
    digits._splits.cache_clear()


# sha256 (first 16 hex digits) of the digits8 test split's bytes and labels.
DIGITS8_TEST_DIGEST = "d51a92b146fe7b6e"


# --- digits8 -------------------------------------------------------------------------------


@needs_sklearn
def test_digits8_is_load_digits_times_16_in_a_fixed_stratified_split() -> None:
    from sklearn.datasets import load_digits

    x, y, names = load_dataset("digits8", "test")
    train_x, train_y, _ = load_dataset("digits8", "train")
    assert names == tuple("0123456789")
    assert x.dtype == np.uint8 and x.shape == (451, 1, 8, 8) and train_x.shape == (1346, 1, 8, 8)
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == list(range(10))
    bunch = load_digits()
    both = np.concatenate([train_x, x])[:, 0].astype(np.int64)
    expected = np.minimum(bunch.images.astype(np.int64) * 16, 255)
    # every original image is in exactly one split, scaled by 16 and clipped (16 → 255)
    assert sorted(map(bytes, both.astype(np.uint8))) == sorted(map(bytes, expected.astype(np.uint8)))
    assert set(np.unique(both)) <= set(range(0, 256, 16)) | {255}
    # the test split is pinned: a change in it would make the shipped accuracy figure meaningless
    assert hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16] == DIGITS8_TEST_DIGEST


@needs_sklearn
def test_digits8_constants_are_its_training_split_statistics() -> None:
    mean, std = pixel_stats(load_dataset("digits8", "train")[0])
    assert (mean, std) == pytest.approx((DIGITS8_MEAN, DIGITS8_STD), abs=1e-6)


@needs_sklearn
def test_digits8_loaders_normalise_and_hold_out_a_validation_split() -> None:
    train, test = dataset_loaders("digits8", batch_size=50, seed=3)
    x, y = next(iter(test))
    assert x.shape == (50, 1, 8, 8) and y.dtype == torch.int64
    torch.testing.assert_close(x, normalize(test.dataset.images_u8[:50], DIGITS8_MEAN, DIGITS8_STD))
    fit, held = dataset_loaders("digits8", batch_size=50, seed=3, validation=0.2)
    assert len(fit.dataset) + len(held.dataset) == len(train.dataset)
    train_rows = {bytes(r) for r in train.dataset.images_u8.reshape(len(train.dataset), -1)}
    assert all(bytes(r) in train_rows for r in held.dataset.images_u8.reshape(len(held.dataset), -1))
    with pytest.raises(ValueError, match="augment"):
        dataset_loaders("digits8", augment="affine")


# --- basicmotions --------------------------------------------------------------------------


@needs_sktime
def test_basicmotions_is_scaled_per_channel_by_the_training_range() -> None:
    from sktime.datasets import load_basic_motions

    x, y, names = load_dataset("basicmotions", "train")
    test_x, test_y, _ = load_dataset("basicmotions", "test")
    assert names == ("badminton", "running", "standing", "walking")
    assert x.shape == (40, 6, 100) and test_x.shape == (40, 6, 100) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [10] * 4 and np.bincount(test_y).tolist() == [10] * 4
    assert np.all(x.min(axis=(0, 2)) == 0) and np.all(x.max(axis=(0, 2)) == 255)  # the training range fills 0..255
    raw, labels = load_basic_motions(split="train", return_type="numpy3D")
    assert [names[i] for i in y] == list(labels)
    lo, hi = raw.min(axis=(0, 2), keepdims=True), raw.max(axis=(0, 2), keepdims=True)
    assert np.all(np.abs(x - (raw - lo) / (hi - lo) * 255) <= 0.5)


@needs_sktime
def test_basicmotions_constants_and_loaders() -> None:
    mean, std = channel_stats(load_dataset("basicmotions", "train")[0])
    assert mean == pytest.approx(BASICMOTIONS_MEAN, abs=1e-6) and std == pytest.approx(BASICMOTIONS_STD, abs=1e-6)
    train, test = dataset_loaders("basicmotions", batch_size=8)
    x, _ = next(iter(train))
    assert x.shape == (8, 6, 100) and len(test.dataset) == 40
    config = dataset_info("basicmotions").config(ram=2048)
    assert config.input_shape == (6, 100) and config.channel_std() == BASICMOTIONS_STD
    with pytest.raises(ValueError, match="images"):
        dataset_loaders("basicmotions", augment=True)


