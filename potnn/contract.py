"""The header contract shared by `potnn.export` and the bench, importable without torch.

The export version is written into every header (POTNN_EXPORT_VERSION) and checked by the bench. The
model hash identifies a header: the firmware reports the hash it was built with, so that a run can
refuse a board that still carries another model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

EXPORT_VERSION = 2  # 2: the input lives in the model's arena (potnn_input_buffer)


def header_hash(data: bytes) -> int:
    """First 4 bytes of SHA-256 of a header's bytes, as a little-endian uint32."""
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "little")


def model_hash(path: str | Path) -> int:
    """The hash of the header file at `path` (see `header_hash`)."""
    return header_hash(Path(path).read_bytes())
