"""The exported model as the bench sees it: a header and the bundle (``model.potnn``) beside it.

Why the bundle and not the header's macros: the manifest says in plain JSON what one input is
(shape, layout), how many classes there are and what they are called, and which dataset the model
was trained for; and the bundle's integer program gives the logits the board must answer
(``potnn.simulate``), with NumPy alone. The header is only compiled.

Why the SHA-256 check: a header edited (or re-exported) after its bundle was written would be
measured against the answers of another model; such a pair is refused, never run.

The model hash the firmware reports (INFO) is ``potnn.contract.header_hash`` of the header's
bytes: the first four bytes of its SHA-256, read as a little-endian uint32.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potnn.bundle import BundleError, bundle_path, load_bundle
from potnn.contract import header_hash

from bench.errors import RunError


class ModelFilesError(RunError):
    """The header or its bundle cannot be used by the bench; the message is one line that says what to do."""


@dataclass(frozen=True)
class BenchModel:
    """One exported model: its header (what is built), its bundle (what it must answer) and the manifest."""

    header: Path
    bundle: Path
    manifest: dict[str, Any]
    hash: int                       # potnn.contract.header_hash of the header: what INFO reports

    @property
    def hash_hex(self) -> str:
        return f"{self.hash:08x}"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input without the batch dimension: (C, H, W) for images, (C, L) for 1-D signals."""
        return tuple(int(v) for v in self.manifest["input_shape"])

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        names = self.manifest.get("class_names")
        return None if names is None else [str(n) for n in names]

    @property
    def dataset(self) -> str | None:
        """The registered dataset the model was trained for (its test split is the default data)."""
        name = self.manifest.get("dataset")
        return None if name is None else str(name)


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    """``3×16×16``: how every message names an input shape."""
    return "×".join(str(int(v)) for v in shape)


def _reexport(header: Path) -> str:
    return f"re-export it with potnn.export(model, '{header.name}', config), which writes both"


def read_model(header: str | Path) -> BenchModel:
    """The header and its bundle, checked to belong together; a one-line ModelFilesError otherwise."""
    header = Path(header)
    if header.suffix == ".potnn":
        raise ModelFilesError(f"{header.name} is the bundle: pass the header beside it, "
                              f"--header {header.with_suffix('.h')}")
    try:
        data = header.read_bytes()
    except OSError as e:
        raise ModelFilesError(f"cannot read model header {header}: {e.strerror}") from None
    bundle = bundle_path(header)
    if not bundle.is_file():
        raise ModelFilesError(f"{header.name} has no bundle {bundle.name} beside it: {_reexport(header)}")
    try:
        manifest = load_bundle(bundle).manifest
    except BundleError as e:
        raise ModelFilesError(str(e)) from None
    if manifest.get("header_sha256") != hashlib.sha256(data).hexdigest():
        raise ModelFilesError(f"{header.name} differs from the header its bundle {bundle.name} was exported with "
                              f"(SHA-256 is not the manifest's header_sha256): {_reexport(header)}")
    shape = manifest.get("input_shape")
    if (not isinstance(shape, list) or len(shape) not in (2, 3) or manifest.get("input_size") != math.prod(shape)
            or not isinstance(manifest.get("num_classes"), int) or manifest["num_classes"] < 1):
        raise ModelFilesError(f"{bundle.name}: manifest without a valid input_shape, input_size and num_classes; "
                              f"{_reexport(header)}")
    return BenchModel(header, bundle, manifest, header_hash(data))
