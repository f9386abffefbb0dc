"""Layers with packed weights (fp130, 5level, 2bit, ternary, indexed): tables of the encoding's stream.

A linear layer calls the encoding's dot-product kernel once per output. A conv copies its receptive
field in packing order once per position (zeros in the padding) and calls the kernel per filter, as a
linear layer does. A receptive field too big for the stack is decoded weight by weight from the stream
at every position instead (StreamingPackedConv: slow, but no buffer); `indexed` lists positions and has
no weight-by-weight decoder, so its convs keep the copy at any size and the budget check weighs the stack.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..encoding import Encoding, filter_offsets, get_encoding, pack
from ..program import IntOp
from .cwriter import INT32_MIN, CWriter, requant, requant_by_table, steps
from .emitter import Emitter, OpEmitter
from .geometry import ConvGeometry, PositionLoops
from .kernels import dot_kernel_name
from .patch_copy import PatchCopy

_NUMPY_TYPE = {"uint8_t": np.uint8, "int8_t": np.int8, "uint32_t": np.dtype("<u4")}


@dataclass(frozen=True)
class _Stream:
    """A packed layer's weight stream and where each filter starts."""

    encoding: Encoding
    weights: np.ndarray  # legal weights [n_filters, filter_len]
    data: bytes
    offsets: list[int]  # each filter's first byte, and the stream's end


class PackedLayer(OpEmitter):
    """What the packed emitters share: the stream, its tables, the requantising store."""

    @property
    def places(self) -> np.ndarray | None:
        """Where the kernel reads each weight's input, for an encoding that stores positions (None: at the
        weight's index in packing order)."""
        return None

    @cached_property
    def stream(self) -> _Stream:
        assert self.op.weight is not None
        q = self.op.weight.reshape(self.op.weight.shape[0], -1)
        name, places = self.op.encoding, self.places
        data = pack(name, q, places)
        return _Stream(get_encoding(name), q, data, filter_offsets(name, q, places) + [len(data)])

    @cached_property
    def shifts(self) -> list[int] | None:
        return None if self.op.shift is None else [int(s) for s in self.op.shift]

    @property
    def uniform(self) -> bool:
        """One shift for all outputs (else a table of shifts)."""
        return self.shifts is None or len(set(self.shifts)) == 1

    def weight_table(self, ctype: str) -> None:
        self.em.table(ctype, f"{self.fn}_w", np.frombuffer(self.stream.data, dtype=_NUMPY_TYPE[ctype]))

    def shift_table(self) -> None:
        if not self.uniform:
            assert self.shifts is not None
            self.em.table("int8_t", f"{self.fn}_s", self.shifts)

    def store(self, dst: str, shift: int | None = None, acc: str = "acc") -> list[str]:
        """Requantise acc into dst with the layer's shift, or output oc's from the shift table."""
        if self.op.final:
            return [f"{dst} = {acc};"]
        spec = self.em.spec(self.op.output)
        assert spec.lo is not None and spec.hi is not None and self.shifts is not None
        if self.uniform:
            return requant(acc, self.shifts[0], spec.lo, spec.hi, dst, spec.ctype)
        return requant_by_table(acc, f"{self.fn}_s[oc]", min(self.shifts) < 0, spec.lo, spec.hi, dst, spec.ctype)

    def store_constructs(self) -> Counter[str]:
        return Counter(store=1, store_table=int(not self.op.final and not self.uniform))


