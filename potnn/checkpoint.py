"""`potnn.save` / `potnn.load`: one file with everything needed to continue or re-export a model.

A plain ``state_dict`` is not enough to rebuild a potnn model: preparation changes the module tree
(BatchNorm folded into the layer before it and replaced by nn.Identity, global average pools replaced
by PoTGlobalAvgPool, torch.nn layers swapped for PoT layers by `potnn.convert`), and the mode, the
Config and the per-layer encodings live outside it. A checkpoint records all of them beside the
state_dict, as plain data (tensors, strings, numbers), so `load` reads it with
``torch.load(weights_only=True)``: loading a checkpoint never runs code from it.

The module itself is rebuilt by the caller — ``potnn.load(path, model=MyNet())`` — since pickling a user's
class ties the file to that class's import path (a class defined in a script's ``__main__`` can only be
unpickled by a script that defines it in ``__main__`` too). `load` redoes on the fresh instance the
module swaps the saved model had, then loads the state and the preparation, so a loaded model
exports byte-identically and continues training where it stopped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .config import Config
from .convert import convert
from .fuse import replace_global_pooling
from .layers import PoTGlobalAvgPool, PoTLayer, QuantModule
from .qat import ensure_captured, set_mode

FORMAT = "potnn-checkpoint"
VERSION = 1


def _config_data(config: Config | None) -> dict[str, Any] | None:
    if config is None:
        return None
    data = dataclasses.asdict(config)
    for key in ("mean", "std"):
        if not isinstance(data[key], (int, float)):
            data[key] = [float(v) for v in data[key]]
    if data["class_names"] is not None:
        data["class_names"] = list(data["class_names"])
    return data


def _config(data: dict[str, Any] | None) -> Config | None:
    if data is None:
        return None
    if data.get("class_names") is not None:
        data = {**data, "class_names": tuple(data["class_names"])}
    return Config(**data)


def save(model: nn.Module, path: str | Path) -> Path:
    """Write `model`'s state, Config, mode, encodings and module swaps to `path` (a torch file); returns it.

    Works at any stage: a float model (converted or not), a calibrated or QAT model, an integer one.
    """
    modules = dict(model.named_modules())
    quant = [m for m in modules.values() if isinstance(m, QuantModule)]
    payload = {
        "format": FORMAT, "version": VERSION,
        "state_dict": model.state_dict(),
        "config": _config_data(getattr(model, "_potnn_config", None)),
        "prepared": getattr(model, "_potnn_graph", None) is not None,
        "calibrated": bool(getattr(model, "_potnn_calibrated", False)),
        "mode": quant[0].potnn_mode if quant else "float",
        "pot_layers": {p: type(m).__name__ for p, m in modules.items() if isinstance(m, PoTLayer)},
        "encodings": {p: m.encoding for p, m in modules.items() if isinstance(m, PoTLayer) and m.encoding},
        "gap": [p for p, m in modules.items() if isinstance(m, PoTGlobalAvgPool)],
        "identity": [p for p, m in modules.items() if isinstance(m, nn.Identity)],
    }
    path = Path(path)
    torch.save(payload, path)
    return path


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, name, module)


def _rebuild(model: nn.Module, payload: dict[str, Any], path: Path) -> None:
    """Redo on a fresh instance the module swaps the saved model had (convert, GAP, folded BatchNorm)."""
    modules = dict(model.named_modules())
    missing = sorted((set(payload["pot_layers"]) | set(payload["gap"])) - set(modules))
    if missing:
        raise ValueError(f"potnn.load: {path} was saved from a model with modules {missing}, which the given "
                         f"{type(model).__name__} does not have; pass an instance of the class that was saved")
    if any(not isinstance(modules[p], PoTLayer) for p in payload["pot_layers"]):
        convert(model)
    if payload["gap"]:
        replace_global_pooling(model)
    for p in payload["identity"]:
        if p in modules and isinstance(modules[p], (nn.BatchNorm1d, nn.BatchNorm2d)):
            _replace(model, p, nn.Identity())  # folded into the layer before it; its state is in that layer
    for p, encoding in payload["encodings"].items():
        layer = model.get_submodule(p)
        assert isinstance(layer, PoTLayer)
        layer.encoding = encoding


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Restore a `potnn.save` checkpoint into `model`, a fresh instance of the saved model's class; returns it.

    The instance may be exactly what the user's code builds (torch.nn layers before `potnn.convert`,
    BatchNorm, adaptive average pools): the swaps the saved model had are redone first. Then the state
    is loaded and, for a prepared model, the graph captured with the saved Config and the mode set, so the
    model exports, simulates or trains on at once — do not `calibrate` it again (that would replace its
    trained scales; calibrate warns).
    """
    if model is None:
        raise TypeError("potnn.load needs the module to load into: potnn.load(path, model=MyNet()), a fresh "
                        "instance of the saved model's class (the checkpoint holds its state, not its code)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"potnn.load: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not its own
        raise ValueError(f"potnn.load: {path} is not a potnn checkpoint (written by potnn.save): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"potnn.load: {path} is not a potnn checkpoint; for a plain state_dict use "
                         "model.load_state_dict (see README, 'Save and load')")
    if payload["version"] > VERSION:
        raise ValueError(f"potnn.load: {path} has checkpoint version {payload['version']}; this potnn reads up "
                         f"to {VERSION}: upgrade potnn")
    _rebuild(model, payload, path)
    config = _config(payload["config"])
    model.load_state_dict(payload["state_dict"])
    if payload["prepared"] and config is not None:
        ensure_captured(model, config)
        set_mode(model, payload["mode"])
    if payload["calibrated"]:
        model._potnn_calibrated = True
    return model
