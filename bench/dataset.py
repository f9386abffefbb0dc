"""The test data a run streams: the user's own arrays (``--data test.npz``) or a registered dataset.

A ``.npz`` holds ``x``, uint8 ``[N, *input_shape]`` (the exact bytes each input is on the
microcontroller), and optionally ``y``, integer labels ``[N]``; ``np.savez("test.npz", x=x, y=y)``
writes one. A registered name (``mnist16``, ``digits8``, ``basicmotions``: ``potnn.data``'s
registry) streams that dataset's test split. Without ``--data`` a run streams the test split of
the dataset the model's manifest names.

Why everything is checked here, before anything is built: a shape the model does not take, a
float array or labels out of range would otherwise surface minutes later as NAKs from the board
or as nonsense accuracy; each is one line that names what is wrong and what to pass instead.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.exported import BenchModel, shape_text
from bench.errors import RunError

NPZ_HELP = "np.savez('test.npz', x=inputs_uint8, y=labels)"


class DataError(RunError):
    """The test data cannot be streamed to this model; one line that says what to pass instead."""


@dataclass(frozen=True)
class RunData:
    """Inputs (uint8 ``[N, *input_shape]``), labels (int64 ``[N]``, or None) and what they are called."""

    name: str                 # a registered dataset's name, or the .npz file's name
    x: np.ndarray
    y: np.ndarray | None
    sha256: str               # of the inputs and labels: the identity of a run's data

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.x.shape[1:])

    def __len__(self) -> int:
        return int(self.x.shape[0])


def data_sha256(x: np.ndarray, y: np.ndarray | None) -> str:
    """Digest of the exact inputs (shape and bytes) and labels: equal digests, equal data."""
    h = hashlib.sha256()
    h.update(repr(tuple(x.shape)).encode())
    h.update(np.ascontiguousarray(x, dtype=np.uint8).tobytes())
    if y is not None:
        h.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return h.hexdigest()


def _from_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.is_file() and not zipfile.is_zipfile(path):     # e.g. a .npy: np.load reads it, as one array
        raise DataError(f"{path.name} is not a .npz (an archive of named arrays): write it with {NPZ_HELP}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(getattr(z, "files", ()))
            if "x" not in files:
                raise DataError(f"{path.name} has no array 'x' (it holds {', '.join(sorted(files)) or 'none'}): "
                                f"write it with {NPZ_HELP}")
            return np.asarray(z["x"]), (np.asarray(z["y"]) if "y" in files else None)
    except FileNotFoundError:
        raise DataError(f"--data {path}: no such file (a .npz, or a registered dataset name)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path.name} is not a readable .npz ({type(e).__name__}): write it with {NPZ_HELP}") from None


def _registered(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The test split of a registered dataset (potnn.data, imported here: it needs torch)."""
    try:
        from potnn.data import DATASETS, DatasetError, load_dataset
    except ImportError as e:
        raise DataError(f"--data {name}: registered datasets need potnn's training install ({e}); "
                        f"pass a .npz instead ({NPZ_HELP})") from None
    if name not in DATASETS:
        raise DataError(f"--data {name}: no such file, and no registered dataset of that name "
                        f"(registered: {', '.join(DATASETS)}); pass a .npz written with {NPZ_HELP}")
    try:
        x, y, _ = load_dataset(name, "test")
    except DatasetError as e:
        raise DataError(str(e)) from None
    return x, y


def _check(name: str, x: np.ndarray, y: np.ndarray | None, model: BenchModel) -> None:
    """Refuse data this model cannot take, in one line naming both sides."""
    if x.dtype != np.uint8:
        raise DataError(f"{name}: x is {x.dtype}, the board takes uint8 inputs (the raw bytes it receives); "
                        "convert with x.astype(np.uint8) after scaling to 0..255")
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{name}: x must be [N, *input_shape] with N >= 1, got shape {x.shape}")
    if tuple(x.shape[1:]) != model.input_shape:
        raise DataError(f"{name}: inputs are {shape_text(x.shape[1:])}, but {model.header.name} takes "
                        f"{shape_text(model.input_shape)} (its manifest's input_shape): pass data of that shape")
    if y is None:
        return
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise DataError(f"{name}: y must be integer labels [N] = [{x.shape[0]}], got {y.dtype} {y.shape}")
    bad = (y < 0) | (y >= model.num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name}: label {int(y[i])} at index {i} is out of range: {model.header.name} has "
                        f"{model.num_classes} classes (0..{model.num_classes - 1})")


def load_data(spec: str | Path | tuple[np.ndarray, np.ndarray | None] | None, model: BenchModel) -> RunData:
    """The data ``--data`` names (None: the manifest's dataset), or given arrays, checked against ``model``."""
    if isinstance(spec, tuple):
        x, y = (np.asarray(a) if a is not None else None for a in spec)
        return _checked("arrays", x, y, model)
    if spec is None:
        if model.dataset is None:
            raise DataError(f"{model.header.name} names no dataset in its manifest: pass --data test.npz "
                            f"(written with {NPZ_HELP}) or --data with a registered dataset name")
        spec = model.dataset
    path = Path(spec)
    if path.suffix == ".npz" or path.is_file():
        name = path.name
        x, y = _from_npz(path)
    else:
        name = str(spec)
        x, y = _registered(name)
    return _checked(name, x, y, model)


def _checked(name: str, x: np.ndarray, y: np.ndarray | None, model: BenchModel) -> RunData:
    """The data once checked, in the one layout the stream and the digest use (C-contiguous, int64 labels)."""
    _check(name, x, y, model)
    x = np.ascontiguousarray(x)
    y = None if y is None else y.astype(np.int64)
    return RunData(name, x, y, data_sha256(x, y))
