"""`potnn.export`: one standalone C99 header that runs the integer model with shifts and adds only.

The header depends on `<stdint.h>` alone, allocates nothing, uses no floating point, and its
inference code has no multiplication or division: every weight is a shift (unrolled into code or
decoded from a packed table), every index is advanced by constant additions, and every rescale is
an arithmetic right shift. It executes the same `IntProgram` as `potnn.simulate` and must match
it bit for bit.

C facts it relies on (true of GCC and Clang on every target potnn supports): `>>` on a negative
int32 is an arithmetic shift; conversion of an out-of-range uint32 to int32 wraps. Left shifts of
possibly negative values go through uint32 (`POTNN_SHL`), since C99 leaves them undefined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn as nn

from .config import Config
from .encoding import get_encoding, pack
from .lower import INT32_MAX, IntOp, IntProgram, TensorSpec, lower
from .memory import MemoryPlan, plan_memory, view_root

EXPORT_VERSION = 1

# Flash estimate for RV32EC/Thumb -Os code, in bytes (the bench's linker report is the exact figure).
_CODE_PER_TAP = 6  # load + add of one unrolled weight
_CODE_PER_GROUP = 6  # shift + add of one exponent group
_CODE_PER_OP = 220  # loops, requantization, call


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says what and what to do about it."""


@dataclass
class ExportReport:
    """What an export produced: sizes the budgets were checked against."""

    path: Path
    ram_bytes: int
    weight_bytes: int
    flash_estimate: int
    arena_bytes: int


