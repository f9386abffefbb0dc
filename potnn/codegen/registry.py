"""Which emitter writes which operation: a table from the kind of operation (and, for layers with
weights, unrolled or packed) to its emitters, fastest first; the first that accepts the op writes it."""

from __future__ import annotations

from ..program import IntOp, IntProgram
from .cwriter import indent
from .elementwise import Add, GlobalAvgPool, MaxPool, Relu
from .emitter import Emitter, OpEmitter
from .guarded_conv import GuardedUnrolledConv
from .packed import PackedConv, PackedLinear, StreamingPackedConv
from .row_conv import RowPackedConv
from .unrolled_conv import UnrolledConv
from .unrolled_linear import UnrolledLinear

EMITTERS: dict[str, tuple[type[OpEmitter], ...]] = {
    "linear/unroll": (UnrolledLinear,),
    "linear/packed": (PackedLinear,),
    "conv/unroll": (UnrolledConv, GuardedUnrolledConv),
    "conv/packed": (RowPackedConv, PackedConv, StreamingPackedConv),
    "maxpool": (MaxPool,),
    "gap": (GlobalAvgPool,),
    "relu": (Relu,),
    "add": (Add,),
}

WEIGHTED = ("conv", "linear")


def _key(op: IntOp) -> str:
    if op.kind in WEIGHTED:
        return f"{op.kind}/{'unroll' if op.encoding == 'unroll' else 'packed'}"
    return op.kind


def scratch_requests(program: IntProgram) -> dict[str, int]:
    """Arena scratch the operations' fastest emitters would use (by output name; see potnn.memory)."""
    return {op.output: n for op in program.ops
            if (n := RowPackedConv.scratch_bytes(op)) and program.tensors[op.inputs[0]].ctype in ("uint8_t", "int8_t")}


def emit_op(em: Emitter, op: IntOp, fn: str) -> None:
    """Write op as the C function `fn` into em, and count its constructs."""
    cls = next(c for c in EMITTERS[_key(op)] if c.accepts(em, op))
    emitter = cls(em, op, fn)
    body = emitter.body()
    em.functions += [emitter.signature(), "{"] + indent(body) + ["}", ""]
    em.cost.update(emitter.constructs())
    if op.kind in WEIGHTED:
        em.cost["layer"] += 1
