"""basicmotions: the UEA BasicMotions set, as shipped inside sktime (no download).

A smartwatch's 3-axis accelerometer and 3-axis gyroscope at 10 Hz, 100 samples per series, while
a person is standing, walking, running or playing badminton: 6 channels × 100, 4 classes, the
archive's own split of 40 training and 40 test series (10 per class each).

The MCU takes uint8, so each channel is scaled linearly by the training split's own minimum and
maximum of that channel: ``u8 = clip(floor((v − min_c) / (max_c − min_c) × 255 + 1/2), 0, 255)``.
Test values outside the training range are clipped. Classes are numbered in alphabetical order.
"""

from __future__ import annotations

import functools

import numpy as np

from .errors import DatasetError, import_for_dataset

NAME = "basicmotions"
CLASS_NAMES: tuple[str, ...] = ("badminton", "running", "standing", "walking")
CHANNELS, LENGTH = 6, 100

# Per-channel mean and population std of the training split scaled to [0, 1] (`channel_stats`),
# rounded to 6 decimals; fixed here because they are folded into the first layer of an exported model.
BASICMOTIONS_MEAN: tuple[float, ...] = (0.48271, 0.503852, 0.535496, 0.352708, 0.502768, 0.635961)
BASICMOTIONS_STD: tuple[float, ...] = (0.136444, 0.129125, 0.080195, 0.039244, 0.049621, 0.091444)


def _series(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split as float64 ``[N, 6, 100]`` and its label strings, as sktime ships them."""
    datasets = import_for_dataset("sktime.datasets", "sktime", NAME)
    x, y = datasets.load_basic_motions(split=split, return_type="numpy3D")
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != (CHANNELS, LENGTH):
        raise DatasetError(f"{NAME} {split}: series of shape {x.shape[1:]}, expected {(CHANNELS, LENGTH)}")
    return x, np.asarray(y).astype(str)


@functools.cache
def _splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw = {split: _series(split) for split in ("train", "test")}
    train_x = raw["train"][0]
    lo = train_x.min(axis=(0, 2), keepdims=True)
    hi = train_x.max(axis=(0, 2), keepdims=True)
    out = {}
    for split, (x, names) in raw.items():
        unknown = sorted(set(names) - set(CLASS_NAMES))
        if unknown:
            raise DatasetError(f"{NAME} {split}: unknown classes {unknown}")
        u8 = np.clip(np.floor((x - lo) / (hi - lo) * 255 + 0.5), 0, 255).astype(np.uint8)
        out[split] = (u8, np.array([CLASS_NAMES.index(n) for n in names], dtype=np.int64))
    return out


def load_basicmotions(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 series ``[N, 6, 100]`` and int64 labels ``[N]`` of the split "train" or "test"."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, labels = _splits()[split]
    return x.copy(), labels.copy()