def _cname(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def _term(src: str, exponent: int, signed: bool) -> str:
    """C for src * 2**exponent (a shift; through uint32 when the value may be negative)."""
    if exponent == 0:
        return src
    return f"POTNN_SHL({src}, {exponent})" if signed else f"((int32_t){src} << {exponent})"


def _requant(acc: str, shift: int, lo: int, hi: int, dst: str, ctype: str) -> list[str]:
    v = f"{acc} >> {shift}" if shift > 0 else acc if shift == 0 else f"POTNN_SHL({acc}, {-shift})"
    return [f"v = {v};", f"{dst} = ({ctype})(v < {lo} ? {lo} : v > {hi} ? {hi} : v);"]


def _c_array(ctype: str, name: str, values: list[int] | np.ndarray, per_line: int = 16) -> list[str]:
    vals = [str(int(v)) for v in values]
    lines = [f"static const {ctype} {name}[{len(vals)}] = {{"]
    for i in range(0, len(vals), per_line):
        lines.append("    " + ", ".join(vals[i:i + per_line]) + ",")
    lines.append("};")
    return lines


class _Emitter:
    """Builds the header text for one IntProgram and memory plan."""

    def __init__(self, program: IntProgram, plan: MemoryPlan) -> None:
        self.p = program
        self.plan = plan
        self.tables: list[str] = []
        self.functions: list[str] = []
        self.weight_bytes = 0
        self.code_estimate = 0

    # ---- helpers -------------------------------------------------------------------------
    def spec(self, name: str) -> TensorSpec:
        return self.p.tensors[name]

    def signed(self, name: str) -> bool:
        s = self.spec(name)
        return s.lo is None or s.lo < 0

    def table(self, ctype: str, name: str, values: list[int] | np.ndarray) -> None:
        self.tables += _c_array(ctype, name, values)
        self.weight_bytes += len(values) * {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "uint32_t": 4}[ctype]

    # ---- conv / linear -------------------------------------------------------------------
    def layer(self, op: IntOp, fn: str) -> None:
        assert op.weight is not None and op.bias is not None
        in_t, out_t = self.spec(op.inputs[0]).ctype, ("int32_t" if op.final else self.spec(op.output).ctype)
        body = self._unrolled(op) if op.encoding == "unroll" else self._packed(op, fn)
        self.functions += [f"static void {fn}(const {in_t} *in, {out_t} *out)", "{"] + \
            ["    " + line for line in body] + ["}", ""]
        self.code_estimate += _CODE_PER_OP

    def _bias_shift(self, op: IntOp, oc: int) -> tuple[int, int | None]:
        assert op.bias is not None
        return int(op.bias[oc]), (None if op.shift is None else int(op.shift[oc]))

    def _store(self, op: IntOp, dst: str, oc_shift: int | None, acc: str = "acc") -> list[str]:
        if op.final:
            return [f"{dst} = {acc};"]
        spec = self.spec(op.output)
        assert spec.lo is not None and spec.hi is not None and oc_shift is not None
        return _requant(acc, oc_shift, spec.lo, spec.hi, dst, spec.ctype)

    def _tap_groups(self, taps: list[tuple[str, int]], signed: bool) -> list[str]:
        """acc += (Σ ±x) << e, one statement per exponent: one shift per group, not one per weight."""
        by_exp: dict[int, list[tuple[bool, str]]] = {}
        for src, w in taps:
            by_exp.setdefault(int(abs(w)).bit_length() - 1, []).append((w > 0, src))
        lines = []
        for e, terms in sorted(by_exp.items()):
            pos = [src for positive, src in terms if positive]
            neg = [src for positive, src in terms if not positive]
            if pos and neg:
                expr, op, may_be_negative = " + ".join(pos) + " - " + " - ".join(neg), "+=", True
            else:
                expr, op, may_be_negative = " + ".join(pos or neg), ("+=" if pos else "-="), signed
            inner = f"({expr})" if len(terms) > 1 else expr
            lines.append(f"acc {op} {_term(inner, e, may_be_negative or signed)};")
            self.code_estimate += _CODE_PER_TAP * len(terms) + _CODE_PER_GROUP
        return lines

    def _unrolled(self, op: IntOp) -> list[str]:
        assert op.weight is not None
        signed = self.signed(op.inputs[0])
        if op.kind == "linear":
            lines = ["int32_t acc;" if op.final else "int32_t acc, v;"]
            for oc in range(op.weight.shape[0]):
                bias, sh = self._bias_shift(op, oc)
                taps = [(f"in[{i}]", int(w)) for i, w in enumerate(op.weight[oc]) if w != 0]
                lines += [f"acc = {bias};"] + self._tap_groups(taps, signed) + self._store(op, f"out[{oc}]", sh)
            return lines
        c, h, w = op.in_shape
        oc_n = op.out_shape[0]
        (kh, kw), (ph, pw) = op.kernel, op.padding
        icpg, ocpg = c // op.groups, oc_n // op.groups
        rows, cols = _edge_taps(op)
        loops = _PositionLoops(op)
        pooled = op.pool is not None
        lines = ["int32_t acc;" if op.final else "int32_t acc, v;", "int pos = 0;"]
        if pooled:
            lines.append(f"int32_t best[{oc_n}];")
        lines += loops.open_outer()
        if pooled:
            lines += [loops.pad + f"for (int oc = 0; oc < {oc_n}; oc++) best[oc] = -2147483647 - 1;"]
        lines += loops.open_inner()
        ind = loops.pad
        for ky, conds in rows.items():
            lines.append(ind + f"const int ry{ky} = {' && '.join(c_.replace('@', 'iy0') for c_ in conds)};")
        for kx, conds in cols.items():
            lines.append(ind + f"const int cx{kx} = {' && '.join(c_.replace('@', 'ix0') for c_ in conds)};")
        for oc in range(oc_n):
            bias, sh = self._bias_shift(op, oc)
            g = oc // ocpg
            groups: dict[str, list[tuple[str, int]]] = {}
            for j in range(icpg):
                ic = g * icpg + j
                for ky in range(kh):
                    for kx in range(kw):
                        wv = int(op.weight[oc, j, ky, kx])
                        if wv == 0:
                            continue
                        guard = " && ".join(([f"ry{ky}"] if ky in rows else []) + ([f"cx{kx}"] if kx in cols else []))
                        groups.setdefault(guard, []).append((f"in[base + {ic * h * w + ky * w + kx}]", wv))
            body = [f"acc = {bias};"]
            for guard, taps in sorted(groups.items()):
                stmts = self._tap_groups(taps, signed)
                body += ([f"if ({guard}) {{"] + ["    " + s_ for s_ in stmts] + ["}"]) if guard else stmts
            if pooled:
                body.append(f"if (acc > best[{oc}]) best[{oc}] = acc;")
            else:
                body += self._store(op, f"out[{oc * loops.plane} + pos]", sh)
            lines += [ind + s_ for s_ in body]
        lines += loops.close_inner()
        if pooled:
            for oc in range(oc_n):
                _, sh = self._bias_shift(op, oc)
                lines += [loops.pad + s_ for s_ in self._store(op, f"out[{oc * loops.plane} + pos]", sh, f"best[{oc}]")]
        lines += [loops.pad + "pos++;"] + loops.close_outer()
        return lines

    def _packed(self, op: IntOp, fn: str) -> list[str]:
        assert op.weight is not None and op.bias is not None
        enc = get_encoding(op.encoding)
        q = op.weight.reshape(op.weight.shape[0], -1)
        data = pack(op.encoding, q)
        if enc.unit_bytes == 4:
            words = np.frombuffer(data, dtype="<u4")
            self.table("uint32_t", f"{fn}_w", words)
        else:
            self.table("uint8_t", f"{fn}_w", np.frombuffer(data, dtype=np.uint8))
        self.table("int32_t", f"{fn}_b", op.bias)
        shifts = None if op.shift is None else [int(s) for s in op.shift]
        uniform = shifts is None or len(set(shifts)) == 1
        if not uniform:
            self.table("int8_t", f"{fn}_s", shifts)  # type: ignore[arg-type]
        signed = self.signed(op.inputs[0])
        wtype = "uint32_t" if enc.unit_bytes == 4 else "uint8_t"
        lines = [f"const {wtype} *wf = {fn}_w;", f"const {wtype} *wp = wf;", "int32_t acc;"]
        if not op.final:
            lines.append("int32_t v;")
        lines += _decoder_state(op.encoding)
        shift_expr = None if shifts is None else (str(shifts[0]) if uniform else f"{fn}_s[oc]")

        def store(dst: str, acc: str = "acc") -> list[str]:
            if op.final:
                return [f"{dst} = {acc};"]
            spec = self.spec(op.output)
            assert spec.lo is not None and spec.hi is not None and shifts is not None
            if uniform:
                return _requant(acc, shifts[0], spec.lo, spec.hi, dst, spec.ctype)
            if min(shifts) < 0:
                v = f"{shift_expr} >= 0 ? {acc} >> {shift_expr} : POTNN_SHL({acc}, -{shift_expr})"
            else:
                v = f"{acc} >> {shift_expr}"
            return [f"v = {v};", f"{dst} = ({spec.ctype})(v < {spec.lo} ? {spec.lo} : v > {spec.hi} ? {spec.hi} : v);"]

        def tap(src: str, indent: str, cond: str | None = None) -> list[str]:
            dec = _decode(op.encoding)
            term = f"POTNN_SHL({src}, e)" if signed else f"((int32_t){src} << e)"
            use = f"if (e >= 0{' && ' + cond if cond else ''}) {{ const int32_t t = {term}; acc += neg ? -t : t; }}"
            return [indent + s for s in dec + [use]]

        if op.kind == "linear":
            n_in = q.shape[1]
            lines += [f"for (int oc = 0; oc < {q.shape[0]}; oc++) {{",
                      f"    acc = {fn}_b[oc];", "    wp = wf;"] + ["    " + s for s in _decoder_reset(op.encoding)] + [
                      f"    for (int i = 0; i < {n_in}; i++) {{"] + tap("in[i]", "        ") + ["    }"] + \
                     ["    " + s for s in _decoder_finish(op.encoding)] + ["    wf = wp;"] + \
                     ["    " + s for s in store("out[oc]")] + ["}"]
            self.code_estimate += 120
            return lines
        c, h, w = op.in_shape
        oc_n = op.out_shape[0]
        (kh, kw), (ph, pw) = op.kernel, op.padding
        icpg, ocpg = c // op.groups, oc_n // op.groups
        rows, cols = _edge_taps(op)
        loops = _PositionLoops(op, depth=1)
        pooled = op.pool is not None
        in_t = "int8_t" if signed else "uint8_t"
        out_t = "int32_t" if op.final else self.spec(op.output).ctype
        lines += [f"const {in_t} *gin = in;", "int in_group = 0;", f"{out_t} *o = out;",
                  f"for (int oc = 0; oc < {oc_n}; oc++) {{", f"    const int32_t bias = {fn}_b[oc];"]
        if pooled:
            lines.append("    int32_t best;")
        lines += loops.open_outer()
        if pooled:
            lines.append(loops.pad + "best = -2147483647 - 1;")
        lines += loops.open_inner()
        ind = loops.pad
        lines += [ind + "acc = bias;", ind + "wp = wf;"] + [ind + s_ for s_ in _decoder_reset(op.encoding)]
        lines += [ind + f"const {in_t} *cin = gin;",
                  ind + f"for (int ic = 0; ic < {icpg}; ic++, cin += {h * w}) {{",
                  ind + "    int off = base;",
                  ind + f"    for (int ky = 0; ky < {kh}; ky++, off += {w}) {{"]
        if rows:
            lines.append(ind + f"        const int rowok = (unsigned)(iy0 + ky) < {h}u;")
        lines.append(ind + f"        for (int kx = 0; kx < {kw}; kx++) {{")
        conds = (["rowok"] if rows else []) + ([f"(unsigned)(ix0 + kx) < {w}u"] if cols else [])
        lines += tap("cin[off + kx]", ind + "            ", " && ".join(conds) or None)
        lines += [ind + "        }", ind + "    }", ind + "}"]
        lines += [ind + s_ for s_ in _decoder_finish(op.encoding)]
        if pooled:
            lines.append(ind + "if (acc > best) best = acc;")
            lines += loops.close_inner()
            lines += [loops.pad + s_ for s_ in store("*o++", "best")]
        else:
            lines += [ind + s_ for s_ in store("*o++")]
            lines += loops.close_inner()
        lines += loops.close_outer()
        lines += ["    wf = wp;", f"    if (++in_group == {ocpg}) {{ in_group = 0; gin += {icpg * h * w}; }}", "}"]
        self.code_estimate += 200
        return lines

    # ---- other operations ----------------------------------------------------------------
    def simple(self, op: IntOp, fn: str) -> None:
        in_t = self.spec(op.inputs[0]).ctype
        out_spec = self.spec(op.output)
        out_t = out_spec.ctype
        c, h, w = op.in_shape
        if op.kind == "maxpool":
            _, oh, ow = op.out_shape
            (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
            padded = ph > 0 or pw > 0
            body = [f"const {in_t} *cin = in;", f"for (int c = 0; c < {c}; c++, cin += {h * w}) {{",
                    f"    int rowbase = {-ph * w - pw};",
                    f"    for (int iy0 = {-ph}; iy0 < {(oh - 1) * sh - ph + 1}; iy0 += {sh}, rowbase += {sh * w}) {{",
                    "        int base = rowbase;",
                    f"        for (int ix0 = {-pw}; ix0 < {(ow - 1) * sw - pw + 1}; ix0 += {sw}, base += {sw}) {{",
                    "            int m = -2147483647 - 1;", "            int off = base;",
                    f"            for (int ky = 0; ky < {kh}; ky++, off += {w}) {{",
                    f"                for (int kx = 0; kx < {kw}; kx++) {{"]
            if padded:
                body.append(f"                    if ((unsigned)(iy0 + ky) >= {h}u || (unsigned)(ix0 + kx) >= {w}u) continue;")
            body += ["                    if (cin[off + kx] > m) m = cin[off + kx];", "                }", "            }",
                     f"            *out++ = ({out_t})m;", "        }", "    }", "}"]
            self.code_estimate += 120
        elif op.kind == "gap":
            assert op.bias is not None and op.shift is not None and out_spec.lo is not None and out_spec.hi is not None
            body = ["const " + in_t + " *p = in;", f"for (int c = 0; c < {c}; c++) {{",
                    f"    int32_t acc = {int(op.bias[0])}, v;",
                    f"    for (int i = 0; i < {h * w}; i++) acc += *p++;"]
            body += ["    " + s for s in _requant("acc", int(op.shift[0]), out_spec.lo, out_spec.hi, "out[c]", out_t)]
            body += ["}"]
            self.code_estimate += 60
        elif op.kind == "relu":
            body = [f"for (int i = 0; i < {c * h * w}; i++) out[i] = ({out_t})(in[i] > 0 ? in[i] : 0);"]
            self.code_estimate += 30
        else:  # pragma: no cover - add has its own emitter, reshape emits nothing
            raise AssertionError(op.kind)
        self.functions += [f"static void {fn}(const {in_t} *in, {out_t} *out)", "{"] + ["    " + s for s in body] + ["}", ""]

    def add(self, op: IntOp, fn: str) -> None:
        assert op.bias is not None and op.shift is not None
        a_t, b_t = self.spec(op.inputs[0]).ctype, self.spec(op.inputs[1]).ctype
        out_spec = self.spec(op.output)
        assert out_spec.lo is not None and out_spec.hi is not None
        sa, sb = op.in_shifts
        ta = _term("a[i]", sa, self.signed(op.inputs[0]))
        tb = _term("b[i]", sb, self.signed(op.inputs[1]))
        body = [f"for (int i = 0; i < {self.spec(op.output).size}; i++) {{",
                f"    const int32_t acc = {ta} + {tb} + {int(op.bias[0])};", "    int32_t v;"]
        body += ["    " + s for s in _requant("acc", int(op.shift[0]), out_spec.lo, out_spec.hi, "out[i]", out_spec.ctype)]
        body += ["}"]
        self.functions += [f"static void {fn}(const {a_t} *a, const {b_t} *b, {out_spec.ctype} *out)", "{"] + \
            ["    " + s for s in body] + ["}", ""]
        self.code_estimate += 60


def _edge_taps(op: IntOp) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Kernel rows/columns that fall into the padding for some output position, with the C test that
    says they do not ('@' stands for iy0 or ix0). Taps in other rows/columns need no test at all."""
    c, h, w = op.in_shape
    _, oh, ow = op.conv_shape or op.out_shape
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    rows: dict[int, list[str]] = {}
    cols: dict[int, list[str]] = {}
    for k, size, n_out, stride, pad, table in ((kh, h, oh, sh, ph, rows), (kw, w, ow, sw, pw, cols)):
        for t in range(k):
            conds = ([f"@ >= {-t}"] if t - pad < 0 else []) + ([f"@ < {size - t}"] if (n_out - 1) * stride - pad + t >= size else [])
            if conds:
                table[t] = conds
    return rows, cols


class _PositionLoops:
    """C loops over a conv's output positions, with iy0/ix0 (top-left input row/column, may be negative)
    and base = iy0 * W + ix0 kept by additions only — RV32EC has no multiplier.

    With a fused max-pool the outer loops walk the pooled positions and the inner ones the conv
    positions of each pool window (skipping those in the pool's padding); without, the inner loops are
    empty. Between open_outer and open_inner goes per-output set-up; between close_inner and
    close_outer the store.
    """

    def __init__(self, op: IntOp, depth: int = 0) -> None:
        self.op = op
        self.depth = depth
        _, self.h, self.w = op.in_shape
        _, self.oh, self.ow = op.conv_shape or op.out_shape
        _, py, px = op.out_shape
        self.plane = py * px
        self.pad = "    " * depth

    def _indent(self) -> str:
        self.depth += 1
        self.pad = "    " * self.depth
        return "    " * (self.depth - 1)

    def _dedent(self) -> str:
        self.depth -= 1
        self.pad = "    " * self.depth
        return self.pad

    def open_outer(self) -> list[str]:
        (sh, sw), (ph, pw), w = self.op.stride, self.op.padding, self.w
        if self.op.pool is None:
            return [self._indent() + f"for (int iy0 = {-ph}, rowbase = {-ph * w}; iy0 < {(self.oh - 1) * sh - ph + 1}; "
                    f"iy0 += {sh}, rowbase += {sh * w}) {{",
                    self._indent() + f"for (int ix0 = {-pw}; ix0 < {(self.ow - 1) * sw - pw + 1}; ix0 += {sw}) {{"]
        (_, _), (qsh, qsw), (qph, qpw) = self.op.pool
        _, py, px = self.op.out_shape
        iy = -qph * sh - ph
        ix = -qpw * sw - pw
        return [self._indent() + f"for (int oy0 = {-qph}, iyw = {iy}, roww = {iy * w}; oy0 < {(py - 1) * qsh - qph + 1}; "
                f"oy0 += {qsh}, iyw += {qsh * sh}, roww += {qsh * sh * w}) {{",
                self._indent() + f"for (int ox0 = {-qpw}, ixw = {ix}; ox0 < {(px - 1) * qsw - qpw + 1}; "
                f"ox0 += {qsw}, ixw += {qsw * sw}) {{"]

    def open_inner(self) -> list[str]:
        if self.op.pool is None:
            return [self.pad + "const int base = rowbase + ix0;"]
        (qkh, qkw), _, (qph, qpw) = self.op.pool
        (sh, sw), w = self.op.stride, self.w
        _, py, px = self.op.out_shape
        lines = [self._indent() + f"for (int wy = 0, iy0 = iyw, rowbase = roww; wy < {qkh}; wy++, iy0 += {sh}, rowbase += {sh * w}) {{"]
        if qph > 0 or (py - 1) * self.op.pool[1][0] - qph + qkh > self.oh:
            lines.append(self.pad + f"if ((unsigned)(oy0 + wy) >= {self.oh}u) continue;")
        lines.append(self._indent() + f"for (int wx = 0, ix0 = ixw; wx < {qkw}; wx++, ix0 += {sw}) {{")
        if qpw > 0 or (px - 1) * self.op.pool[1][1] - qpw + qkw > self.ow:
            lines.append(self.pad + f"if ((unsigned)(ox0 + wx) >= {self.ow}u) continue;")
        lines.append(self.pad + "const int base = rowbase + ix0;")
        return lines

    def close_inner(self) -> list[str]:
        if self.op.pool is None:
            return []
        return [self._dedent() + "}", self._dedent() + "}"]

    def close_outer(self) -> list[str]:
        return [self._dedent() + "}", self._dedent() + "}"]


def _decoder_state(encoding: str) -> list[str]:
    """Declarations of the decoder's state: e = shift of the current weight (-1 for zero), neg = its sign."""
    common = ["int e, neg;"]
    return common + {
        "fp130": ["int half;"],
        "5level": ["int half, zeros, pending;", "unsigned entry;"],
        "2bit": ["uint32_t word;", "int left;"],
        "ternary": ["unsigned byte;", "int left, prev, repeat;"],
    }[encoding]


def _decoder_reset(encoding: str) -> list[str]:
    """Start decoding a filter at wp (filters are aligned to the storage unit)."""
    return {
        "fp130": ["half = 0;"],
        "5level": ["half = 0; zeros = 0; pending = 0; entry = 0;"],
        "2bit": ["left = 0; word = 0;"],
        "ternary": ["left = 0; byte = 0; prev = 0; repeat = 0;"],
    }[encoding]


def _decoder_finish(encoding: str) -> list[str]:
    """Leave wp at the next filter's first unit (skip a half-used byte)."""
    if encoding in ("fp130", "5level"):
        return ["if (half) wp++;"]
    return []


def _decode(encoding: str) -> list[str]:
    """C statements that decode the next weight into e (shift, -1 for zero) and neg (1 if negative)."""
    if encoding == "fp130":
        return ["{ const unsigned nib = half ? (unsigned)(*wp++ >> 4) : (unsigned)(*wp & 15u); half ^= 1;",
                "  e = (int)(nib & 7u); neg = (int)(nib >> 3); }"]
    if encoding == "5level":
        return ["if (!zeros && !pending) {",
                "    entry = half ? (unsigned)(*wp++ >> 4) : (unsigned)(*wp & 15u); half ^= 1;",
                "    zeros = (int)(entry >> 2); pending = 1;",
                "}",
                "if (zeros) { zeros--; e = -1; neg = 0; }",
                "else { pending = 0; e = (entry & 1u) ? 3 : 0; neg = (int)((entry >> 1) & 1u); }"]
    if encoding == "2bit":
        return ["if (!left) { word = *wp++; left = 16; }",
                "{ const unsigned code = (unsigned)(word & 3u); word >>= 2; left--;",
                "  e = (int)(code & 1u); neg = (int)(code >> 1); }"]
    if encoding == "ternary":
        return ["if (repeat) { repeat--; }",
                "else {",
                "    unsigned code;",
                "    if (!left) { byte = *wp++; left = 4; }",
                "    code = byte & 3u; byte >>= 2; left--;",
                "    if (code == 3u) repeat = 1; else prev = code == 1u ? 1 : code == 2u ? -1 : 0;",
                "}",
                "e = prev ? 0 : -1; neg = prev < 0;"]
    raise AssertionError(encoding)


def _check_bounds(program: IntProgram) -> None:
    """Worst-case |accumulator| of every operation must fit int32: the C accumulates in int32 only."""
    for op in program.ops:
        if op.kind in ("conv", "linear"):
            assert op.weight is not None and op.bias is not None
            mag = program.tensors[op.inputs[0]].magnitude
            worst = np.abs(op.weight.reshape(op.weight.shape[0], -1)).sum(1) * mag + np.abs(op.bias)
            if op.shift is not None:
                worst = worst << np.maximum(-op.shift, 0)
            bound = int(worst.max())
        elif op.kind == "gap":
            assert op.bias is not None and op.shift is not None
            bound = (program.tensors[op.inputs[0]].magnitude * op.in_shape[1] * op.in_shape[2] + abs(int(op.bias[0])))
            bound <<= max(-int(op.shift[0]), 0)
        elif op.kind == "add":
            assert op.bias is not None and op.shift is not None
            ma, mb = (program.tensors[i].magnitude for i in op.inputs)
            bound = ((ma << op.in_shifts[0]) + (mb << op.in_shifts[1]) + abs(int(op.bias[0])))
            bound <<= max(-int(op.shift[0]), 0)
        else:
            continue
        if bound > INT32_MAX:
            raise ExportError(f"{op.name}: worst-case accumulator {bound} does not fit int32; "
                              "reduce the layer's fan-in or its weight range, or recalibrate")


def _check_config(model: nn.Module, config: Config) -> None:
    trained = getattr(model, "_potnn_config", None)
    if trained is None:
        raise ExportError("the model has not been prepared: run potnn.train, or potnn.calibrate and "
                          "potnn.prepare_qat, before potnn.export")
    for what in ("mean", "std", "input_shape", "layer_encodings", "default_encoding", "per_channel"):
        a = getattr(trained, what)
        b = getattr(config, what)
        if what in ("mean", "std"):
            a, b = getattr(trained, f"channel_{what}")(), getattr(config, f"channel_{what}")()
        if a != b:
            raise ExportError(f"Config.{what} is {b!r} but the model was prepared with {a!r}; "
                              "export with the Config the model was trained with")


def render(program: IntProgram, config: Config) -> tuple[str, ExportReport]:
    """The header text for an IntProgram, after checking its accumulators and its RAM/flash budgets."""
    _check_bounds(program)
    final_spec = program.tensors[program.output]
    logits_external = final_spec.ctype == "int32_t"
    plan = plan_memory(program, {program.output} if logits_external else set())
    em = _Emitter(program, plan)
    calls: list[str] = []
    descr: list[str] = []

    def ref(name: str) -> str:
        spec = program.tensors[name]
        if view_root(program, name) == program.input:
            return "input"
        if name == program.output and logits_external:
            return "out"
        return f"(({spec.ctype} *)(potnn_arena.bytes + {plan.offsets[name]}))"

    for i, op in enumerate(program.ops):
        if op.kind == "reshape":
            continue
        fn = f"potnn_{i}_{_cname(op.name)}"
        if op.kind in ("conv", "linear"):
            em.layer(op, fn)
        elif op.kind == "add":
            em.add(op, fn)
        else:
            em.simple(op, fn)
        args = ", ".join(ref(n) for n in op.inputs)
        calls.append(f"    {fn}({args}, {ref(op.output)});")
        out = program.tensors[op.output]
        where = "logits" if op.output == program.output and logits_external else f"arena+{plan.offsets.get(op.output, 0)}"
        detail = ""
        if op.kind in ("conv", "linear"):
            assert op.weight is not None
            nz = int(np.count_nonzero(op.weight))
            detail = f" {op.encoding}, {nz}/{op.weight.size} nonzero weights"
            if op.kind == "conv":
                detail = f" {op.kernel[0]}x{op.kernel[1]}/s{op.stride[0]}{'' if op.groups == 1 else f' groups {op.groups}'}" + detail
        descr.append(f" *   {op.name:<16} {op.kind}{detail} -> {'x'.join(map(str, out.shape))} {out.ctype} @ {where}")

    k = program.num_classes
    ram = plan.arena_bytes + 4 * k
    weight_bytes = em.weight_bytes
    flash = weight_bytes + em.code_estimate + 160
    c, h, w = program.input_shape
    if ram > config.ram:
        raise ExportError(f"model needs {ram} bytes of RAM (activation buffers {plan.arena_bytes} + logits {4 * k}) "
                          f"but Config.ram is {config.ram}: use fewer channels, pool earlier, or raise Config.ram")
    if flash > config.flash:
        raise ExportError(f"model needs about {flash} bytes of flash (weights {weight_bytes} + code ~{em.code_estimate}) "
                          f"but Config.flash is {config.flash}: use a packed encoding (fp130, 5level, 2bit, ternary) "
                          "for the large layers, fewer channels, or raise Config.flash")

    argmax = ["    int best = 0;", f"    for (int i = 1; i < {k}; i++) if (out[i] > out[best]) best = i;", "    return best;"]
    head = ["    int32_t *out = logits ? logits : potnn_logits;"]
    if not logits_external:
        argmax = [f"    for (int i = 0; i < {k}; i++) out[i] = {ref(program.output)}[i];"] + argmax
    model_name = str(program.meta.get("model", "model"))
    text = "\n".join([
        f"/* potnn export v{EXPORT_VERSION}: {model_name}. Generated by potnn.export; do not edit.",
        " *",
        f" * Input: raw uint8 pixels, C x H x W = {c} x {h} x {w} (normalisation is folded into the first layer).",
        f" * Output: {k} int32 logits; potnn_predict returns the index of the first largest one.",
        f" * RAM: {ram} bytes (activation arena {plan.arena_bytes}, logits {4 * k}); weight tables: {weight_bytes} bytes.",
        " * Must equal potnn.simulate bit for bit. Assumes >> on negative int32 is arithmetic (GCC, Clang).",
        " *",
        " * Operations:",
        *descr,
        " */",
        "#ifndef POTNN_MODEL_H",
        "#define POTNN_MODEL_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define POTNN_EXPORT_VERSION {EXPORT_VERSION}",
        f"#define POTNN_INPUT_C {c}",
        f"#define POTNN_INPUT_H {h}",
        f"#define POTNN_INPUT_W {w}",
        f"#define POTNN_INPUT_SIZE {c * h * w}",
        f"#define POTNN_NUM_CLASSES {k}",
        f"#define POTNN_RAM_BYTES {ram}",
        f"#define POTNN_WEIGHT_BYTES {weight_bytes}",
        f"#define POTNN_FLASH_ESTIMATE {flash}",
        "",
        "int potnn_predict(const uint8_t *input, int32_t *logits);",
        "",
        "/* x << n for a value that may be negative (C99 leaves that undefined for signed types). */",
        "#define POTNN_SHL(x, n) ((int32_t)((uint32_t)(int32_t)(x) << (n)))",
        "",
        f"static union {{ uint32_t align; uint8_t bytes[{max(plan.arena_bytes, 4)}]; }} potnn_arena;",
        f"static int32_t potnn_logits[{k}];",
        "",
        *em.tables,
        "",
        *em.functions,
        "int potnn_predict(const uint8_t *input, int32_t *logits)",
        "{",
        *head,
        *calls,
        *argmax,
        "}",
        "",
        "#endif /* POTNN_MODEL_H */",
        "",
    ])
    return text, ExportReport(Path(), ram, weight_bytes, flash, plan.arena_bytes)


def export(model: nn.Module | IntProgram, path: str | Path, config: Config) -> ExportReport:
    """Write the model as one C header at `path`; refuse (ExportError) a model over Config.ram/Config.flash.

    Neither the model nor the config is changed. Returns the sizes the budgets were checked against.
    """
    if isinstance(model, IntProgram):
        program = model
    else:
        _check_config(model, config)
        program = lower(model)
    text, report = render(program, config)
    path = Path(path)
    path.write_text(text)
    report.path = path
    return report
