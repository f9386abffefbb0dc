"""MNIST from the original IDX files, the 28x28 -> 16x16 input transform, and its DataLoaders.

The MCU models take 16x16 uint8 images. The bench streams exactly the bytes produced by
:func:`downsample` to the board, so that transform is part of the specification and is computed
exactly (independent of BLAS summation order).

Files are looked for in ``$POTNN_DATA`` (relative paths resolved against the current
directory), then in the user cache (``$XDG_CACHE_HOME/potnn/mnist``, default
``~/.cache/potnn/mnist``); when absent they are downloaded into the cache. Every file's md5 is
checked (once per process per file version), so a corrupt or wrong file is a clear error rather
than a silently different accuracy.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import urllib.request
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from .arrays import ArrayDataset, array_loaders, pixel_stats, stratified_split
from .errors import DatasetError

# md5 of the four original files, as published with the dataset.
_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Public mirrors of the original files (yann.lecun.com itself refuses automated downloads).
_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_DOWNLOAD_TIMEOUT_S = 60
_MNIST_SIDE = 28
_NUM_CLASSES = 10
_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST uses.
_MAX_EXACT_SIDE = 256  # 255 * 256**2 < 2**24: the largest side downsample computes exactly.
_DOWNSAMPLE_CHUNK = 8192  # images per float32 block, bounding memory to ~25 MB at 28x28.

# Mean and (population, ddof=0) std of all 16x16 training pixels scaled to [0, 1], i.e.
# ``pixel_stats(load_mnist("train", 16)[0])`` on the md5-verified original files, rounded to
# 6 decimals. Fixed here because they are folded into the first layer of every exported model.
MNIST16_MEAN: float = 0.130658
MNIST16_STD: float = 0.275077


def _cache_dir() -> Path:
    """The download cache, honouring XDG_CACHE_HOME like other user-level tools."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "potnn" / "mnist"


@functools.cache
def _file_md5(path: str, size: int, mtime_ns: int) -> str:
    """md5 of a file, memoised on (path, size, mtime) so each file version is hashed once."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, name: str) -> None:
    """Raise DatasetError unless ``path`` has the published md5 of ``name``."""
    stat = path.stat()
    actual = _file_md5(str(path), stat.st_size, stat.st_mtime_ns)
    if actual != _MD5[name]:
        raise DatasetError(
            f"{path} fails its checksum (md5 {actual}, expected {_MD5[name]}); "
            "the file is corrupt or not the original MNIST file: delete or replace it"
        )


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` (network errors propagate as OSError)."""
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(dest, "wb") as f:
        for block in iter(lambda: response.read(1 << 20), b""):
            f.write(block)


def _fetch_into_cache(name: str, cache: Path, searched: list[Path]) -> Path:
    """Download ``name`` into ``cache`` from the first mirror that serves the right bytes.

    The file is written under a temporary name and renamed only after its md5 matches, so an
    interrupted or wrong download never leaves a file that looks valid.
    """
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / name
    partial = cache / (name + ".part")
    reasons: list[str] = []
    for mirror in _MIRRORS:
        try:
            _download(mirror + name, partial)
            _verify(partial, name)
        except (OSError, DatasetError) as exc:
            reasons.append(f"{mirror}: {exc}")
            partial.unlink(missing_ok=True)
            continue
        os.replace(partial, dest)
        return dest
    why = "; ".join(reasons).replace("\n", " ")
    where = ", ".join(str(folder) for folder in searched)
    raise DatasetError(
        f"MNIST file {name} not found in {where} and could not be downloaded ({why}); "
        "set POTNN_DATA to a folder holding the four MNIST IDX .gz files"
    )


