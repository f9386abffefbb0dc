"""Packed convs 3 taps wide at stride 1, four neighbouring outputs of a row at a time (the row kernel).

The one-output dot kernel decodes every weight at every position: about 8 RV32EC instructions per
multiply-accumulate, 3 of them decoding. Here the receptive field of four neighbouring outputs (rows of
3 + 3 inputs) is copied once, and the encoding's row kernel decodes each weight once for all four:
about 5 instructions per multiply-accumulate. The copy is twice the one-output patch; it takes arena
bytes that are free while the layer runs when there are enough (potnn.memory's scratch), else the stack
(up to the fit ladder's FitChoice.row_stack bytes, else the conv keeps the one-output kernel).
"""

from __future__ import annotations

from collections import Counter
from functools import cached_property

import numpy as np

from ..encoding import get_encoding
from ..program import IntOp
from .cwriter import CWriter, steps
from .emitter import Emitter
from .geometry import ConvGeometry
from .kernels import row_kernel_name
from .packed import PackedLayer
from .patch_copy import PatchCopy

#: Outputs of a row per kernel call, and the taps of a row the kernel is written for.
OUTPUTS = 4
TAPS = 3


def _pool(op: IntOp) -> tuple[int, int] | None:
    """The fused max-pool's window (rows, columns), (1, 1) without a pool; None when the row kernel cannot
    pool it (windows that overlap, leave gaps or padding, or straddle two blocks of four outputs)."""
    if op.pool is None:
        return 1, 1
    (qkh, qkw), (qsh, qsw), (qph, qpw) = op.pool
    _, oh, ow = op.conv_shape or op.out_shape
    tiles = (qkh, qkw) == (qsh, qsw) and qph == qpw == 0 and oh % qkh == 0 and ow % qkw == 0
    return (qkh, qkw) if tiles and OUTPUTS % qkw == 0 else None


