"""uint8 inputs as the MCU receives them, turned into normalised training batches.

Every dataset potnn trains on is held as the raw uint8 bytes that the exported C takes (and the
bench streams); the float view ``(u8 / 255 - mean) / std`` is made per batch, so the bytes stay
the specification and the normalisation is the one the export folds into the first layer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler


def normalize(u8: np.ndarray | torch.Tensor, mean: float | torch.Tensor, std: float | torch.Tensor) -> torch.Tensor:
    """``(u8 / 255 - mean) / std`` as float32: the float view of the raw bytes the MCU receives.

    The exporter folds the same mean/std into the first layer, so training must use exactly
    this mapping. ``mean``/``std`` are scalars or tensors that broadcast against ``u8``.
    """
    pixels = torch.as_tensor(u8)
    if pixels.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 pixels, got {pixels.dtype}")
    return (pixels.to(torch.float32) / 255.0 - mean) / std


def pixel_stats(images_u8: np.ndarray) -> tuple[float, float]:
    """Mean and population std of all values scaled to [0, 1] (how MNIST16_MEAN/STD are made)."""
    scaled = images_u8.astype(np.float64) / 255.0
    return float(scaled.mean()), float(scaled.std())


def channel_stats(inputs_u8: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of ``[N, C, ...]`` values scaled to [0, 1]."""
    scaled = inputs_u8.astype(np.float64) / 255.0
    axes = (0,) + tuple(range(2, scaled.ndim))
    return tuple(float(v) for v in scaled.mean(axis=axes)), tuple(float(v) for v in scaled.std(axis=axes))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with ``round(fraction × n_c)`` of each class c held out, drawn at random.

    Classes are visited in increasing order and each draws a permutation of its indices from one
    ``np.random.RandomState(seed)``, whose stream NumPy keeps fixed across versions: the same
    labels, fraction and seed give the same split on every machine. Both index arrays are sorted.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"stratified_split: fraction must be in (0, 1), got {fraction}")
    rng = np.random.RandomState(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held.append(members[:int(np.floor(len(members) * fraction + 0.5))])
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


def _per_sample(value: float | Sequence[float], sample_dims: int) -> float | torch.Tensor:
    """A scalar as is; per-channel values as a ``[C, 1, ...]`` tensor that broadcasts over samples and batches."""
    if isinstance(value, (int, float)):
        return float(value)
    return torch.tensor([float(v) for v in value], dtype=torch.float32).view((-1,) + (1,) * (sample_dims - 1))


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """uint8 inputs ``[N, C, ...]`` (images or 1-d signals) normalised, and optionally shifted, per batch.

    Indexing takes an int (one sample) or a list of indices (a batch); the loaders of this package
    feed it index batches from a ``BatchSampler``, so normalisation and augmentation are vectorised
    per batch instead of per sample.

    Attributes:
        images_u8: uint8 ``[N, C, ...]`` - the exact bytes the bench streams to the board.
        labels: int64 ``[N]``.
        mean, std: the normalisation used (a scalar or one value per channel; fold these into the model).
        max_shift: image augmentation: random translation by up to this many pixels with zero
            (black) fill, drawn from `generator` (0 = none).
    """

    def __init__(self, images_u8: np.ndarray, labels: np.ndarray, mean: float | Sequence[float],
                 std: float | Sequence[float], max_shift: int = 0, generator: torch.Generator | None = None) -> None:
        if max_shift and images_u8.ndim != 4:
            raise ValueError(f"shift augmentation needs images [N, C, H, W], got shape {images_u8.shape}")
        self.images_u8 = images_u8
        self.labels = labels
        self.mean = mean
        self.std = std
        self.max_shift = max_shift
        self._images = torch.from_numpy(images_u8)
        self._labels = torch.from_numpy(labels)
        self._generator = generator if generator is not None else torch.Generator()
        self._mean = _per_sample(mean, images_u8.ndim - 1)
        self._std = _per_sample(std, images_u8.ndim - 1)

    def __len__(self) -> int:
        return self.images_u8.shape[0]

    def __getitem__(self, index: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize(self._augmented(index), self._mean, self._std), self._labels[index]

    def _augmented(self, index: int | list[int]) -> torch.Tensor:
        """The uint8 inputs at `index`, after the augmentation (none unless max_shift)."""
        images = self._images[index]
        if not self.max_shift:
            return images
        return self._shift(images.reshape(-1, *images.shape[-3:])).reshape(images.shape)

    def _shift(self, images: torch.Tensor) -> torch.Tensor:
        """Translate each image by random integer (dy, dx) in ±max_shift with zero (black) fill.

        Done on the uint8 bytes before normalisation so the fill is true background, and drawn
        from the loader's seeded generator so an epoch is reproducible.
        """
        batch, channels, height, width = images.shape
        m = self.max_shift
        dy, dx = torch.randint(-m, m + 1, (2, batch, 1, 1), generator=self._generator).unsqueeze(2)
        padded = torch.nn.functional.pad(images, (m, m, m, m))
        rows = torch.arange(height).view(1, 1, -1, 1) + m - dy
        cols = torch.arange(width).view(1, 1, 1, -1) + m - dx
        return padded[torch.arange(batch).view(-1, 1, 1, 1), torch.arange(channels).view(1, -1, 1, 1), rows, cols]


def array_loaders(train: ArrayDataset, test: ArrayDataset, batch_size: int,
                  generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
    """A shuffled train loader (order drawn from `generator`) and a sequential test loader."""
    train_batches = BatchSampler(RandomSampler(train, generator=generator), batch_size, drop_last=False)
    test_batches = BatchSampler(SequentialSampler(test), batch_size, drop_last=False)
    # batch_size=None: each sampler item is already a list of indices, fetched in one call.
    return (
        DataLoader(train, sampler=train_batches, batch_size=None),
        DataLoader(test, sampler=test_batches, batch_size=None),
    )
