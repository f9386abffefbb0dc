"""potnn: power-of-two quantized neural networks for multiplier-less microcontrollers.

Train with PoT layers, quantize with QAT, check with the integer reference `simulate`, export one
C header that runs with shifts and adds only. See README.md for the two ways to use it.

The public names load their module on first use, so that the parts that need no torch (the header
contract and the bundle the bench reads, `simulate` from a bundle, the encodings) import without it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auto_fit import FitReport
    from .bundle import Bundle, BundleError, load_bundle
    from .codegen import ExportError, export
    from .channel_pruning import prune_channels
    from .checkpoint import load, save
    from .config import Config
    from .convert import convert
    from .encoding import ENCODINGS
    from .fuse import fuse_batchnorm
    from .graph import GraphError
    from .layers import PoTAdd, PoTConv1d, PoTConv2d, PoTDepthwiseConv2d, PoTGlobalAvgPool, PoTLinear
    from .lower import lower
    from .program import IntProgram
    from .qat import calibrate, enable_integer_sim, prepare_qat, set_mode
    from .sensitivity import sensitivity
    from .simulate import simulate
    from .train import evaluate, train

_HOME: dict[str, str] = {
    "Bundle": "bundle", "BundleError": "bundle", "load_bundle": "bundle", "Config": "config", "ENCODINGS": "encoding", "ExportError": "codegen", "export": "codegen",
    "fuse_batchnorm": "fuse", "GraphError": "graph", "IntProgram": "program", "lower": "lower",
    "PoTAdd": "layers", "PoTConv1d": "layers", "PoTConv2d": "layers", "PoTDepthwiseConv2d": "layers",
    "PoTGlobalAvgPool": "layers", "PoTLinear": "layers",
    "calibrate": "qat", "enable_integer_sim": "qat", "prepare_qat": "qat", "set_mode": "qat",
    "simulate": "simulate", "evaluate": "train", "train": "train",
    "convert": "convert", "save": "checkpoint", "load": "checkpoint", "prune_channels": "channel_pruning",
    "sensitivity": "sensitivity", "FitReport": "auto_fit",
}

__all__ = sorted(_HOME)


class _Package(types.ModuleType):
    """The potnn package object: loads a public name's module on first use.

    `convert`, `lower`, `simulate`, `sensitivity` and `train` are both functions and submodules; the
    function is the public name, so importing the submodule must not rebind the package attribute to it.
    """

    def __getattr__(self, name: str) -> Any:
        home = _HOME.get(name)
        if home is None:
            try:
                return importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{__name__}.{name}":
                    raise
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
