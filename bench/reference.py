"""Reference logits: what ``potnn.simulate`` of the model's bundle says the board must answer, input by input.

Why the run needs them: accuracy alone cannot tell a correct port from one that is off by a
rounding step on 0.3 % of inputs; comparing every logit with the integer reference can. They are
computed from the bundle beside the header (NumPy only, no torch) for exactly the inputs a run
streams, so any model runs on any data with nothing prepared beforehand.

Why a cache: simulating 10,000 inputs takes a while, and a nightly job or a resumed run asks for
the same logits again. Entries are keyed by the SHA-256 of the bundle and of the data, so a
re-exported model or edited data never meets stale logits; they live in ``$POTNN_CACHE/reference``
(default ``~/.cache/potnn/reference``), written atomically, and an unwritable cache only costs the
time to compute them again.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.atomic import atomic_open
from bench.dataset import RunData
from bench.errors import RunError
from bench.exported import BenchModel


@dataclass
class Reference:
    """Reference logits [N, K] (row i: input i of the data) and where they came from."""

    logits: np.ndarray
    source: str = "potnn.simulate"

    def __post_init__(self) -> None:
        self.logits = np.asarray(self.logits)
        if self.logits.ndim != 2 or not np.issubdtype(self.logits.dtype, np.integer):
            raise RunError(f"reference logits ({self.source}) must be an integer [N, K] array, "
                           f"got {self.logits.dtype} {self.logits.shape}")

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def predictions(self) -> np.ndarray:
        """Argmax like the C code: the first maximum wins."""
        return np.argmax(self.logits, axis=1)


def cache_dir() -> Path:
    """``$POTNN_CACHE/reference``, else ``$XDG_CACHE_HOME/potnn/reference`` (default ~/.cache)."""
    root = os.environ.get("POTNN_CACHE")
    if root:
        return Path(root) / "reference"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "potnn" / "reference"


def _cache_path(model: BenchModel, data: RunData) -> Path:
    bundle = hashlib.sha256(model.bundle.read_bytes()).hexdigest()
    return cache_dir() / f"{bundle[:24]}-{data.sha256[:24]}.npz"


def _cached(path: Path, n: int) -> np.ndarray | None:
    """Cached logits covering the first ``n`` inputs, or None (absent, too short or damaged)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            logits = np.asarray(z["logits"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return logits if logits.ndim == 2 and len(logits) >= n else None


def reference_logits(model: BenchModel, data: RunData, n: int) -> Reference:
    """``potnn.simulate(bundle, x)`` of the first ``n`` inputs of ``data`` (at least), from the cache if there."""
    n = min(max(int(n), 0), len(data))
    if n == 0:
        return Reference(np.zeros((0, model.num_classes), np.int32))
    path = _cache_path(model, data)
    logits = _cached(path, n)
    if logits is None:
        import potnn  # imported here: loading the bench must stay cheap

        logits = np.asarray(potnn.simulate(model.bundle, data.x[:n]), dtype=np.int32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb") as f:
                np.savez_compressed(f, logits=logits)
        except OSError:
            pass  # a read-only cache: the run goes on, the next one computes them again
    if logits.shape[1] != model.num_classes:
        raise RunError(f"{model.bundle.name}: potnn.simulate gives {logits.shape[1]} logits, the manifest says "
                       f"{model.num_classes} classes; re-export the model with potnn.export")
    return Reference(logits)
