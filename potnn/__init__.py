"""potnn: power-of-two quantized neural networks for multiplier-less microcontrollers.

Train with PoT layers, quantize with QAT, check with the integer reference `simulate`, export one
C header that runs with shifts and adds only. See README.md for the two ways to use it.
"""

from .config import Config
from .encoding import ENCODINGS
from .export import ExportError, export
from .fuse import fuse_batchnorm
from .graph import GraphError
from .layers import PoTAdd, PoTConv1d, PoTConv2d, PoTDepthwiseConv2d, PoTGlobalAvgPool, PoTLinear
from .lower import IntProgram, lower
from .qat import calibrate, enable_integer_sim, prepare_qat, set_mode
from .simulate import simulate
from .train import evaluate, train

__all__ = [
    "Config", "ENCODINGS", "ExportError", "GraphError", "IntProgram",
    "PoTAdd", "PoTConv1d", "PoTConv2d", "PoTDepthwiseConv2d", "PoTGlobalAvgPool", "PoTLinear",
    "calibrate", "enable_integer_sim", "export", "fuse_batchnorm", "lower", "prepare_qat", "set_mode", "simulate", "train", "evaluate",
]
