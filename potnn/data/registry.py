"""Registered datasets by name: what a zoo recipe trains on and what the bench can stream.

Each entry says what one input is (shape, uint8), what the classes are called, the normalisation
a model for it folds into its first layer, and how to load a split. `mnist16` is in the core
install; `digits8` and `basicmotions` come from packages that ship them, installed by the
``potnn[datasets]`` extra (loading one without it is a one-line DatasetError naming the extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import Config
from . import basicmotions, digits
from .arrays import ArrayDataset, array_loaders, stratified_split
from .mnist import MNIST16_MEAN, MNIST16_STD, load_mnist, mnist_loaders

Split = Literal["train", "test"]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its input, its classes, its normalisation and its loader."""

    name: str
    description: str
    input_shape: tuple[int, ...]  # one input without the batch dimension: (C, H, W) or (C, L)
    class_names: tuple[str, ...]
    mean: float | tuple[float, ...]  # of the training inputs scaled to [0, 1]: scalar or per channel
    std: float | tuple[float, ...]
    load: Callable[[Split], tuple[np.ndarray, np.ndarray]]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def config(self, **options: Any) -> Config:
        """A Config for a model of this dataset: its input shape, normalisation, class names and name, plus `options`."""
        shape = self.input_shape
        size = {"input_length": shape[1]} if len(shape) == 2 else {"input_h": shape[1], "input_w": shape[2]}
        return Config(input_channels=shape[0], mean=self.mean, std=self.std, **size,
                      **{"class_names": self.class_names, "dataset": self.name, **options})


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("mnist16", "MNIST handwritten digits, area-downsampled to 16×16", (1, 16, 16),
                tuple(str(d) for d in range(10)), MNIST16_MEAN, MNIST16_STD,
                lambda split: load_mnist(split, 16)),
    DatasetInfo(digits.NAME, "scikit-learn's 8×8 handwritten digits, ×16 to uint8, stratified 75/25 split",
                (1, 8, 8), digits.CLASS_NAMES, digits.DIGITS8_MEAN, digits.DIGITS8_STD, digits.load_digits8),
    DatasetInfo(basicmotions.NAME, "BasicMotions: 6-axis accelerometer and gyroscope, 100 samples, 4 activities",
                (basicmotions.CHANNELS, basicmotions.LENGTH), basicmotions.CLASS_NAMES,
                basicmotions.BASICMOTIONS_MEAN, basicmotions.BASICMOTIONS_STD, basicmotions.load_basicmotions),
)}


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset `name`; a KeyError lists the registered names."""
    if name not in DATASETS:
        raise KeyError(f"no dataset {name!r}; registered datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, split: Split) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(inputs uint8 ``[N, *input_shape]``, labels int64 ``[N]``, class names) of a registered dataset's split."""
    info = dataset_info(name)
    x, y = info.load(split)
    return x, y, info.class_names


def dataset_loaders(name: str, batch_size: int = 128, seed: int = 0,
                    augment: bool | Literal["shift", "affine"] = False,
                    validation: float = 0.0) -> tuple[DataLoader, DataLoader]:
    """Train and test DataLoaders of a registered dataset, normalised with its mean/std like `mnist_loaders`.

    The train loader is shuffled from a generator seeded with `seed`. `augment` True or "shift"
    moves images by ±1 pixel ("affine" is MNIST's own, see `mnist_loaders`); 1-d inputs take none.
    `validation` > 0 holds that fraction of each class of the training split out (seeded with
    `seed`) and returns it in place of the test split, so hyperparameters are chosen without the test split.
    """
    if name == "mnist16":
        return mnist_loaders(batch_size, 16, augment, seed=seed, validation=validation)
    if augment not in (False, True, "shift"):
        raise ValueError(f"dataset {name!r}: augment must be False, True or 'shift', got {augment!r}")
    info = dataset_info(name)
    train_x, train_y = info.load("train")
    test_x, test_y = info.load("test")
    if validation:
        kept, held = stratified_split(train_y, validation, seed)
        (train_x, train_y), (test_x, test_y) = (train_x[kept], train_y[kept]), (train_x[held], train_y[held])
    generator = torch.Generator().manual_seed(seed)
    max_shift = 1 if augment else 0
    train = ArrayDataset(train_x, train_y, info.mean, info.std, max_shift, generator)
    test = ArrayDataset(test_x, test_y, info.mean, info.std)
    return array_loaders(train, test, batch_size, generator)
