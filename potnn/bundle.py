"""The model bundle (``model.potnn``): a manifest and the integer program, written beside each header.

It lets a bench, a report or a user's script know what a header is (input shape and layout, classes,
normalisation, sizes) and compute the answers it must give, with NumPy alone: the manifest is JSON and
the program is plain integer arrays in a zip written by ``np.savez_compressed``. It holds no pickle, so
loading a bundle never runs code from it; ``header_sha256`` ties it to the one header it describes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .contract import EXPORT_VERSION
from .program import IntOp, IntProgram, TensorSpec

FORMAT = "potnn-bundle"
SUFFIX = ".potnn"
_MANIFEST = "manifest.json"
_PROGRAM = "program.json"
_ARRAYS = "arrays"  # in program.json, per op: the names of its fields stored as arrays
_OP_FIELDS = [f.name for f in dataclasses.fields(IntOp)]
MANIFEST_KEYS = frozenset({
    "format", "export_version", "header", "header_sha256", "model_hash", "input_shape", "input_layout",
    "input_size", "num_classes", "class_names", "mean", "std", "encodings", "ram_bytes", "flash_bytes",
    "stack_bytes", "dataset", "potnn_version"})


class BundleError(ValueError):
    """A file that is not a bundle this potnn can read; the message is one line that says what to do."""


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: its manifest (the contract's keys), the integer program, and the file it came from."""

    manifest: dict[str, Any]
    program: IntProgram
    path: Path


def bundle_path(header: str | Path) -> Path:
    """Where export writes the bundle of the header at `header`: the same stem, suffix ``.potnn``."""
    return Path(header).with_suffix(SUFFIX)


def _text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode("utf-8"), dtype=np.uint8)


def _tuples(value: Any) -> Any:
    """JSON lists back into the tuples the program's dataclasses hold."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def encode_bundle(manifest: dict[str, Any], program: IntProgram) -> bytes:
    """The bytes of the bundle holding `manifest` and `program` (the caller writes them, atomically).

    The program's scalar fields go into ``program.json``; each op's NumPy arrays into an entry
    ``op<i>.<field>`` of its own, so that no value needs pickle. Each op lists its array fields, so
    that a damaged entry name is a missing array on load, not an op silently without weights.
    """
    arrays: dict[str, np.ndarray] = {}
    ops: list[dict[str, Any]] = []
    for i, op in enumerate(program.ops):
        fields: dict[str, Any] = {}
        for name in _OP_FIELDS:
            value = getattr(op, name)
            if isinstance(value, np.ndarray):
                arrays[f"op{i}.{name}"] = value
            else:
                fields[name] = value
        fields[_ARRAYS] = [name for name in _OP_FIELDS if f"op{i}.{name}" in arrays]
        ops.append(fields)
    structure = {
        "tensors": [dataclasses.asdict(t) for t in program.tensors.values()],
        "ops": ops, "input": program.input, "output": program.output, "meta": program.meta,
    }
    out = io.BytesIO()
    np.savez_compressed(out, **{_MANIFEST: _text(json.dumps(manifest)), _PROGRAM: _text(json.dumps(structure))},
                        **arrays)
    return out.getvalue()


def _program(structure: dict[str, Any], arrays: dict[str, np.ndarray]) -> IntProgram:
    tensors = {t["name"]: TensorSpec(t["name"], tuple(t["shape"]), t["lo"], t["hi"]) for t in structure["tensors"]}
    ops = []
    for i, fields in enumerate(structure["ops"]):
        values = {name: (value if name == "inputs" else _tuples(value)) for name, value in fields.items()}
        values.update({name: arrays[f"op{i}.{name}"] for name in values.pop(_ARRAYS)})
        ops.append(IntOp(**values))
    if sum(len(op[_ARRAYS]) for op in structure["ops"]) != len(arrays):
        raise KeyError("arrays that no operation names")
    return IntProgram(tensors, ops, structure["input"], structure["output"], structure["meta"])


def load_bundle(path: str | Path) -> Bundle:
    """Read the bundle at `path` with NumPy alone; a BundleError (one line) for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle (potnn.export writes model.potnn beside model.h)")
    unreadable = f"{path}: not a potnn bundle, or a damaged one"
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{unreadable} (not a zip archive); potnn.export writes model.potnn beside model.h")
    try:
        with np.load(path, allow_pickle=False) as npz:
            entries = {name: npz[name] for name in npz.files}
    except Exception as e:  # damaged bytes fail anywhere: zipfile, zlib, the .npy header parser
        why = " ".join(str(e).split())  # one line, whatever bytes a damaged entry name holds
        raise BundleError(f"{unreadable} ({type(e).__name__}: {why}); export the model again") from None
    if _MANIFEST not in entries or _PROGRAM not in entries:
        raise BundleError(f"{path}: not a potnn bundle (no {_MANIFEST}); potnn.export writes one beside each header")
    try:
        manifest = json.loads(entries.pop(_MANIFEST).tobytes().decode("utf-8"))
        structure = json.loads(entries.pop(_PROGRAM).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError(f"{path}: damaged bundle (its manifest is not JSON); export the model again") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != FORMAT:
        raise BundleError(f"{path}: not a potnn bundle (format {found!r}, expected {FORMAT!r})")
    if manifest.get("export_version") != EXPORT_VERSION:
        raise BundleError(f"{path}: bundle of export version {manifest.get('export_version')!r}, this potnn reads "
                          f"version {EXPORT_VERSION}; export the model again with this potnn")
    missing = sorted(MANIFEST_KEYS - set(manifest))
    if missing:
        raise BundleError(f"{path}: damaged bundle (its manifest lacks {', '.join(missing)}); export the model again")
    if any(not np.issubdtype(a.dtype, np.integer) for a in entries.values()):
        raise BundleError(f"{path}: damaged bundle (a program array is not integer); export the model again")
    try:
        program = _program(structure, entries)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BundleError(f"{path}: damaged bundle (its program does not read: {type(e).__name__}); "
                          "export the model again") from None
    return Bundle(manifest, program, path)


__all__ = ["Bundle", "BundleError", "FORMAT", "MANIFEST_KEYS", "SUFFIX", "bundle_path", "encode_bundle", "load_bundle"]