class _DotKernelLayer(PackedLayer):
    """Layers that call the encoding's dot-product kernel: tables of weights, bias (+ the one's-complement
    correction), shifts, and for the variable-length encodings per-filter offsets and entry counts."""

    @property
    def fixed(self) -> bool:
        return self.stream.encoding.fixed_length and len(set(np.diff(self.stream.offsets).tolist())) <= 1

    @property
    def step(self) -> int:
        """Storage units per filter, when fixed."""
        offsets = self.stream.offsets
        return (offsets[1] - offsets[0]) // self.stream.encoding.unit_bytes if self.fixed and len(offsets) > 1 else 0

    @property
    def kernel(self) -> str:
        return dot_kernel_name(self.op.encoding, self.em.signed(self.op.inputs[0]))

    def tables(self) -> None:
        assert self.op.bias is not None
        enc, fn, offsets = self.stream.encoding, self.fn, self.stream.offsets
        counts, negatives = zip(*(enc.kernel_terms(row) for row in self.stream.weights))
        self.weight_table(enc.table_ctype)
        self.em.tables.append(f"/* {fn}: bias + 1 per negative term, which the dot kernel adds as ~t = -t - 1 */")
        self.em.table("int32_t", f"{fn}_b", self.op.bias + np.array(negatives, dtype=np.int64))
        self.shift_table()
        if not self.fixed:
            self.em.table("uint16_t" if offsets[-1] > 255 else "uint8_t", f"{fn}_o", offsets[:-1])
        if not self.fixed and not enc.self_delimiting:
            self.em.table("uint16_t" if max(counts) > 255 else "uint8_t", f"{fn}_n", list(counts))
        signed = self.em.signed(self.op.inputs[0])
        self.em.dot_kernels.add((self.op.encoding, signed))
        self.em.count_work(dot_kernel_name(self.op.encoding, signed), self.op)

    def dot(self, x: str) -> str:
        """The C expression of one filter's dot product with x[] (bias included), as int32."""
        fn = self.fn
        if self.fixed:
            call = f"{self.kernel}({x}, wp, {self.stream.weights.shape[1]})"
        elif self.stream.encoding.self_delimiting:
            call = f"{self.kernel}({x}, {fn}_w + {fn}_o[oc])"
        else:
            call = f"{self.kernel}({x}, {fn}_w + {fn}_o[oc], {fn}_n[oc])"
        return f"(int32_t)((uint32_t){fn}_b[oc] + {call})"

    @property
    def weight_pointer(self) -> str:
        return f"const {self.stream.encoding.table_ctype} *wp = {self.fn}_w;"


class PackedLinear(_DotKernelLayer):

    def body(self) -> list[str]:
        self.tables()
        out = CWriter()
        out("int32_t acc;" if self.op.final else "int32_t acc, v;")
        if self.fixed:
            out(self.weight_pointer)
        step = f", wp += {self.step}" if self.fixed else ""
        with out.block(f"for (int oc = 0; oc < {self.stream.weights.shape[0]}; oc++{step})"):
            if self.fixed:
                out(steps("wp"))
            out(f"acc = {self.dot('in')};", *self.store("out[oc]"))
        return out.lines

    def constructs(self) -> Counter[str]:
        return Counter(packed_linear=1) + self.store_constructs()


class PackedConv(_DotKernelLayer):
    """A fused max-pool keeps its running maximum in the output itself, on requantised values:
    requantisation is monotonic, so the max of requantised values is the requantised max, bit for bit,
    and no int32 array per channel has to live on the stack."""

    @classmethod
    def accepts(cls, em: Emitter, op: IntOp) -> bool:
        """Up to the target's patch limit, and beyond it for an encoding with no weight-by-weight decoder
        (StreamingPackedConv's): the budget check then weighs the bigger stack."""
        c, _, _ = op.in_shape
        return c // op.groups * op.kernel[0] * op.kernel[1] <= em.target.packed_patch_limit \
            or not get_encoding(op.encoding).decode

    @cached_property
    def geometry(self) -> ConvGeometry:
        return ConvGeometry.of(self.op, pooled=False)

    @property
    def looped_copy(self) -> bool:
        rows, cols = self.geometry.guards()
        kh, kw = self.op.kernel
        return self.op.groups * kh * kw > self.em.target.looped_copy_elements and bool(rows or cols)

    @cached_property
    def copy(self) -> PatchCopy:
        geo = self.geometry
        rows, cols = geo.guards()
        kh, kw = self.op.kernel
        return PatchCopy(geo, self.in_ctype, "gb" if self.op.groups > 1 else "base", kw, kh * kw, rows, cols,
                         in_place=False, looped="iy0,ix0" if self.looped_copy else None, interior=geo.interior())

    def body(self) -> list[str]:
        op = self.op
        self.tables()
        c, h, w = op.in_shape
        oc_n = op.out_shape[0]
        kh, kw = op.kernel
        icpg, ocpg = c // op.groups, oc_n // op.groups
        out_t = self.out_ctype
        loops = PositionLoops(op)
        pooled = op.pool is not None
        plane = loops.plane
        out = CWriter()
        out("int32_t acc;" if op.final else "int32_t acc, v;", f"{self.in_ctype} patch[{icpg * kh * kw}];",
            f"{out_t} *o = out;")
        if pooled:
            out(f"{out_t} q;")
        with loops.outputs(out):
            out(steps("o"))
            if pooled:
                floor = INT32_MIN if op.final else str(self.em.spec(op.output).lo)
                with out.block(f"for ({out_t} *f = o, *end = o + {oc_n * plane}; f != end; f += {plane})"):
                    out(f"*f = {floor};")
            with loops.window(out):
                out.extend(self.copy.flag_lines())
                if self.fixed:
                    out(self.weight_pointer)
                out("int oc = 0;", f"{out_t} *oo = o;")
                if op.groups > 1:
                    with out.block(f"for (int g = 0, gb = base; g < {op.groups}; g++, gb += {icpg * h * w})"):
                        out(steps("gb"))
                        self._filters(out, ocpg, plane)
                else:
                    self._filters(out, ocpg, plane)
            out("o++;")
        return out.lines

    def _filters(self, out: CWriter, ocpg: int, plane: int) -> None:
        """Copy the receptive field, then one kernel call per filter of the group."""
        out.extend(self.copy.lines())
        step = f", wp += {self.step}" if self.fixed else ""
        with out.block(f"for (int k = 0; k < {ocpg}; k++, oc++{step})"):
            out(steps("oo", *(["wp"] if self.fixed else [])), f"acc = {self.dot('patch')};")
            if self.op.pool is not None:
                out(*self.store("q"), "if (q > *oo) *oo = q;", f"oo += {plane};")
            else:
                out(*self.store("*oo"), f"oo += {plane};")

    def constructs(self) -> Counter[str]:
        rows, cols = self.geometry.guards()
        cost = Counter(packed_conv=1, packed_conv_pool=int(self.op.pool is not None),
                       packed_conv_groups=int(self.op.groups > 1),
                       guard_flag=sum(map(len, rows.values())) + sum(map(len, cols.values())))
        return cost + self.copy.constructs() + self.store_constructs()


