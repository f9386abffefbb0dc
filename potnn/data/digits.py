"""digits8: scikit-learn's 8×8 handwritten digits (`load_digits`, 1,797 images, shipped inside the package).

The images hold 0..16 (how many of 16 pixels of a 4×4 block were ink in the 32×32 original). The
MCU takes uint8, so each value is multiplied by 16 and clipped to 255: 0 stays 0, 16 becomes 255,
and every other count keeps its exact value ×16. The train/test split is stratified: 25 % of each
class, drawn by `stratified_split` with seed 0, is the test split (451 images), the rest (1,346)
trains.
"""

from __future__ import annotations

import functools

import numpy as np

from .arrays import stratified_split
from .errors import import_for_dataset

NAME = "digits8"
CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
TEST_FRACTION = 0.25
SPLIT_SEED = 0
_SCALE = 16  # 0..16 → 0..256, clipped to 255

# Mean and population std of the training split's values scaled to [0, 1] (`pixel_stats`), rounded
# to 6 decimals; fixed here because they are folded into the first layer of an exported model.
DIGITS8_MEAN: float = 0.307083
DIGITS8_STD: float = 0.377644


@functools.cache
def _splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    bunch = import_for_dataset("sklearn.datasets", "scikit-learn", NAME).load_digits()
    images = np.minimum(np.asarray(bunch.images) * _SCALE, 255).astype(np.uint8)[:, None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


def load_digits8(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, 1, 8, 8]`` and int64 labels ``[N]`` of the split "train" or "test"."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images, labels = _splits()[split]
    return images.copy(), labels.copy()
