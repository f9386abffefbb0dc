"""Tests for potnn.data: IDX parsing, checksums, download fallback, downsample, MNIST loaders."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import potnn.data.mnist as mnist_module
from potnn.data import (
    MNIST16_MEAN,
    MNIST16_STD,
    DatasetError,
    MNISTDataset,
    downsample,
    load_mnist,
    mnist_file,
    mnist_loaders,
    normalize,
    pixel_stats,
    read_idx,
)

# The published md5 of the original files (independent copy of the spec, not read from potnn).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def _real_mnist_dir() -> Path | None:
    env = os.environ.get("POTNN_DATA")
    if not env:
        return None
    folder = Path(env).resolve()
    return folder if all((folder / name).is_file() for name in MNIST_MD5) else None


REAL = _real_mnist_dir()
needs_mnist = pytest.mark.skipif(
    REAL is None, reason="POTNN_DATA unset or does not hold the four MNIST .gz files"
)


def _write_gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def _idx(magic: bytes, dims: tuple[int, ...], body: bytes) -> bytes:
    return magic + b"".join(d.to_bytes(4, "big") for d in dims) + body


# --- IDX parsing ---------------------------------------------------------------------------


def test_read_idx_synthetic(tmp_path: Path) -> None:
    body = bytes(range(24))
    path = _write_gz(tmp_path / "x.gz", _idx(b"\x00\x00\x08\x03", (2, 3, 4), body))
    arr = read_idx(path, ndim=3)
    assert arr.dtype == np.uint8 and arr.shape == (2, 3, 4)
    np.testing.assert_array_equal(arr.ravel(), np.arange(24))
    labels = _write_gz(tmp_path / "y.gz", _idx(b"\x00\x00\x08\x01", (3,), b"\x07\x00\x09"))
    np.testing.assert_array_equal(read_idx(labels, ndim=1), [7, 0, 9])


@pytest.mark.parametrize(
    "raw",
    [
        _idx(b"\x00\x00\x08\x01", (24,), bytes(24)),  # 1-D where 3-D expected
        _idx(b"\x00\x00\x0d\x03", (2, 3, 4), bytes(24 * 4)),  # float type code
        _idx(b"\x01\x00\x08\x03", (2, 3, 4), bytes(24)),  # non-zero leading bytes
        _idx(b"\x00\x00\x08\x03", (2, 3, 4), bytes(23)),  # payload short by one
        _idx(b"\x00\x00\x08\x03", (2, 3, 4), bytes(25)),  # payload long by one
        b"\x00\x00\x08\x03" + bytes(6),  # header truncated
        b"\x00\x00",  # magic truncated
    ],
)
def test_read_idx_rejects_malformed(tmp_path: Path, raw: bytes) -> None:
    path = _write_gz(tmp_path / "bad.gz", raw)
    with pytest.raises(DatasetError):
        read_idx(path, ndim=3)


# --- locating, checksums, download ---------------------------------------------------------


def test_checksum_mismatch_is_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _write_gz(folder / "train-labels-idx1-ubyte.gz", _idx(b"\x00\x00\x08\x01", (1,), b"\x03"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POTNN_DATA", "data")  # relative: resolved against the working directory
    with pytest.raises(DatasetError, match="checksum") as err:
        mnist_file("train-labels-idx1-ubyte.gz")
    assert str(folder / "train-labels-idx1-ubyte.gz") in str(err.value)


def test_offline_error_names_potnn_data_mocked_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    def blocked(url: str, dest: Path) -> None:
        attempts.append(url)
        raise OSError("network unreachable\n(blocked by test)")

    monkeypatch.delenv("POTNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist_module, "_download", blocked)
    with pytest.raises(DatasetError) as err:
        load_mnist("test")
    message = str(err.value)
    assert "POTNN_DATA" in message and "t10k-images-idx3-ubyte.gz" in message
    assert "\n" not in message
    assert attempts and all(url.endswith("t10k-images-idx3-ubyte.gz") for url in attempts)
    assert not any((tmp_path / "cache" / "potnn" / "mnist").iterdir())


def test_download_with_bad_checksum_is_error_mocked_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wrong_bytes(url: str, dest: Path) -> None:
        dest.write_bytes(b"<html>not mnist</html>")

    monkeypatch.delenv("POTNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(mnist_module, "_download", wrong_bytes)
    with pytest.raises(DatasetError, match="checksum"):
        mnist_file("t10k-labels-idx1-ubyte.gz")
    assert not any((tmp_path / "potnn" / "mnist").iterdir())


@needs_mnist
def test_download_into_cache_mocked_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert REAL is not None

    def from_local_copy(url: str, dest: Path) -> None:
        shutil.copyfile(REAL / url.rsplit("/", 1)[1], dest)

    monkeypatch.delenv("POTNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(mnist_module, "_download", from_local_copy)
    images, labels = load_mnist("test", size=16)
    assert images.shape == (10000, 1, 16, 16) and labels.shape == (10000,)
    cached = sorted(p.name for p in (tmp_path / "potnn" / "mnist").iterdir())
    assert cached == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


# --- downsample ----------------------------------------------------------------------------


def _reference_area_matrix(n: int, size: int) -> np.ndarray:
    """Independent float64 construction of A from its definition (overlap of intervals)."""
    a = np.zeros((size, n))
    step = n / size
    for i in range(size):
        for j in range(n):
            a[i, j] = max(0.0, min((i + 1) * step, j + 1) - max(i * step, j)) / step
    return a


def test_downsample_hand_computed() -> None:
    # 3 -> 2: A = [[2/3, 1/3, 0], [0, 1/3, 2/3]]; Y = A X A^T = [[4 + 1, 1], [1, 1]].
    x = np.array([[9, 0, 0], [0, 9, 0], [0, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(downsample(x, 2), [[5, 1], [1, 1]])
    # 2 -> 1 is the mean of four pixels, rounded half-up: 0.5 -> 1, 0.25 -> 0, 254.75 -> 255.
    for block, expected in (([[0, 1], [0, 1]], 1), ([[1, 0], [0, 0]], 0), ([[255, 255], [255, 254]], 255),
                            ([[2, 3], [2, 2]], 2), ([[1, 2], [2, 2]], 2)):
        assert downsample(np.array(block, dtype=np.uint8), 1)[0, 0] == expected


def test_downsample_properties() -> None:
    rng = np.random.default_rng(0)
    for value in (0, 1, 77, 128, 255):
        const = np.full((2, 1, 28, 28), value, dtype=np.uint8)
        for size in (1, 7, 16, 20):
            out = downsample(const, size)
            assert out.shape == (2, 1, size, size) and out.dtype == np.uint8
            assert (out == value).all()
    images = rng.integers(0, 256, size=(50, 1, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(downsample(images, 16), downsample(images.copy(), 16))
    np.testing.assert_array_equal(downsample(images, 28), images)
    with pytest.raises(ValueError):
        downsample(images.astype(np.float32), 16)


def test_downsample_matches_float_definition_away_from_ties() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(200, 1, 28, 28), dtype=np.uint8)
    a = _reference_area_matrix(28, 16)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    y = a @ images.astype(np.float64) @ a.T
    differs = downsample(images, 16) != np.floor(y + 0.5)
    assert np.all(np.abs(y[differs] % 1 - 0.5) < 1e-9)


# --- normalisation and datasets ------------------------------------------------------------


def test_normalize() -> None:
    out = normalize(np.array([0, 51, 255], dtype=np.uint8), 0.2, 0.5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([-0.4, 0.0, 1.6]))
    with pytest.raises(ValueError):
        normalize(np.array([0.5]), 0.0, 1.0)


def _shift_with_zero_fill(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_augmentation_is_a_small_zero_filled_shift_and_seeded() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(1, 256, size=(64, 1, 16, 16), dtype=np.uint8)
    labels = np.arange(64, dtype=np.int64)

    def batch(seed: int) -> torch.Tensor:
        ds = MNISTDataset(images, labels, 0.0, 1.0, 1, torch.Generator().manual_seed(seed))
        x, y = ds[list(range(64))]
        assert torch.equal(y, torch.from_numpy(labels))
        return x

    x = batch(0)
    pixels = np.rint(x.numpy() * 255).astype(np.uint8)
    shifts = set()
    for k in range(64):
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if np.array_equal(pixels[k, 0], _shift_with_zero_fill(images[k, 0], dy, dx))]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 3
    assert torch.equal(batch(0), x) and not torch.equal(batch(1), x)


def test_dataset_without_augmentation_is_plain_normalisation() -> None:
    images = np.arange(2 * 16 * 16, dtype=np.uint8).reshape(2, 1, 16, 16)
    ds = MNISTDataset(images, np.array([3, 4]), 0.1, 0.3, 0, torch.Generator())
    x, y = ds[1]
    assert x.shape == (1, 16, 16) and int(y) == 4
    torch.testing.assert_close(x, normalize(images[1], 0.1, 0.3))


# --- the real files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train16() -> tuple[np.ndarray, np.ndarray]:
    return load_mnist("train", size=16)


@needs_mnist
def test_real_files_md5() -> None:
    assert REAL is not None
    for name, md5 in MNIST_MD5.items():
        assert hashlib.md5((REAL / name).read_bytes()).hexdigest() == md5
        assert mnist_file(name) == REAL / name


@needs_mnist
def test_real_mnist_shapes(train16: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = train16
    assert images.shape == (60000, 1, 16, 16) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int64
    counts = np.bincount(labels, minlength=10)
    assert counts.size == 10 and counts.sum() == 60000 and counts.min() > 5000
    test_images, test_labels = load_mnist("test", size=28)
    assert test_images.shape == (10000, 1, 28, 28) and np.bincount(test_labels).sum() == 10000


@needs_mnist
def test_mnist16_constants(train16: tuple[np.ndarray, np.ndarray]) -> None:
    mean, std = pixel_stats(train16[0])
    assert mean == pytest.approx(MNIST16_MEAN, abs=1e-6)
    assert std == pytest.approx(MNIST16_STD, abs=1e-6)


@needs_mnist
def test_mnist_loaders() -> None:
    train, test = mnist_loaders(batch_size=100, seed=5)
    x, y = next(iter(test))
    assert x.shape == (100, 1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert np.array_equal(y.numpy(), test.dataset.labels[:100])
    torch.testing.assert_close(x, normalize(test.dataset.images_u8[:100], MNIST16_MEAN, MNIST16_STD))
    assert len(train) == 600 and len(test) == 100
    first = next(iter(train))[1]
    assert not torch.equal(first, torch.from_numpy(train.dataset.labels[:100]))
    again = next(iter(mnist_loaders(batch_size=100, seed=5)[0]))[1]
    assert torch.equal(first, again)