class RowPackedConv(PackedLayer):
    """conv → (max-pool) with a packed encoding that has a row kernel: per output row, blocks of four
    outputs share one copy of their receptive field and one kernel call per filter."""

    @staticmethod
    def scratch_bytes(op: IntOp) -> int:
        """Bytes of the four outputs' receptive field, when the row kernel can write op (else 0)."""
        if op.kind != "conv" or op.encoding == "unroll" or not get_encoding(op.encoding).row_kernel_code_bytes:
            return 0
        enc = get_encoding(op.encoding)
        c, _, _ = op.in_shape
        kh, kw = op.kernel
        _, _, ow = op.conv_shape or op.out_shape
        rows = c * kh
        if (kw != TAPS or op.stride != (1, 1) or op.groups != 1 or ow % OUTPUTS or rows % enc.row_kernel_rows
                or _pool(op) is None):
            return 0
        return rows * (TAPS + OUTPUTS - 1)

    @classmethod
    def accepts(cls, em: Emitter, op: IntOp) -> bool:
        size = cls.scratch_bytes(op)
        return bool(size) and (op.output in em.scratch or size <= em.fit.row_stack) \
            and em.spec(op.inputs[0]).ctype in ("uint8_t", "int8_t")

    @property
    def in_arena(self) -> bool:
        return self.op.output in self.em.scratch

    def signature(self) -> str:
        extra = ", uint8_t *scratch" if self.in_arena else ""
        return f"POTNN_NOINLINE static void {self.fn}(const {self.in_ctype} *in, {self.out_ctype} *out{extra})"

    @property
    def places(self) -> np.ndarray | None:
        """A self-delimiting encoding stores each weight's place in the copied receptive field (rows of
        TAPS + OUTPUTS - 1), not its index."""
        if not get_encoding(self.op.encoding).self_delimiting:
            return None
        assert self.op.weight is not None
        i = np.arange(self.op.weight[0].size)
        return i // TAPS * (TAPS + OUTPUTS - 1) + i % TAPS

    @cached_property
    def geometry(self) -> ConvGeometry:
        """The conv seen as pooled by blocks of four columns: the 'union' is the four outputs' field."""
        g = ConvGeometry.of(self.op, pooled=False)
        return ConvGeometry(g.h, g.w, g.icpg, g.ocpg, g.kh, g.kw, 1, 1, g.oh, g.ow, g.oh, g.ow // OUTPUTS,
                            1, OUTPUTS, 1, OUTPUTS, 0, 0, g.iy0, g.ix0)

    @cached_property
    def copy(self) -> PatchCopy:
        geo = self.geometry
        rows, cols = geo.guards()
        width = TAPS + OUTPUTS - 1
        looped = geo.icpg * geo.kh * width > self.em.target.looped_copy_elements and bool(rows or cols)
        return PatchCopy(geo, self.in_ctype, "base", width, geo.kh * width, rows, cols, in_place=False,
                         looped="iy0,ix0" if looped else None, interior=geo.interior())

    def body(self) -> list[str]:
        op, fn, geo = self.op, self.fn, self.geometry
        enc = get_encoding(op.encoding)
        signed = self.em.signed(op.inputs[0])
        assert op.bias is not None
        negatives = [enc.kernel_terms(row)[1] for row in self.stream.weights]
        self.weight_table(enc.table_ctype)
        self.em.tables.append(f"/* {fn}: bias + 1 per negative term, which the row kernel adds as ~t = -t - 1 */")
        self.em.table("int32_t", f"{fn}_b", op.bias + np.array(negatives, dtype=np.int64))
        self.shift_table()
        self.em.row_kernels.add((op.encoding, signed))
        self.em.count_work(row_kernel_name(op.encoding, signed), op)
        pool = _pool(op)
        assert pool is not None
        qh, qw = pool
        oc_n = op.out_shape[0]
        _, py, px = op.out_shape
        plane = py * px
        step = 0 if enc.self_delimiting else (self.stream.offsets[1] - self.stream.offsets[0]) // enc.unit_bytes
        out_t, in_t = self.out_ctype, self.in_ctype
        w = geo.w
        out = CWriter()
        out(*([] if op.final else ["int32_t v;"]), "uint32_t acc[4];", f"{out_t} q[4];")
        if self.in_arena:
            out(f"{in_t} *const patch = ({in_t} *)scratch;")
        else:
            out(f"{in_t} patch[{self.scratch_bytes(op)}];")
        out(f"{out_t} *orow = out;", *(["int wy = 0;"] if qh > 1 else []))
        ph, pw = op.padding
        with out.block(f"for (int iy0 = {-ph}, rowbase = {-ph * w}; iy0 < {geo.oh - ph}; iy0++, rowbase += {w})"):
            out(steps("iy0", "rowbase"), f"{out_t} *o = orow;")
            with out.block(f"for (int ix0 = {-pw}; ix0 < {geo.ow - pw}; ix0 += {OUTPUTS}, o += {OUTPUTS // qw})"):
                out(steps("ix0", "o"), "const int base = rowbase + ix0;")
                out.extend(self.copy.flag_lines() + self.copy.lines())
                out(f"const {enc.table_ctype} *wp = {fn}_w;", f"{out_t} *oo = o;")
                kernel = row_kernel_name(op.encoding, signed)
                advance, call = (("", f"wp = {kernel}(acc, patch, wp);") if enc.self_delimiting else
                                 (f", wp += {step}", f"{kernel}(acc, patch, wp, {geo.icpg * geo.kh // 2});"))
                with out.block(f"for (int oc = 0; oc < {oc_n}; oc++{advance}, oo += {plane})"):
                    out(steps(*([] if enc.self_delimiting else ["wp"]), "oo"),
                        f"acc[0] = acc[1] = acc[2] = acc[3] = (uint32_t){fn}_b[oc];", call)
                    with out.block("for (int j = 0; j < 4; j++)"):
                        out(*self.store("q[j]", acc="(int32_t)acc[j]"))
                    self._pool_store(out, qh, qw)
            out(f"if (++wy == {qh}) {{ wy = 0; orow += {px}; }}" if qh > 1 else f"orow += {px};")
        return out.lines

    @staticmethod
    def _pool_store(out: CWriter, qh: int, qw: int) -> None:
        """Write the four outputs, or their maxima over the pool's columns into the running maxima of the
        pooled row (its first conv row writes them)."""
        if (qh, qw) == (1, 1):
            out("oo[0] = q[0]; oo[1] = q[1]; oo[2] = q[2]; oo[3] = q[3];")
            return
        for j in range(OUTPUTS // qw):
            terms = [f"q[{j * qw + i}]" for i in range(qw)]
            best = terms[0]
            for t in terms[1:]:
                best = f"({t} > {best} ? {t} : {best})"
            out(f"{{ const int32_t m = {best}; if (wy == 0 || m > oo[{j}]) oo[{j}] = m; }}" if qh > 1 else
                f"oo[{j}] = {best};")

    def constructs(self) -> Counter[str]:
        rows, cols = self.geometry.guards()
        cost = Counter(row_conv=1, row_conv_pool=int(self.op.pool is not None),
                       guard_flag=sum(map(len, rows.values())) + sum(map(len, cols.values())))
        return cost + self.copy.constructs() + Counter(store=1, store_table=int(not self.op.final and not self.uniform))
