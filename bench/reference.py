"""Reference logits: what ``potnn.simulate`` says the board must answer, image by image.

Why the run needs them: accuracy alone cannot tell a correct port from one that is off by a
rounding step on 0.3 % of images; comparing every logit with the integer reference can.

Where they come from, in order of preference:

1. ``<header stem>.ref.npz`` next to the header (``model.h`` -> ``model.ref.npz``), written when
   the model was exported (``write_reference``). Arrays:

   - ``logits``: int32 [N, K], ``potnn.simulate`` of the MNIST 16x16 test set, in test-set order;
   - ``images_sha256``: 0-d str, SHA-256 of the uint8 [N,1,16,16] C-contiguous image array the
     logits were computed on, so logits computed on other images (another resize, another
     split) are refused rather than silently compared.

   A header alone on a board then carries everything a run needs, with no PyTorch.
2. A potnn model object (``Reference.from_model``): logits computed now with ``potnn.simulate``.
3. Any callable images -> logits, or an array (``Reference.from_callable`` / ``from_array``),
   for tests and for headers that did not come from potnn.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


class ReferenceError(Exception):
    """The reference logits are missing or do not belong to these images; one-line message."""


def images_sha256(images: np.ndarray) -> str:
    """Digest of the exact pixels (dtype, shape and order fixed) the logits belong to."""
    arr = np.ascontiguousarray(images, dtype=np.uint8)
    h = hashlib.sha256()
    h.update(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def reference_path(header: Path) -> Path:
    """``model.h`` -> ``model.ref.npz`` (same directory)."""
    header = Path(header)
    return header.with_name(header.name.rsplit(".", 1)[0] + ".ref.npz")


@dataclass
class Reference:
    """Reference logits [N, K] for the images whose digest is ``images_sha256`` (None: unchecked)."""

    logits: np.ndarray
    images_sha256: str | None = None
    source: str = "array"

    def __post_init__(self) -> None:
        self.logits = np.asarray(self.logits)
        if self.logits.ndim != 2 or not np.issubdtype(self.logits.dtype, np.integer):
            raise ReferenceError(f"reference logits ({self.source}) must be an integer [N, K] array, "
                                 f"got {self.logits.dtype} {self.logits.shape}")

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def check_images(self, images: np.ndarray) -> None:
        """Refuse to compare against logits computed on other images."""
        if len(images) > len(self.logits):
            raise ReferenceError(f"reference ({self.source}) has logits for {len(self.logits)} images, "
                                 f"the run needs {len(images)}")
        if self.images_sha256 is not None and len(images) == len(self.logits):
            got = images_sha256(images)
            if got != self.images_sha256:
                raise ReferenceError(f"reference ({self.source}) was computed on other images "
                                     f"(images_sha256 {self.images_sha256[:12]} != {got[:12]})")

    def predictions(self) -> np.ndarray:
        """Argmax like the C code: the first maximum wins."""
        return np.argmax(self.logits, axis=1)

    @classmethod
    def from_array(cls, logits: Any, images: np.ndarray | None = None) -> "Reference":
        return cls(np.asarray(logits), images_sha256(images) if images is not None else None, "array")

    @classmethod
    def from_callable(cls, fn: Callable[[np.ndarray], Any], images: np.ndarray) -> "Reference":
        return cls(np.asarray(fn(images)), images_sha256(images), getattr(fn, "__name__", "callable"))

    @classmethod
    def from_model(cls, model: Any, images: np.ndarray) -> "Reference":
        """Compute with ``potnn.simulate`` (the specification of what the C code must return)."""
        import potnn  # imported here: a header-only run must not need torch

        return cls(np.asarray(potnn.simulate(model, images)), images_sha256(images), "potnn.simulate")

    @classmethod
    def load(cls, path: Path) -> "Reference":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                logits = np.asarray(z["logits"])
                digest = str(z["images_sha256"]) if "images_sha256" in z.files else None
        except FileNotFoundError:
            raise ReferenceError(f"{path}: missing") from None
        except KeyError:
            raise ReferenceError(f"{path}: no 'logits' array") from None
        except Exception as e:  # a damaged archive raises zipfile/ValueError/OSError variants
            raise ReferenceError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
        return cls(logits, digest, str(path))


def for_header(header: Path) -> Reference:
    """The reference stored next to a header, or a ReferenceError that says how to make one."""
    path = reference_path(header)
    if not path.exists():
        raise ReferenceError(
            f"no reference logits for {header}: expected {path.name} next to it "
            "(bench.reference.write_reference(header, potnn.simulate(model, images), images)); "
            "or pass --no-reference to run without comparing logits")
    return Reference.load(path)


def write_reference(header: Path, logits: np.ndarray, images: np.ndarray) -> Path:
    """Store reference logits next to a header (what export should do for zoo models)."""
    path = reference_path(header)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, logits=np.asarray(logits, dtype=np.int32),
                            images_sha256=np.array(images_sha256(images)))
    os.replace(tmp, path)
    return path
