"""What the op emitters share: the program being written, its tables and functions, and the base class
of an emitter (one per kind of operation; potnn.codegen.registry maps operations to them).

An emitter writes one layer function's body and, beside it, counts the constructs that body is made
of (`constructs`), from which the target's per-construct sizes give the flash estimate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..encoding import get_encoding
from ..program import IntOp, IntProgram, TensorSpec
from .cwriter import CTYPE_BYTES, c_array, requant
from .target import Target


@dataclass(frozen=True)
class FitChoice:
    """Where an export sits on the fit ladder: the slower but smaller forms it uses."""

    window_taps: int  # pooled unrolled convs whose weights x windows stay within this repeat the code
    gather_min: int  # unrolled linear layers sum groups of at least this many equal weights from tables (0: never)
    row_stack: int = 0  # packed convs copy four outputs' receptive field onto the stack up to this many bytes


@dataclass
class Emitter:
    """The tables, functions and kernels of one header being written, and its flash accounting."""

    program: IntProgram
    target: Target
    fit: FitChoice
    tables: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    weight_bytes: int = 0
    cost: Counter[str] = field(default_factory=Counter)  # constructs written, for the flash estimate
    dot_kernels: set[tuple[str, bool]] = field(default_factory=set)  # (encoding, signed input)
    row_kernels: set[tuple[str, bool]] = field(default_factory=set)  # (encoding, signed input)
    gather_kernels: set[tuple[bool, str]] = field(default_factory=set)  # (signed input, index type)
    kernel_work: Counter[str] = field(default_factory=Counter)  # multiply-accumulates per inference, by kernel
    scratch: dict[str, int] = field(default_factory=dict)  # arena offset of an op's scratch, by its output

    def spec(self, name: str) -> TensorSpec:
        return self.program.tensors[name]

    def signed(self, name: str) -> bool:
        s = self.spec(name)
        return s.lo is None or s.lo < 0

    def table(self, ctype: str, name: str, values: list[int] | np.ndarray) -> None:
        self.tables += c_array(ctype, name, values)
        self.weight_bytes += len(values) * CTYPE_BYTES[ctype]

    def count_work(self, kernel: str, op: IntOp) -> None:
        """Charge `kernel` with the multiply-accumulates `op` has it do per inference (zero weights only where
        they cost time): what ranks the kernels for a firmware whose SRAM holds only some (`kernels_by_work`)."""
        assert op.weight is not None
        weights = np.count_nonzero(op.weight) if get_encoding(op.encoding).free_zeros else op.weight.size
        self.kernel_work[kernel] += int(weights) * op.positions

    def kernels_by_work(self) -> list[tuple[str, int]]:
        """The header's kernels, most multiply-accumulates first (then by name), with that count."""
        return sorted(self.kernel_work.items(), key=lambda item: (-item[1], item[0]))

    def shared_kernels(self) -> dict[tuple[str, str, bool], int]:
        """The packed encodings' kernels the layers call, ("dot" | "row", encoding, signed input), with their
        estimated code bytes: each is written once, however many layers call it."""
        sizes = {("dot", e, s): get_encoding(e).kernel_code_bytes for e, s in self.dot_kernels}
        return sizes | {("row", e, s): get_encoding(e).row_kernel_code_bytes for e, s in self.row_kernels}

    def flash_bytes(self) -> int:
        """Weights plus the estimated code: constructs, and each kernel once."""
        sizes = self.target.code_bytes
        kernels = sum(self.shared_kernels().values()) + sizes["kernel_gather"] * len(self.gather_kernels)
        return self.weight_bytes + kernels + sum(sizes[k] * n for k, n in self.cost.items())


class OpEmitter:
    """Writes one operation as a C function. Subclasses implement `body` and `constructs`."""

    def __init__(self, em: Emitter, op: IntOp, fn: str) -> None:
        self.em = em
        self.op = op
        self.fn = fn

    @classmethod
    def accepts(cls, em: Emitter, op: IntOp) -> bool:
        """Whether this emitter can write op (a faster form may refuse, e.g. a receptive field too big to copy)."""
        return True

    @property
    def in_ctype(self) -> str:
        return self.em.spec(self.op.inputs[0]).ctype

    @property
    def out_ctype(self) -> str:
        return "int32_t" if self.op.final else self.em.spec(self.op.output).ctype

    def signature(self) -> str:
        return f"POTNN_NOINLINE static void {self.fn}(const {self.in_ctype} *in, {self.out_ctype} *out)"

    def body(self) -> list[str]:
        raise NotImplementedError

    def constructs(self) -> Counter[str]:
        """The constructs `body` writes, by name of the target's code_bytes."""
        raise NotImplementedError

    # ---- stores shared by the weighted layers ---------------------------------------------
    def store(self, dst: str, shift: int | None, acc: str = "acc") -> list[str]:
        """Requantise acc into dst (the final layer stores the int32 logit as is)."""
        if self.op.final:
            return [f"{dst} = {acc};"]
        spec = self.em.spec(self.op.output)
        assert spec.lo is not None and spec.hi is not None and shift is not None
        return requant(acc, shift, spec.lo, spec.hi, dst, spec.ctype)

    def bias_shift(self, oc: int) -> tuple[int, int | None]:
        assert self.op.bias is not None
        return int(self.op.bias[oc]), (None if self.op.shift is None else int(self.op.shift[oc]))

    def store_biased(self, oc: int, dst: str, acc: str = "acc") -> list[str]:
        """Store acc + bias[oc]: the taps are summed without the bias, and adding it once after a max-pool
        is the same as adding it to every window."""
        bias, shift = self.bias_shift(oc)
        return self.store(dst, shift, f"({acc} {'+' if bias > 0 else '-'} {abs(bias)})" if bias else acc)