def mnist_file(name: str, root: str | Path | None = None) -> Path:
    """Path of the md5-verified MNIST file ``name``, downloading it into the cache if needed.

    With ``root`` given only that folder is searched (and downloaded into). Otherwise
    ``$POTNN_DATA`` then the cache; a file that is found but corrupt is an error, never
    silently replaced.
    """
    if name not in _MD5:
        raise ValueError(f"unknown MNIST file {name!r}; expected one of {sorted(_MD5)}")
    if root is not None:
        folders = [Path(root).expanduser().resolve()]
    else:
        env = os.environ.get("POTNN_DATA")
        folders = ([Path(env).expanduser().resolve()] if env else []) + [_cache_dir()]
    for folder in folders:
        path = folder / name
        if path.is_file():
            _verify(path, name)
            return path
    return _fetch_into_cache(name, folders[-1], folders)


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes with ``ndim`` dimensions.

    Strict on purpose: the magic number must be ``0x0000 08 <ndim>`` and the payload must hold
    exactly the product of the header's dimensions, so a truncated or mislabelled file fails
    here instead of yielding a short or scrambled dataset.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise DatasetError(
            f"{path}: bad IDX magic {raw[:4].hex()} (expected 000008{ndim:02x}: ubyte, {ndim}-D)"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetError(f"{path}: IDX header truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = len(raw) - header_len
    if payload != int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX dims {dims} need {int(np.prod(dims))} bytes, file has {payload}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _area_counts(n_in: int, n_out: int) -> np.ndarray:
    """Integer weights ``C`` with ``A = C / n_in``: overlaps measured in units of 1/n_out pixel.

    Output pixel i covers input span [i*n_in, (i+1)*n_in) and input pixel j covers
    [j*n_out, (j+1)*n_out) in those units, so every overlap is an integer and each row sums to n_in.
    """
    i = np.arange(n_out)[:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.minimum((i + 1) * n_in, (j + 1) * n_out) - np.maximum(i * n_in, j * n_out)
    return np.clip(overlap, 0, None)


def downsample(images_u8: np.ndarray, size: int) -> np.ndarray:
    """Resize square uint8 images ``[..., n, n]`` (MNIST: n=28) to ``[..., size, size]``.

    Definition (exact area / box-filter averaging): output pixel (r, c) is the average of the
    input image over the square it covers, ``[r*n/size, (r+1)*n/size) x [c*n/size, (c+1)*n/size)``
    in input pixel units, each input pixel weighted by the (possibly fractional) area it shares
    with that square. Separably, ``Y = A @ X @ A.T`` with the fixed float64 matrix
    ``A[i, j] = |[i*n/size, (i+1)*n/size) ∩ [j, j+1)| / (n/size)`` (rows sum to 1), and the
    result is rounded half-up: ``out = floor(Y + 1/2)`` as uint8.

    Computed exactly: ``A = C / n`` with integer ``C`` (see :func:`_area_counts`), so every
    product and partial sum of ``Z = C @ X @ C.T`` is a non-negative integer at most
    ``255 * n * n < 2**24`` - exact in float32 in any BLAS summation order - and the rounding
    ``floor((2*Z + n*n) / (2*n*n))`` is done in integers. Ties therefore round up on every
    machine, which a float product with the inexact ``A`` could not guarantee.
    """
    if images_u8.dtype != np.uint8:
        raise ValueError(f"downsample expects uint8 images, got {images_u8.dtype}")
    if images_u8.ndim < 2 or images_u8.shape[-1] != images_u8.shape[-2]:
        raise ValueError(f"downsample expects square images [..., n, n], got {images_u8.shape}")
    n = images_u8.shape[-1]
    if not 1 <= n <= _MAX_EXACT_SIDE or size < 1:
        raise ValueError(f"need 1 <= n <= {_MAX_EXACT_SIDE} and size >= 1, got n={n}, size={size}")
    counts_t = _area_counts(n, size).T.astype(np.float32)
    denominator = n * n
    rows = images_u8.reshape(-1, n)  # every image row, all images stacked
    out = np.empty((rows.shape[0] // n, size, size), dtype=np.uint8)
    for start in range(0, out.shape[0], _DOWNSAMPLE_CHUNK):
        block = rows[start * n : (start + _DOWNSAMPLE_CHUNK) * n].astype(np.float32)
        # (X C^T)^T C^T = (C X C^T)^T for each image, as two large matrix products.
        w = (block @ counts_t).reshape(-1, n, size).transpose(0, 2, 1).reshape(-1, n)
        z = (w @ counts_t).reshape(-1, size, size).transpose(0, 2, 1).astype(np.int64)
        out[start : start + _DOWNSAMPLE_CHUNK] = (2 * z + denominator) // (2 * denominator)
    return out.reshape(*images_u8.shape[:-2], size, size)


def load_mnist(
    split: Literal["train", "test"], size: int = 16, root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split: uint8 images ``[N, 1, size, size]`` and int64 labels ``[N]``.

    ``size=28`` returns the original images; other sizes go through :func:`downsample`.
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    image_name, label_name = _SPLIT_FILES[split]
    images = read_idx(mnist_file(image_name, root), ndim=3)
    labels = read_idx(mnist_file(label_name, root), ndim=1)
    if images.shape[1:] != (_MNIST_SIDE, _MNIST_SIDE) or images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"MNIST {split}: images {images.shape} and labels {labels.shape} do not match"
        )
    if labels.max(initial=0) >= _NUM_CLASSES:
        raise DatasetError(f"MNIST {split}: label {labels.max()} out of range 0..9")
    # frombuffer arrays are read-only views of the file bytes; both branches return a new array.
    images = downsample(images[:, None], size) if size != _MNIST_SIDE else images[:, None].copy()
    return images, labels.astype(np.int64)


class MNISTDataset(ArrayDataset):
    """MNIST held as raw uint8 bytes ``[N, 1, S, S]``, normalised (and optionally moved) per batch.

    An `ArrayDataset` (shift augmentation, per-batch normalisation) that can also move each digit
    on its 28×28 original before the downsampling (`_affine`).

    Attributes (besides ArrayDataset's):
        originals_u8: the 28×28 originals when the augmentation is "affine" (else None).
    """

    def __init__(
        self,
        images_u8: np.ndarray,
        labels: np.ndarray,
        mean: float,
        std: float,
        max_shift: int,
        generator: torch.Generator,
        originals_u8: np.ndarray | None = None,
    ) -> None:
        super().__init__(images_u8, labels, mean, std, max_shift, generator)
        self.originals_u8 = originals_u8
        self._originals = None if originals_u8 is None else torch.from_numpy(originals_u8)
        size = images_u8.shape[-1]
        self._area = torch.from_numpy(_area_counts(_MNIST_SIDE, size) / _MNIST_SIDE).float()

    def _augmented(self, index: int | list[int]) -> torch.Tensor:
        if self._originals is None:
            return super()._augmented(index)
        originals = self._originals[index]
        return self._affine(originals.reshape(-1, *originals.shape[-3:])).reshape(self._images[index].shape)

    def _affine(self, originals: torch.Tensor) -> torch.Tensor:
        """Random rotation (±12°), scale (±10 %) and translation (±2 px) of each 28×28 original,
        then the same area downsampling as `downsample` (in float32, rounded half up) to uint8.

        Augmenting before the downsampling keeps the training images what the bench streams: uint8
        pixels made by the one documented transform, only from moved digits.
        """
        batch = originals.shape[0]
        g = self._generator
        angle = (torch.rand(batch, generator=g) * 2 - 1) * (12 * math.pi / 180)
        scale = 1 + (torch.rand(batch, generator=g) * 2 - 1) * 0.10
        shift = (torch.rand(2, batch, generator=g) * 2 - 1) * (2 * 2 / _MNIST_SIDE)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)
        grid = torch.nn.functional.affine_grid(theta, [batch, 1, _MNIST_SIDE, _MNIST_SIDE], align_corners=False)
        warped = torch.nn.functional.grid_sample(originals.float(), grid, mode="bilinear", padding_mode="zeros",
                                                 align_corners=False)
        small = self._area @ warped @ self._area.T
        return torch.floor(small + 0.5).clamp(0, 255).to(torch.uint8)


def mnist_loaders(
    batch_size: int = 128,
    size: int = 16,
    augment: bool | Literal["shift", "affine"] = False,
    root: str | Path | None = None,
    seed: int = 0,
    validation: float = 0.0,
) -> tuple[DataLoader, DataLoader]:
    """Train and test DataLoaders yielding ``(x, label)``, ``x`` float32 ``[B, 1, size, size]``.

    ``x = (u8/255 - mean)/std`` with ``MNIST16_MEAN``/``MNIST16_STD`` at size 16 (the exported
    constants) and the training split's own statistics at other sizes. The train loader is
    shuffled; ``augment`` (True or "shift") adds random ±1 px shifts at 16x16 (scaled with ``size``);
    "affine" moves each 28×28 original (see `MNISTDataset._affine`) before downsampling. Shuffling and
    augmentation draw from one generator seeded with ``seed``, so runs are reproducible.
    ``validation`` > 0 holds that fraction of each class of the training split out (`stratified_split`,
    seeded with ``seed``) and returns it in place of the test split, for choosing hyperparameters.
    The datasets (``loader.dataset``) expose ``images_u8``, ``labels``, ``mean`` and ``std``.
    """
    train_images, train_labels = load_mnist("train", size, root)
    test_images, test_labels = load_mnist("test", size, root)
    mean, std = (MNIST16_MEAN, MNIST16_STD) if size == 16 else pixel_stats(train_images)
    generator = torch.Generator().manual_seed(seed)
    if augment not in (False, True, "shift", "affine"):
        raise ValueError(f"augment must be False, True, 'shift' or 'affine', got {augment!r}")
    max_shift = max(1, round(size / 16)) if augment in (True, "shift") else 0
    originals = load_mnist("train", _MNIST_SIDE, root)[0] if augment == "affine" else None
    if validation:
        kept, held = stratified_split(train_labels, validation, seed)
        test_images, test_labels = train_images[held], train_labels[held]
        train_images, train_labels = train_images[kept], train_labels[kept]
        originals = None if originals is None else originals[kept]
    train = MNISTDataset(train_images, train_labels, mean, std, max_shift, generator, originals)
    test = MNISTDataset(test_images, test_labels, mean, std, 0, generator)
    return array_loaders(train, test, batch_size, generator)
