"""Emitters of the operations without weights: max-pool, global average pool, ReLU, residual add."""

from __future__ import annotations

from collections import Counter

from .cwriter import CWriter, INT32_MIN, requant, shl, steps
from .emitter import OpEmitter


class MaxPool(OpEmitter):
    """A max-pool that could not be fused into the conv before it: a window loop per output."""

    def body(self) -> list[str]:
        op = self.op
        c, h, w = op.in_shape
        _, oh, ow = op.out_shape
        (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
        out = CWriter()
        out(f"const {self.in_ctype} *cin = in;")
        with out.block(f"for (int c = 0; c < {c}; c++, cin += {h * w})"):
            out(steps("cin"), f"int rowbase = {-ph * w - pw};")
            with out.block(f"for (int iy0 = {-ph}; iy0 < {(oh - 1) * sh - ph + 1}; iy0 += {sh}, rowbase += {sh * w})"):
                out(steps("rowbase"), "int base = rowbase;")
                with out.block(f"for (int ix0 = {-pw}; ix0 < {(ow - 1) * sw - pw + 1}; ix0 += {sw}, base += {sw})"):
                    out(steps("base", "out"), f"int m = {INT32_MIN};", "int off = base;")
                    with out.block(f"for (int ky = 0; ky < {kh}; ky++, off += {w})"):
                        out(steps("off"))
                        with out.block(f"for (int kx = 0; kx < {kw}; kx++)"):
                            if ph > 0 or pw > 0:
                                out(f"if ((unsigned)(iy0 + ky) >= {h}u || (unsigned)(ix0 + kx) >= {w}u) continue;")
                            out("if (cin[off + kx] > m) m = cin[off + kx];")
                    out(f"*out++ = ({self.out_ctype})m;")
        return out.lines

    def constructs(self) -> Counter[str]:
        return Counter(maxpool=1)


class GlobalAvgPool(OpEmitter):
    """A sum per channel and a shift (the division by H x W lives in the scale)."""

    def body(self) -> list[str]:
        op = self.op
        out_spec = self.em.spec(op.output)
        assert op.bias is not None and op.shift is not None and out_spec.lo is not None and out_spec.hi is not None
        c, h, w = op.in_shape
        out = CWriter()
        out(f"const {self.in_ctype} *p = in;")
        with out.block(f"for (int c = 0; c < {c}; c++)"):
            out(steps("p"), f"int32_t acc = {int(op.bias[0])}, v;", f"for (int i = 0; i < {h * w}; i++) acc += *p++;")
            out.extend(requant("acc", int(op.shift[0]), out_spec.lo, out_spec.hi, "out[c]", out_spec.ctype))
        return out.lines

    def constructs(self) -> Counter[str]:
        return Counter(gap=1)


class Relu(OpEmitter):
    """A ReLU that could not be fused into a clamp."""

    def body(self) -> list[str]:
        c, h, w = self.op.in_shape
        return [f"for (int i = 0; i < {c * h * w}; i++) out[i] = ({self.out_ctype})(in[i] > 0 ? in[i] : 0);"]

    def constructs(self) -> Counter[str]:
        return Counter(relu=1)


class Add(OpEmitter):
    """Residual addition: both inputs shifted to a common scale, plus the rounding bias, requantised."""

    def signature(self) -> str:
        a_t, b_t = (self.em.spec(name).ctype for name in self.op.inputs)
        return f"POTNN_NOINLINE static void {self.fn}(const {a_t} *a, const {b_t} *b, {self.out_ctype} *out)"

    def body(self) -> list[str]:
        op = self.op
        out_spec = self.em.spec(op.output)
        assert op.bias is not None and op.shift is not None and out_spec.lo is not None and out_spec.hi is not None
        sa, sb = op.in_shifts
        ta, tb = shl("a[i]", sa), shl("b[i]", sb)
        out = CWriter()
        with out.block(f"for (int i = 0; i < {out_spec.size}; i++)"):
            out(f"const int32_t acc = {ta} + {tb} + {int(op.bias[0])};", "int32_t v;")
            out.extend(requant("acc", int(op.shift[0]), out_spec.lo, out_spec.hi, "out[i]", out_spec.ctype))
        return out.lines

    def constructs(self) -> Counter[str]:
        return Counter(add=1)
