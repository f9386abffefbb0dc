"""`potnn.export`: one standalone C99 header that runs the integer model with shifts and adds only.

The header depends on `<stdint.h>` alone, allocates nothing, uses no floating point, and its inference
code has no multiplication or division: every weight is a shift (unrolled into code, or decoded from a
packed table by the encoding's kernel), every index is advanced by constant additions, and every
rescale is an arithmetic right shift. It executes the same `IntProgram` as `potnn.simulate` and must
match it bit for bit.

Layout of the generator: `header` writes the file around the layer functions; `registry` maps each
operation to its emitter (`unrolled_linear`, `unrolled_conv`, `guarded_conv`, `row_conv`, `packed`,
`elementwise`), each of which also counts the constructs it writes for the flash estimate; `budget` holds the refusals
and the fit ladder; `target` the per-core constants; `kernels` and `c/` the static C.

Beside the header, export writes its bundle (`potnn.bundle`): the manifest built here and the same
IntProgram, so that the bench and `potnn.simulate` know the model without torch or the header's macros.

C facts it relies on (true of GCC and Clang on every target potnn supports): `>>` on a negative int32
is an arithmetic shift; conversion of an out-of-range uint32 to int32 wraps. Left shifts of possibly
negative values go through uint32 (`POTNN_SHL`), since C99 leaves them undefined.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bundle import FORMAT, SUFFIX, bundle_path, encode_bundle
from ..config import Config
from ..contract import EXPORT_VERSION, header_hash, model_hash
from ..program import IntProgram
from .budget import ExportError
from .header import ExportReport, render
from .target import CORTEX_M0PLUS, RV32EC_GCC, Target

if TYPE_CHECKING:
    import torch.nn as nn


def _check_prepared(model: nn.Module, config: Config) -> None:
    """The model must have been prepared, with the Config it is exported with."""
    trained = getattr(model, "_potnn_config", None)
    if trained is None:
        raise ExportError("the model has not been prepared: run potnn.train, or potnn.calibrate and "
                          "potnn.prepare_qat, before potnn.export; to restore a trained model use potnn.load, or "
                          "call potnn.prepare_qat(model, config) before model.load_state_dict")
    for what in ("mean", "std", "input_shape", "layer_encodings", "default_encoding", "per_channel"):
        a = getattr(trained, what)
        b = getattr(config, what)
        if what in ("mean", "std"):
            a, b = getattr(trained, f"channel_{what}")(), getattr(config, f"channel_{what}")()
        if a != b:
            raise ExportError(f"Config.{what} is {b!r} but the model was prepared with {a!r}; "
                              "export with the Config the model was trained with")


def _check_classes(program: IntProgram, config: Config) -> None:
    """Class names, when given, name every output, so that a report never shows a class without one."""
    if config.class_names is not None and len(config.class_names) != program.num_classes:
        raise ExportError(f"Config.class_names has {len(config.class_names)} names but the model has "
                          f"{program.num_classes} outputs; give one name per class, or none")


def _potnn_version() -> str | None:
    try:
        return importlib.metadata.version("potnn")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return None


def bundle_manifest(program: IntProgram, config: Config, report: ExportReport, header: Path,
                    data: bytes) -> dict[str, Any]:
    """The bundle's manifest for the header `data` written at `header`: what the bench and report read."""
    shape = list(program.input_shape)
    return {
        "format": FORMAT, "export_version": EXPORT_VERSION,
        "header": header.name, "header_sha256": hashlib.sha256(data).hexdigest(), "model_hash": header_hash(data),
        "input_shape": shape, "input_layout": "CHW" if len(shape) == 3 else "CL", "input_size": math.prod(shape),
        "num_classes": program.num_classes,
        "class_names": None if config.class_names is None else list(config.class_names),
        "mean": list(config.channel_mean()), "std": list(config.channel_std()),
        "encodings": {op.name: op.encoding for op in program.ops if op.kind in ("conv", "linear")},
        "ram_bytes": report.ram_bytes, "flash_bytes": report.flash_bytes, "stack_bytes": report.stack_bytes,
        "dataset": config.dataset, "potnn_version": _potnn_version(),
        "kernels": [{"name": name, "macs": macs} for name, macs in report.kernels],
    }


def _write_pair(header: Path, header_data: bytes, bundle: Path, bundle_data: bytes) -> None:
    """Write the header and its bundle so that a crash never leaves a bundle describing another header.

    Both go to hidden temporaries beside their targets first (flushed to disk); then the old bundle is
    removed, the header renamed into place, and the bundle last. A crash part-way leaves the old pair,
    or a header without a bundle (which the bench refuses by name), never a mismatched pair.
    """
    temps = [p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp") for p in (header, bundle)]
    try:
        for temp, data in zip(temps, (header_data, bundle_data)):
            with open(temp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        bundle.unlink(missing_ok=True)
        os.replace(temps[0], header)
        os.replace(temps[1], bundle)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def export(model: nn.Module | IntProgram, path: str | Path, config: Config, *,
           target: Target = RV32EC_GCC) -> ExportReport:
    """Write the model as one C header at `path` and its bundle beside it (``model.h`` → ``model.potnn``).

    Refuses (ExportError, naming every budget exceeded) a model over Config.ram/Config.flash: with a
    plain Config they budget the model alone; with Config.for_board they also hold the firmware's buffers
    the model sizes and potnn_predict's stack, and the flash is measured, by compiling the header (the
    report's `stack_bytes` and `flash_bytes`, recorded in the bundle). Neither the model nor the config is changed. Returns the
    sizes the budgets were checked against.
    """
    path = Path(path)
    if path.suffix == SUFFIX:
        raise ExportError(f"cannot export to {path}: give the header's path (such as model.h); export writes "
                          f"the {SUFFIX} bundle beside it")
    if not path.parent.is_dir():
        raise ExportError(f"cannot export to {path}: the folder {path.parent} does not exist; create it first")
    if isinstance(model, IntProgram):
        program = model
    else:
        from ..lower import lower  # torch: only a PyTorch model needs lowering

        _check_prepared(model, config)
        program = lower(model)
    _check_classes(program, config)
    text, report = render(program, config, target)
    data = text.encode("utf-8")
    report.path, report.bundle = path, bundle_path(path)
    _write_pair(path, data, report.bundle, encode_bundle(bundle_manifest(program, config, report, path, data), program))
    return report


__all__ = ["CORTEX_M0PLUS", "EXPORT_VERSION", "ExportError", "ExportReport", "RV32EC_GCC", "Target", "export",
           "model_hash", "render"]
