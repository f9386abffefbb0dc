"""Which C function of a header runs which layer: the names a profiler reads back from the firmware ELF.

Why a contract of its own: every layer of the model is one function of the header (kept out of line with
``POTNN_NOINLINE``), so its code is one symbol range in the linked firmware and a profiler can charge
each executed instruction to the layer the model names (``convs.0``) without any code added to the
firmware. The header writer (``header``) and the bench's profiler (``bench.profile``) both take the
names from here, so they cannot drift apart.

Compilers may rename a static function they clone or split (GCC: ``potnn_0_convs_0.constprop.0``,
``.isra.0``, ``.part.0``, ``.cold``): the part before the first dot is the function's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..program import IntProgram
from .cwriter import cname

#: The function the firmware calls; its own code (calls, logits copy, argmax) belongs to no layer.
PREDICT = "potnn_predict"
#: Where the caller writes the input: a place in the model's arena (potnn.memory), so no buffer of its own.
INPUT_BUFFER = "potnn_input_buffer"

_LAYER = re.compile(r"potnn_(\d+)_[0-9A-Za-z_]+")


@dataclass(frozen=True)
class LayerFunction:
    """One layer of the model as the header writes it."""

    name: str        # the layer's name in the model, e.g. "convs.0"
    kind: str        # the operation: conv, linear, add, gap, ...
    encoding: str    # its weight encoding ("" for an operation without weights)
    symbol: str      # the C function, e.g. "potnn_0_convs_0"


def layer_function(index: int, name: str) -> str:
    """The C function of operation number ``index`` (program order) called ``name`` in the model."""
    return f"potnn_{index}_{cname(name)}"


def layer_functions(program: IntProgram) -> list[LayerFunction]:
    """Each operation that is code, in program order (reshapes are views of their input, not code)."""
    return [LayerFunction(op.name, op.kind, op.encoding if op.weight is not None else "", layer_function(i, op.name))
            for i, op in enumerate(program.ops) if op.kind != "reshape"]


def function_name(symbol: str) -> str:
    """The source function of an ELF symbol: ``potnn_3_fc.constprop.0`` -> ``potnn_3_fc``."""
    return symbol.split(".", 1)[0]


def is_layer_symbol(symbol: str) -> bool:
    """Whether an ELF symbol is (a part of) a layer function of some potnn header."""
    return _LAYER.fullmatch(function_name(symbol)) is not None