class StreamingPackedConv(PackedLayer):
    """Every filter decoded weight by weight at every position, straight from the stream, with the
    encoding's C decoder (a few branches per weight, but no buffer)."""

    def body(self) -> list[str]:
        op, fn = self.op, self.fn
        assert op.bias is not None and op.kind == "conv"
        enc = self.stream.encoding
        self.weight_table(enc.stream_ctype)
        self.em.table("int32_t", f"{fn}_b", op.bias)
        self.shift_table()
        signed = self.em.signed(op.inputs[0])
        lines = [f"const {enc.stream_ctype} *wf = {fn}_w;", f"const {enc.stream_ctype} *wp = wf;", "int32_t acc;"]
        if not op.final:
            lines.append("int32_t v;")
        lines += enc.decoder_state
        c, h, w = op.in_shape
        oc_n = op.out_shape[0]
        kh, kw = op.kernel
        icpg, ocpg = c // op.groups, oc_n // op.groups
        rows, cols = ConvGeometry.of(op, pooled=False).guards()
        loops = PositionLoops(op)
        pooled = op.pool is not None
        in_t = "int8_t" if signed else "uint8_t"
        cond = " && ".join((["rowok"] if rows else []) + ([f"(unsigned)(ix0 + kx) < {w}u"] if cols else []))
        term = "POTNN_SHL(cin[off + kx], e)" if signed else "((int32_t)cin[off + kx] << e)"
        use = f"if (e >= 0{' && ' + cond if cond else ''}) {{ const int32_t t = {term}; acc += neg ? -t : t; }}"
        out = CWriter()
        out(*lines, f"const {in_t} *gin = in;", "int in_group = 0;", f"{self.out_ctype} *o = out;")
        with out.block(f"for (int oc = 0; oc < {oc_n}; oc++)"):
            out(f"const int32_t bias = {fn}_b[oc];")
            if pooled:
                out("int32_t best;")
            with loops.outputs(out):
                out(steps("o"))
                if pooled:
                    out(f"best = {INT32_MIN};")
                with loops.window(out):
                    out("acc = bias;", "wp = wf;", *enc.decoder_reset, f"const {in_t} *cin = gin;")
                    with out.block(f"for (int ic = 0; ic < {icpg}; ic++, cin += {h * w})"):
                        out(steps("cin"), "int off = base;")
                        with out.block(f"for (int ky = 0; ky < {kh}; ky++, off += {w})"):
                            out(steps("off"))
                            if rows:
                                out(f"const int rowok = (unsigned)(iy0 + ky) < {h}u;")
                            with out.block(f"for (int kx = 0; kx < {kw}; kx++)"):
                                out(*enc.decode, use)
                    out(*enc.decoder_finish)
                    if pooled:
                        out("if (acc > best) best = acc;")
                    else:
                        out(*self.store("*o++"))
                if pooled:
                    out(*self.store("*o++", acc="best"))
            out("wf = wp;", f"if (++in_group == {ocpg}) {{ in_group = 0; gin += {icpg * h * w}; }}")
        return out.lines

    def constructs(self) -> Counter[str]:
        return Counter(streaming_conv=1)
