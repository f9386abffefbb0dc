"""`potnn.export`: one standalone C99 header that runs the integer model with shifts and adds only.

The header depends on `<stdint.h>` alone, allocates nothing, uses no floating point, and its
inference code has no multiplication or division: every weight is a shift (unrolled into code or
decoded from a packed table), every index is advanced by constant additions, and every rescale is
an arithmetic right shift. It executes the same `IntProgram` as `potnn.simulate` and must match
it bit for bit.

How the kernels are made fast on a 16-register core without a multiplier (RV32EC):

* Unrolled layers: every nonzero weight is code, inputs are loaded with constant offsets from a
  base pointer (`lbu rX, off(rB)`, small immediates). Linear layers go output by output, weights
  of equal exponent sharing one shift; convs go input-major: each input is loaded once per block
  of up to 8 output channels (3 when pooled and sparse) and added into their register accumulators.
  Convs have no padding test in that code: per output position the receptive field is read in
  place when it lies inside the image, else copied with zeros into a small stack buffer with the
  same offsets (or, for multi-channel inputs, always copied into a compact buffer). A block's taps
  are summed by exponent, largest first, so an accumulator is shifted once per exponent, not once
  per weight, unless summing input by input needs fewer instructions (dense blocks). A fused
  max-pool keeps a running max per channel in a register, per block of channels.
  When the code would not fit Config.flash, a linear layer's larger groups of equal weights become
  tables of input indices summed by a small kernel (`potnn_gather_*`), and pooled convs keep their
  pool-window loop: the fastest form that fits is the one exported.
* Packed layers: one small dot-product kernel per encoding (`potnn_dot_*`), decoding a whole byte
  or word per iteration without branches; negative terms are added as one's complements and the
  bias table carries the correction. A conv copies its receptive field in packing order once per
  position and calls the kernel per filter, exactly as a linear layer does. The kernels are
  marked `POTNN_RAMFUNC`, which a firmware may define to place them in SRAM.
* Layers whose receptive field is too big for a stack copy (PATCH_LIMIT, PACKED_PATCH_LIMIT) fall
  back to per-tap padding tests (unrolled) or weight-by-weight streaming decoders (packed).

C facts it relies on (true of GCC and Clang on every target potnn supports): `>>` on a negative
int32 is an arithmetic shift; conversion of an out-of-range uint32 to int32 wraps. Left shifts of
possibly negative values go through uint32 (`POTNN_SHL`), since C99 leaves them undefined.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn as nn

from .config import Config
from .encoding import filter_offsets, get_encoding, pack, packed_size
from .lower import INT32_MAX, IntOp, IntProgram, TensorSpec, lower
from .memory import MemoryPlan, plan_memory, view_root

EXPORT_VERSION = 1

# Largest receptive-field copy a kernel keeps on the stack, in bytes: unrolled convs (16 channels x 3x3
# fit; beyond, per-tap padding tests cost little) and packed convs (whose fallback, decoding every weight
# at every position, is about three times slower). The CH32V003 has 2 KB of SRAM for everything.
PATCH_LIMIT = 256
PACKED_PATCH_LIMIT = 256

# Unrolled convs run input-major: each input is loaded once per block of up to this many output channels
# and added into their register accumulators (RV32EC: 8 accumulators, the input, a temporary and the
# pointers fit its 16 registers). A pooled conv also keeps each channel's running max in a register,
# so its blocks are smaller (on the zoo's weights, RV32EC -Os, 3 channels were fastest overall: 2 within
# 1 %, 4 to 6 slower by 3-5 % from spills).
_ACCUMULATORS = 8
_POOLED_ACCUMULATORS = 3
# ... unless its filters have this many nonzero weights on average: then loads dominate, and blocks of 8
# (maxes partly spilled) beat blocks of 3 (measured: 72-weight dense filters 139k vs 166k instructions,
# 22-weight pruned ones 87k at 3 vs 89k at 4).
DENSE_FAN_IN = 48

# A pooled unrolled conv repeats its code for each conv position of a pool window (constant offsets, no
# window loop: about a tenth fewer instructions) while all the copies hold at most this many weights,
# and while the model then still fits Config.flash (else every window is a loop again).
UNROLLED_WINDOW_TAPS = 512

# A border copy (receptive field partly in the padding) is unrolled per group up to this many elements
# in all groups together, and a loop with run-time tests beyond (depthwise layers with large windows).
LOOPED_COPY_ELEMENTS = 96

# An unrolled linear layer whose code would not fit the flash sums its larger groups of equal weights
# (one output, exponent and sign) from tables of input indices instead: groups of at least 32 weights
# first, then 16, 8 ... (tried in this order until the model fits).
GATHER_GROUPS = (32, 16, 8, 4, 2, 1)

# Flash estimate: bytes of GCC 12 -Os RV32EC code per construct the emitter writes (the bench's linker
# report is the exact figure). Fitted per function to the builds of the stress test's random models and
# the kernel benchmark's, then raised (per-weight items by 4 %, the rest by 40 %) until no model was
# underestimated: over 133 models the estimate is 1.01-1.7x the real size, 1.16x on average, within
# 25 % for 90 % of the models over 2 KB (tests/test_core.py checks it stays above). Cortex-M0+ code is mostly smaller, but not for large
# unrolled linear layers (Thumb's ldrb reaches only 31 bytes from its base): the build checks that.
_CODE_BYTES: dict[str, int] = {
    "predict": 48,  # potnn_predict: argmax, logits copy
    "call": 8,  # one layer call in potnn_predict
    "layer": 12,  # a layer function's prologue, epilogue, call
    "tap": 7,  # one unrolled weight: lbu + add
    "conv_tap": 8,  # one weight of the fallback conv
    "group": 5,  # one exponent group: shift + add
    "pixel_tap": 3,  # input-major: add into an accumulator
    "pixel_shift": 4,  # input-major: shift an accumulator to the next exponent
    "pixel_load": 5,  # input-major: one lbu
    "pixel_block": 6,  # input-major: one block of accumulators (and its POTNN_OPAQUE)
    "store": 20,  # requantise (shift, clamp) and store one output
    "store_table": 29,  # ... with the shift from a table
    "pool_max": 8,  # running max of a pooled output, in a register
    "window_loop": 23,  # loop over a pool window's conv positions
    "dyn_windows": 93,  # list of the windows inside the conv output
    "conv_loops": 43,  # position loops
    "guard_flag": 13,  # one row/column padding flag
    "group_select": 12,  # read in place or copy, per group
    "copy": 13,  # one element of an interior receptive-field copy
    "copy_test": 7,  # one padding test in a border copy
    "copy_guarded": 11,  # one element of a border copy
    "copy_block": 34,  # one copy loop
    "copy_looped": 84,  # one border copy as a loop with run-time tests
    "guard": 8,  # one padding test (fallback conv)
    "packed_linear": 100,  # a packed linear layer's loop and call
    "gather_output": 20,  # an output of an unrolled linear layer summed by potnn_gather (the call)
    "kernel_gather": 130,  # a potnn_gather kernel
    "packed_conv": 149,  # a packed conv's loops, copy set-up, calls
    "packed_conv_pool": 152,  # ... its max-pool
    "packed_conv_groups": 24,  # ... its group loop
    "streaming_conv": 478,  # fallback packed conv with its own decoder
    "maxpool": 205,
    "gap": 90,
    "relu": 40,
    "add": 78,
    "kernel_fp130": 238,  # a dot-product kernel (measured; POTNN_KERNEL keeps it generic)
    "kernel_2bit": 288,  # a dot-product kernel (measured; POTNN_KERNEL keeps it generic)
    "kernel_5level": 142,  # a dot-product kernel (measured; POTNN_KERNEL keeps it generic)
    "kernel_ternary": 358,  # a dot-product kernel (measured; POTNN_KERNEL keeps it generic)
}


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

    def __init__(self, program: IntProgram, plan: MemoryPlan, window_taps: int = 0, gather_min: int = 0) -> None:
        self.p = program
        self.plan = plan
        self.window_taps = window_taps  # pooled unrolled convs with at most this many weights x windows repeat them
        self.repeated_windows = 0  # blocks whose code is repeated per pool window
        self.gather_min = gather_min  # unrolled linear: weight groups this big are summed from index tables (0: never)
        self.tables: list[str] = []
        self.functions: list[str] = []
        self.weight_bytes = 0
        self.cost: Counter[str] = Counter()  # code constructs emitted, for the flash estimate
        self.kernels: set[tuple[str, bool]] = set()  # (encoding, signed input) of the dot kernels used
        self.gather_kernels: set[tuple[bool, str]] = set()  # (signed input, index type) of the gather kernels used

    # ---- helpers -------------------------------------------------------------------------
    def spec(self, name: str) -> TensorSpec:
        return self.p.tensors[name]

    def signed(self, name: str) -> bool:
        s = self.spec(name)
        return s.lo is None or s.lo < 0

    def table(self, ctype: str, name: str, values: list[int] | np.ndarray) -> None:
        self.tables += _c_array(ctype, name, values)
        self.weight_bytes += len(values) * {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4,
                                            "uint32_t": 4}[ctype]

    def kernel_text(self) -> list[str]:
        """The dot-product kernels the packed layers call, each once."""
        lines: list[str] = []
        for encoding, signed in sorted(self.kernels):
            lines += _dot_kernel(encoding, signed)
            self.cost[f"kernel_{encoding}"] += 1
        for signed, index_t in sorted(self.gather_kernels):
            lines += _gather_kernel(signed, index_t)
            self.cost["kernel_gather"] += 1
        return lines

    # ---- conv / linear -------------------------------------------------------------------
    def layer(self, op: IntOp, fn: str) -> None:
        assert op.weight is not None and op.bias is not None
        in_t, out_t = self.spec(op.inputs[0]).ctype, ("int32_t" if op.final else self.spec(op.output).ctype)
        if op.encoding == "unroll":
            body = self._unrolled_linear(op, fn) if op.kind == "linear" else \
                (self._unrolled_conv(op) or self._unrolled_conv_guarded(op))
        elif op.kind == "linear":
            body = self._packed_linear(op, fn)
        else:
            body = self._packed_conv(op, fn) or self._packed_streaming(op, fn)
        self.functions += [f"POTNN_NOINLINE static void {fn}(const {in_t} *in, {out_t} *out)", "{"] + \
            ["    " + line for line in body] + ["}", ""]
        self.cost["layer"] += 1

    def _bias_shift(self, op: IntOp, oc: int) -> tuple[int, int | None]:
        assert op.bias is not None
        return int(op.bias[oc]), (None if op.shift is None else int(op.shift[oc]))

    def _store(self, op: IntOp, dst: str, oc_shift: int | None, acc: str = "acc") -> list[str]:
        self.cost["store"] += 1
        if op.final:
            return [f"{dst} = {acc};"]
        spec = self.spec(op.output)
        assert spec.lo is not None and spec.hi is not None and oc_shift is not None
        return _requant(acc, oc_shift, spec.lo, spec.hi, dst, spec.ctype)

    def _store_biased(self, op: IntOp, oc: int, dst: str, acc: str = "acc") -> list[str]:
        """Store acc + bias[oc] (the taps are summed without the bias; adding it once after a max-pool is
        the same as adding it to every window, and saves an instruction per window)."""
        bias, sh = self._bias_shift(op, oc)
        return self._store(op, dst, sh, f"({acc} {'+' if bias > 0 else '-'} {abs(bias)})" if bias else acc)

    def _tap_groups(self, taps: list[tuple[str, int]], signed: bool, init: bool = False,
                    conv: bool = False) -> list[str]:  # conv: the fallback guarded conv (cost only)
        """acc += (Σ ±x) << e, one statement per exponent: one shift per group, not one per weight.

        With `init` the first statement assigns acc (no separate `acc = 0`)."""
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
            term = _term(inner, e, may_be_negative or signed)
            if init and not lines:
                negated = f"-{term}" if term[0] == "(" or term.startswith("POTNN") else f"-({term})"
                lines.append(f"acc = {term if op == '+=' else negated};")
            else:
                lines.append(f"acc {op} {term};")
            self.cost["conv_tap" if conv else "tap"] += len(terms)
            self.cost["group"] += 1
        if init and not lines:
            lines.append("acc = 0;")
        return lines

    def _unrolled_linear(self, op: IntOp, fn: str) -> list[str]:
        """Each output: its nonzero weights as shift-add code over in[], through a pointer the compiler
        must re-read (POTNN_OPAQUE) so it does not try to keep 100+ inputs in RV32EC's 16 registers.

        When the code would not fit the flash (render sets gather_min), an output's groups of at least
        gather_min equal weights are instead lists of input indices in a table, summed by one call of
        potnn_gather_* per output: one or two bytes per weight (the index) instead of about six of code,
        for five to seven instructions per weight instead of two (RV32EC; fewer for longer groups)."""
        assert op.weight is not None
        signed = self.signed(op.inputs[0])
        in_t = self.spec(op.inputs[0]).ctype
        index_t = "uint8_t" if op.weight.shape[1] < 256 else "uint16_t"  # counts (<= inputs) share the type
        levels = get_encoding("unroll").max_shift + 1
        indices: list[int] = []
        counts: list[int] = []
        lines = [f"const {in_t} *p;", "int32_t acc;" if op.final else "int32_t acc, v;"]
        for oc in range(op.weight.shape[0]):
            taps: list[tuple[str, int]] = []
            row_counts = []
            for e in range(levels - 1, -1, -1):
                for w in (1 << e, -(1 << e)):
                    members = np.flatnonzero(op.weight[oc] == w).tolist()
                    gathered = bool(self.gather_min) and len(members) >= self.gather_min
                    row_counts.append(len(members) if gathered else 0)
                    indices += members if gathered else []
                    taps += [] if gathered else [(f"p[{i}]", w) for i in members]
            code = self._tap_groups(taps, signed, init=not any(row_counts))
            if any(row_counts):
                start = len(indices) - sum(row_counts)
                call = f"{_gather_name(signed, index_t)}(p, {fn}_i + {start}, {fn}_n + {len(counts)})"
                code = [f"acc = {call};"] + code
                counts += row_counts
                self.gather_kernels.add((signed, index_t))
                self.cost["gather_output"] += 1
            lines += ["p = in;", "POTNN_OPAQUE(p);"] + code + self._store_biased(op, oc, f"out[{oc}]")
        if indices:
            self.tables.append(f"/* {fn}: the weights summed by {_gather_name(signed, index_t)}: per output, the "
                               f"count of each exponent {levels - 1}..0, positive then negative; their input indices */")
            self.table(index_t, f"{fn}_n", counts)
            self.table(index_t, f"{fn}_i", indices)
        return lines

    def _unrolled_conv(self, op: IntOp) -> list[str] | None:
        """Unrolled conv without a single padding test in the per-channel code (None: receptive field too
        big for a stack copy; the caller falls back to per-tap guards).

        Per (pooled) output position, the input area its window reads (the 'union', per input channel) is
        read in place when it lies inside the image, else copied with zeros for the padding into a stack
        buffer with the input's own strides ('in place' layout, when that buffer is small), or it is always
        copied into a compact [channel][row][column] buffer. Every tap then loads `p[constant]` (one lbu
        with a small immediate), input-major and by exponent (see _input_major): about one lbu and one add
        per weight. A fused max-pool keeps each channel's running max in a register, so its blocks hold 3
        channels (8 when the filters are dense, DENSE_FAN_IN); the block's code is repeated per conv
        position of the pool window when the copies stay small (UNROLLED_WINDOW_TAPS), else it loops over
        the window's offsets woff[]. The bias and the
        taps' common power of two are applied once, after the max. Measured on a pruned 12+24-channel
        network (mnist16-fast's recipe at 50+30 epochs; RV32EC, -Os) against the previous form (one
        shift per weight, all channels of a group around a window loop with the maxes in a stack array):
        166,773 -> 139,701 instructions per inference.
        """
        assert op.weight is not None
        g = _Geometry.of(op)
        strided = (g.icpg - 1) * g.hw + (g.uh - 1) * g.w + g.uw
        compact = g.icpg * g.uh * g.uw
        if strided <= PATCH_LIMIT and g.uh <= g.h and g.uw <= g.w:  # (a wider window would overlap itself)
            rs, cs, size, in_place = g.w, g.hw, strided, True  # row and channel strides: the input's
        elif compact <= PATCH_LIMIT:
            rs, cs, size, in_place = g.uw, g.uh * g.uw, compact, False
        else:
            return None
        signed = self.signed(op.inputs[0])
        in_t = self.spec(op.inputs[0]).ctype
        out_t = "int32_t" if op.final else self.spec(op.output).ctype
        rows, cols = g.guards()
        guarded = bool(rows or cols)
        self.cost["guard_flag"] += sum(map(len, rows.values())) + sum(map(len, cols.values()))
        pooled = op.pool is not None
        woffs = [wy * g.sh * rs + wx * g.sw for wy in range(g.qkh) for wx in range(g.qkw)]
        woff_t = "uint8_t" if max(woffs) < 256 else "uint16_t"
        # repeat the per-window code rather than loop over the windows while that costs little flash
        unroll_windows = pooled and g.windows_static and \
            int((op.weight != 0).sum()) * len(woffs) <= self.window_taps
        lines = [] if op.final else ["int32_t v;"]
        lines += [f"const {in_t} *src, *p;", f"{out_t} *o = out;"]
        if guarded or not in_place:
            lines.append(f"{in_t} patch[{size}];")
        if pooled and g.windows_static and not unroll_windows:
            lines.append(f"static const {woff_t} woff[{len(woffs)}] = {{{', '.join(map(str, woffs))}}};")
        elif pooled and not g.windows_static:
            lines += [f"{woff_t} woff[{len(woffs)}];", "int nwin;"]
        dynamic = pooled and not g.windows_static
        looped = op.groups * g.uh * g.uw > LOOPED_COPY_ELEMENTS and bool(rows or cols)
        iy = f", iy = {g.iy0}" if rows or looped else ""
        iy_step = f", iy += {g.dy}" if rows or looped else ""
        cy = f", cy = {-g.qph}" if dynamic else ""
        cy_step = f", cy += {g.qsh}" if dynamic else ""
        lines.append(f"for (int Y = 0{iy}, row = {g.iy0 * g.w}{cy}; Y < {g.py}; "
                     f"Y++{iy_step}, row += {g.dy * g.w}{cy_step}) {{")
        outer = []
        interior = g.interior()
        flags = not looped or interior  # the flags feed the unrolled border copy and the interior test
        for r, conds in rows.items() if flags else ():
            outer.append(f"const int ry{r} = {' && '.join(c_.replace('@', 'iy') for c_ in conds)};")
        xtrack = f", cx = {-g.qpw}" if dynamic else ""
        xstep = f", cx += {g.qsw}" if dynamic else ""
        outer.append(f"for (int X = 0, ix = {g.ix0}{xtrack}; X < {g.px}; X++, ix += {g.dx}{xstep}, o++) {{")
        inner = ["const int b = row + ix;"]
        for cc, conds in cols.items() if flags else ():
            inner.append(f"const int cx{cc} = {' && '.join(c_.replace('@', 'ix') for c_ in conds)};")
        if guarded and interior:
            inner.append(f"const int inside = {' && '.join([f'ry{r}' for r in rows] + [f'cx{c_}' for c_ in cols])};")
        if dynamic:
            inner += ["nwin = 0;",
                      f"for (int wy = 0, ro = 0; wy < {g.qkh}; wy++, ro += {g.sh * rs}) {{",
                      f"    if ((unsigned)(cy + wy) >= {g.oh}u) continue;",
                      f"    for (int wx = 0, co = ro; wx < {g.qkw}; wx++, co += {g.sw})",
                      f"        if ((unsigned)(cx + wx) < {g.ow}u) woff[nwin++] = ({woff_t})co;",
                      "}"]
            self.cost["dyn_windows"] += 1
        for gi in range(op.groups):
            first = gi * g.icpg * g.hw
            src_off = f"b + {first}" if first else "b"
            copy = self._patch_copy(g, in_t, src_off, rs, cs, rows, cols, in_place, "iy,ix" if looped else None,
                                    interior)
            self.cost["group_select"] += 1
            if in_place and guarded and interior:
                inner += ["if (inside) {", f"    src = in + {src_off};", "} else {"] + \
                    ["    " + s for s in copy] + ["    src = patch;", "}"]
            elif in_place and guarded:
                inner += copy + ["src = patch;"]
            elif in_place:
                inner.append(f"src = in + {src_off};")
            else:
                inner += copy + ["src = patch;"]
            ocs = range(gi * g.ocpg, (gi + 1) * g.ocpg)
            offsets = [(j * cs + ky * rs + kx, j, ky, kx)
                       for j in range(g.icpg) for ky in range(g.kh) for kx in range(g.kw)]
            fan_in = int(np.count_nonzero(op.weight[list(ocs)])) / len(ocs)
            pooled_block = _POOLED_ACCUMULATORS if fan_in < DENSE_FAN_IN else _ACCUMULATORS
            n_blocks = -(-len(ocs) // (pooled_block if pooled else _ACCUMULATORS))
            if not pooled:
                inner.append("p = src;")
            for k in range(n_blocks):  # equal blocks: 12 channels as 6+6 rather than 8+4
                block = list(ocs[k * len(ocs) // n_blocks:(k + 1) * len(ocs) // n_blocks])
                self.cost["pixel_block"] += 1
                if not pooled:
                    blk, exps = self._input_major(op, block, offsets, signed)
                    for i, oc in enumerate(block):
                        blk += self._store_biased(op, oc, f"o[{oc * g.plane}]", _term(f"a{i}", exps[i], True))
                    inner += ["{", "    POTNN_OPAQUE(p);"] + ["    " + s_ for s_ in blk] + ["}"]
                    continue
                # The block's pool windows, each channel's running max in a register (m_i); the taps' common
                # power of two is applied once, after the max (a shift preserves order). Small layers
                # repeat their code per window (constant offsets, no loop); the others loop over woff[].
                if unroll_windows:
                    inner += ["{", f"    int32_t {', '.join(f'm{i}' for i in range(len(block)))};", "    p = src;"]
                    for w, wo in enumerate(woffs):
                        blk, exps = self._input_major(op, block, [(o_ + wo, j, ky, kx) for o_, j, ky, kx in offsets],
                                                      signed)
                        blk += [f"m{i} = a{i};" if w == 0 else f"if (a{i} > m{i}) m{i} = a{i};"
                                for i in range(len(block))]
                        if w + 1 < len(woffs):  # the next window's loads wait for these maxes
                            blk += [f"POTNN_AFTER(p, m{i});" for i in range(len(block))]
                        inner += ["    {", "        POTNN_OPAQUE(p);"] + ["        " + s_ for s_ in blk] + ["    }"]
                    self.cost["pool_max"] += len(block) * (len(woffs) - 1)
                    self.repeated_windows += 1
                else:
                    blk, exps = self._input_major(op, block, offsets, signed)
                    blk += [f"if (a{i} > m{i}) m{i} = a{i};" for i in range(len(block))]
                    n = str(len(woffs)) if g.windows_static else "nwin"
                    inner += ["{", f"    int32_t {', '.join(f'm{i} = -2147483647 - 1' for i in range(len(block)))};",
                              f"    for (int k = 0; k < {n}; k++) {{", "        p = src + woff[k];",
                              "        POTNN_OPAQUE(p);"] + ["        " + s_ for s_ in blk] + ["    }"]
                    self.cost["pool_max"] += len(block)
                    self.cost["window_loop"] += 1
                for i, oc in enumerate(block):
                    inner += ["    " + s_ for s_ in
                              self._store_biased(op, oc, f"o[{oc * g.plane}]", _term(f"m{i}", exps[i], True))]
                inner.append("}")
        lines += ["    " + s for s in outer] + ["        " + s for s in inner] + ["    }", "}"]
        self.cost["conv_loops"] += 1
        return lines

    def _input_major(self, op: IntOp, block: list[int], offsets: list[tuple[int, int, int, int]],
                     signed: bool) -> tuple[list[str], list[int]]:
        """Accumulators a0.. for the output channels in `block`, input by input, in whichever of two orders
        needs fewer instructions (estimated: loads + adds + shifts). Returns the lines and, per channel,
        a left shift still to apply to its sum (after a max-pool's max: a shift keeps the order).

        * By exponent, largest first (Horner's scheme): an input is loaded once per exponent among the
          block's weights for it, and an accumulator is shifted only when its next weight has a smaller
          exponent than its last: once per distinct exponent, not once per weight. Pays for sparse
          blocks, whose inputs rarely feed two channels.
        * By input: each input loaded once per block and added, shifted, into every accumulator that
          uses it. Pays for dense blocks with many inputs per channel.

        The caller's POTNN_OPAQUE(p) keeps GCC from carrying the loaded inputs over to the next block
        in spilled registers."""
        assert op.weight is not None
        w = op.weight
        uses = [[(i, int(w[oc, j, ky, kx])) for i, oc in enumerate(block) if w[oc, j, ky, kx]]
                for _, j, ky, kx in offsets]
        exponent = {v: int(abs(v)).bit_length() - 1 for u in uses for _, v in u}
        n_taps = sum(map(len, uses))
        loaded = sum(1 for u in uses if u)
        by_input = loaded + n_taps + sum(len({exponent[v] for _, v in u} - {0}) for u in uses)
        # by exponent, an input is read again for each exponent, except that next to a small block GCC
        # keeps a 3x3 window's worth in registers (measured: a one-channel 3x3 conv in blocks of 3 is
        # fastest by exponent even when dense; in blocks of 8 it is not)
        small = len(block) <= _POOLED_ACCUMULATORS and loaded <= 9
        pairs = loaded if small else sum(len({exponent[v] for _, v in u}) for u in uses)
        per_channel: list[set[int]] = [set() for _ in block]
        for u in uses:
            for i, v in u:
                per_channel[i].add(exponent[v])
        by_exponent = pairs + n_taps + sum(max(len(e) - 1, 0) for e in per_channel)
        lines = [f"int32_t x, {', '.join(f'a{i}' for i in range(len(block)))};"]
        if by_input < by_exponent:
            started = [False] * len(block)
            for (o_, _, _, _), u in zip(offsets, uses):
                if not u:
                    continue
                lines.append(f"x = p[{o_}];")
                self.cost["pixel_load"] += 1
                for i, v in u:
                    term = _term("x", exponent[v], signed)
                    if not started[i]:
                        lines.append(f"a{i} = {term};" if v > 0 else f"a{i} = -{term};")
                        started[i] = True
                    else:
                        lines.append(f"a{i} {'+' if v > 0 else '-'}= {term};")
                    self.cost["pixel_tap"] += 1
                    self.cost["pixel_shift"] += exponent[v] > 0
            lines += [f"a{i} = 0;" for i in range(len(block)) if not started[i]]
            return lines, [0] * len(block)
        level: list[int | None] = [None] * len(block)  # each accumulator's current exponent
        for e in range(max(exponent.values(), default=-1), -1, -1):
            for (o_, _, _, _), u in zip(offsets, uses):
                here = [(i, v) for i, v in u if exponent[v] == e]
                if not here:
                    continue
                lines.append(f"x = p[{o_}];")
                self.cost["pixel_load"] += 1
                for i, v in here:
                    sign = "+" if v > 0 else "-"
                    if level[i] is None:
                        lines.append(f"a{i} = x;" if v > 0 else f"a{i} = -x;")
                    elif level[i] != e:
                        lines.append(f"a{i} = POTNN_SHL(a{i}, {level[i] - e}) {sign} x;")
                        self.cost["pixel_shift"] += 1
                    else:
                        lines.append(f"a{i} {sign}= x;")
                    level[i] = e
                    self.cost["pixel_tap"] += 1
        lines += [f"a{i} = 0;" for i in range(len(block)) if level[i] is None]
        return lines, [lv or 0 for lv in level]

    def _patch_copy(self, g: "_Geometry", in_t: str, src_off: str, rs: int, cs: int,
                    rows: dict[int, list[str]], cols: dict[int, list[str]], in_place: bool,
                    looped: str | None = None, interior: bool = True) -> list[str]:
        """C that fills patch[] with the union window of one group's input channels, zeros in the padding.

        An interior position of a 'compact' buffer copies without tests; a position on the border tests
        the rows/columns that can fall outside (flags ryR/cxC) per element. An in-place layout only ever
        copies border positions. `looped` ("iy,ix": the window's top row and left column) makes the border
        copy loops over rows (valid or zero) and three column ranges (zero, copied, zero) instead of unrolled
        tests per element: for layers with many groups, whose unrolled copies (about 20 bytes of RV32EC per
        element) would cost more flash than they save time."""
        elems = [(r, c_) for r in range(g.uh) for c_ in range(g.uw)]
        loop = g.icpg > 1

        def guarded_copy() -> list[str]:
            if looped:
                top, left = looped.split(",")
                self.cost["copy_looped"] += 1
                body = [f"for (int r = 0, sr = sb, dr = d; r < {g.uh}; r++, sr += {g.w}, dr += {rs}) {{",
                        "    int c = 0;",
                        f"    if ((unsigned)({top} + r) < {g.h}u) {{",
                        "        for (; c < c0; c++) patch[dr + c] = 0;",
                        "        for (; c < c1; c++) patch[dr + c] = in[sr + c];",
                        "    }",
                        f"    for (; c < {g.uw}; c++) patch[dr + c] = 0;",
                        "}"]
                cols_ = [f"const int c0 = {left} < 0 ? -{left} : 0, c1 = {left} > {g.w - g.uw} ? {g.w} - {left} : {g.uw};"]
                if not loop:
                    return ["{", f"    const int sb = {src_off}, d = 0;"] + ["    " + s for s in cols_ + body] + ["}"]
                return ["{"] + ["    " + s for s in cols_] + \
                    [f"    for (int j = 0, sb = {src_off}, d = 0; j < {g.icpg}; j++, sb += {g.hw}, d += {cs}) {{"] + \
                    ["        " + s for s in body] + ["    }", "}"]
            body = []
            for r, c_ in elems:
                flags = ([f"ry{r}"] if r in rows else []) + ([f"cx{c_}"] if c_ in cols else [])
                self.cost["copy_test"] += len(flags)
                cond = " && ".join(flags)
                load = f"in[sb + {r * g.w + c_}]"
                body.append(f"patch[d + {r * rs + c_}] = " + (f"{cond} ? {load} : 0;" if cond else f"{load};"))
            self.cost["copy_guarded"] += len(elems)
            self.cost["copy_block"] += 1
            if loop:
                return [f"for (int j = 0, sb = {src_off}, d = 0; j < {g.icpg}; j++, sb += {g.hw}, d += {cs}) {{"] + \
                    ["    " + s for s in body] + ["}"]
            return [s.replace("patch[d + ", "patch[").replace("in[sb + ", f"in[{src_off} + ") for s in body]

        if in_place or not interior:
            return guarded_copy()
        fast = [f"d[{r * rs + c_}] = s[{r * g.w + c_}];" for r, c_ in elems]
        self.cost["copy"] += len(elems)
        self.cost["copy_block"] += 1
        if loop:
            fast = [f"for (int j = 0; j < {g.icpg}; j++, s += {g.hw}, d += {cs}) {{"] + \
                ["    " + s for s in fast] + ["}"]
        fast = ["{", f"    const {in_t} *s = in + {src_off};", f"    {in_t} *d = patch;"] + \
            ["    " + s for s in fast] + ["}"]
        if not (rows or cols):
            return fast
        return ["if (inside) " + fast[0]] + fast[1:-1] + ["} else {"] + ["    " + s for s in guarded_copy()] + ["}"]

    def _unrolled_conv_guarded(self, op: IntOp) -> list[str]:
        """Fallback for receptive fields too big to copy: taps read the input in place, and the taps that
        can fall into the padding are grouped under one test per kernel row/column combination."""
        assert op.weight is not None
        signed = self.signed(op.inputs[0])
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
                stmts = self._tap_groups(taps, signed, conv=True)
                body += ([f"if ({guard}) {{"] + ["    " + s_ for s_ in stmts] + ["}"]) if guard else stmts
                self.cost["guard"] += 1 if guard else 0
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
        self.cost["conv_loops"] += 1
        return lines

    # ---- packed encodings ----------------------------------------------------------------
    def _packed_tables(self, op: IntOp, fn: str) -> "_PackedLayer":
        """Weight stream, bias (+ the one's-complement correction), shift, and for the variable-length
        encodings per-filter offsets and entry counts; the dot-product kernel the layer calls."""
        assert op.weight is not None and op.bias is not None
        enc = get_encoding(op.encoding)
        q = op.weight.reshape(op.weight.shape[0], -1)
        n_in = q.shape[1]
        offsets = filter_offsets(op.encoding, q) + [packed_size(op.encoding, q)]
        data = pack(op.encoding, q)
        counts, negs = [], []
        for k in range(q.shape[0]):
            count, neg = _stream_terms(op.encoding, data[offsets[k]:offsets[k + 1]], n_in)
            counts.append(count)
            negs.append(neg)
        if enc.unit_bytes == 4:
            self.table("uint32_t", f"{fn}_w", np.frombuffer(data, dtype="<u4"))
        elif op.encoding == "fp130":
            self.table("int8_t", f"{fn}_w", np.frombuffer(data, dtype=np.int8))
        else:
            self.table("uint8_t", f"{fn}_w", np.frombuffer(data, dtype=np.uint8))
        self.tables.append(f"/* {fn}: bias + 1 per negative term, which the dot kernel adds as ~t = -t - 1 */")
        self.table("int32_t", f"{fn}_b", op.bias + np.array(negs, dtype=np.int64))
        shifts = None if op.shift is None else [int(s) for s in op.shift]
        uniform = shifts is None or len(set(shifts)) == 1
        if not uniform:
            self.table("int8_t", f"{fn}_s", shifts)  # type: ignore[arg-type]
        fixed = len(set(np.diff(offsets).tolist())) <= 1 and op.encoding in ("fp130", "2bit")
        if not fixed:
            self.table("uint16_t" if offsets[-1] > 255 else "uint8_t", f"{fn}_o", offsets[:-1])
            self.table("uint16_t" if max(counts) > 255 else "uint8_t", f"{fn}_n", counts)
        signed = self.signed(op.inputs[0])
        kernel = f"potnn_dot_{op.encoding}_{'s8' if signed else 'u8'}"
        self.kernels.add((op.encoding, signed))
        wtype = {"fp130": "int8_t", "2bit": "uint32_t"}.get(op.encoding, "uint8_t")
        step = (offsets[1] - offsets[0]) // enc.unit_bytes if fixed and len(offsets) > 1 else 0
        return _PackedLayer(kernel, wtype, fixed, step, n_in, shifts, uniform)

    def _packed_dot(self, pk: "_PackedLayer", fn: str, x: str) -> str:
        """The C expression of one filter's dot product with x[] (including the bias), as int32."""
        if pk.fixed:
            call = f"{pk.kernel}({x}, wp, {pk.n_in})"
        else:
            call = f"{pk.kernel}({x}, {fn}_w + {fn}_o[oc], {fn}_n[oc])"
        return f"(int32_t)((uint32_t){fn}_b[oc] + {call})"

    def _packed_store(self, op: IntOp, pk: "_PackedLayer", fn: str, dst: str) -> list[str]:
        """Requantize the packed kernel's `acc` (bias included) into dst."""
        self.cost["store"] += 1
        if op.final:
            return [f"{dst} = acc;"]
        spec = self.spec(op.output)
        shifts = pk.shifts
        assert spec.lo is not None and spec.hi is not None and shifts is not None
        if pk.uniform:
            return _requant("acc", shifts[0], spec.lo, spec.hi, dst, spec.ctype)
        self.cost["store_table"] += 1
        if min(shifts) < 0:
            v = f"{fn}_s[oc] >= 0 ? acc >> {fn}_s[oc] : POTNN_SHL(acc, -{fn}_s[oc])"
        else:
            v = f"acc >> {fn}_s[oc]"
        return [f"v = {v};", f"{dst} = ({spec.ctype})(v < {spec.lo} ? {spec.lo} : v > {spec.hi} ? {spec.hi} : v);"]

    def _packed_linear(self, op: IntOp, fn: str) -> list[str]:
        """One call of the encoding's dot-product kernel per output (see _DOT_KERNELS)."""
        assert op.weight is not None
        pk = self._packed_tables(op, fn)
        lines = ["int32_t acc;" if op.final else "int32_t acc, v;"]
        if pk.fixed:
            lines.append(f"const {pk.wtype} *wp = {fn}_w;")
        step = f", wp += {pk.step}" if pk.fixed else ""
        lines += [f"for (int oc = 0; oc < {op.weight.shape[0]}; oc++{step}) {{",
                  f"    acc = {self._packed_dot(pk, fn, 'in')};"] + \
            ["    " + s for s in self._packed_store(op, pk, fn, "out[oc]")] + ["}"]
        self.cost["packed_linear"] += 1
        return lines

    def _packed_conv(self, op: IntOp, fn: str) -> list[str] | None:
        """Packed conv: per conv position the receptive field is copied (zeros in the padding) into a stack
        buffer in the filters' packing order, and every filter is one dot-product kernel call over it, as
        for a linear layer. None when the receptive field is too big for the stack (streaming fallback).

        A fused max-pool keeps its running maximum in the output itself, on requantized values:
        requantization (add, shift, clamp) is monotonic, so the max of requantized values is the
        requantized max, bit for bit, and no int32 array per channel has to live on the stack."""
        assert op.weight is not None
        c, h, w = op.in_shape
        oc_n = op.out_shape[0]
        (kh, kw) = op.kernel
        icpg, ocpg = c // op.groups, oc_n // op.groups
        size = icpg * kh * kw
        if size > PACKED_PATCH_LIMIT:
            return None
        pk = self._packed_tables(op, fn)
        in_t = self.spec(op.inputs[0]).ctype
        out_t = "int32_t" if op.final else self.spec(op.output).ctype
        rows, cols = _edge_taps(op)
        self.cost["guard_flag"] += sum(map(len, rows.values())) + sum(map(len, cols.values()))
        loops = _PositionLoops(op)
        pooled = op.pool is not None
        plane = loops.plane
        lines = ["int32_t acc;" if op.final else "int32_t acc, v;", f"{in_t} patch[{size}];", f"{out_t} *o = out;"]
        if pooled:
            lines.append(f"{out_t} q;")
        lines += loops.open_outer()
        if pooled:
            floor = "-2147483647 - 1" if op.final else str(self.spec(op.output).lo)
            lines.append(loops.pad + f"for (int oc = 0; oc < {oc_n}; oc++) o[oc * {plane}] = {floor};")
        lines += loops.open_inner()
        ind = loops.pad
        body: list[str] = []
        geo = _Geometry.of(op, pooled=False)
        looped = op.groups * kh * kw > LOOPED_COPY_ELEMENTS and bool(rows or cols)
        flags = not looped or geo.interior()  # the flags feed the unrolled border copy and the interior test
        for ky, conds in rows.items() if flags else ():
            body.append(f"const int ry{ky} = {' && '.join(c_.replace('@', 'iy0') for c_ in conds)};")
        for kx, conds in cols.items() if flags else ():
            body.append(f"const int cx{kx} = {' && '.join(c_.replace('@', 'ix0') for c_ in conds)};")
        if (rows or cols) and geo.interior():
            body.append(f"const int inside = {' && '.join([f'ry{r}' for r in rows] + [f'cx{c_}' for c_ in cols])};")
        if pk.fixed:
            body.append(f"const {pk.wtype} *wp = {fn}_w;")
        body.append("int oc = 0;")
        body.append(f"{out_t} *oo = o;")
        grp = op.groups > 1
        if grp:
            body.append(f"for (int g = 0, gb = base; g < {op.groups}; g++, gb += {icpg * h * w}) {{")
        copy = self._patch_copy(geo, in_t, "gb" if grp else "base", kw, kh * kw, rows, cols, in_place=False,
                                looped="iy0,ix0" if looped else None, interior=geo.interior())
        per_oc = [f"acc = {self._packed_dot(pk, fn, 'patch')};"]
        if pooled:
            per_oc += self._packed_store(op, pk, fn, "q") + ["if (q > *oo) *oo = q;", f"oo += {plane};"]
        else:
            per_oc += self._packed_store(op, pk, fn, "*oo") + [f"oo += {plane};"]
        step = f", wp += {pk.step}" if pk.fixed else ""
        inner = copy + [f"for (int k = 0; k < {ocpg}; k++, oc++{step}) {{"] + ["    " + s for s in per_oc] + ["}"]
        body += (["    " + s for s in inner] + ["}"]) if grp else inner
        lines += [ind + s for s in body]
        lines += loops.close_inner()
        lines += [loops.pad + "o++;"] + loops.close_outer()
        self.cost["packed_conv"] += 1
        self.cost["packed_conv_pool"] += pooled
        self.cost["packed_conv_groups"] += op.groups > 1
        return lines

    def _packed_streaming(self, op: IntOp, fn: str) -> list[str]:
        """Fallback for receptive fields too big to copy: decode every filter weight by weight at every
        position, straight from the packed stream (slow: a few branches per weight, but no buffer)."""
        assert op.weight is not None and op.bias is not None and op.kind == "conv"
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
        self.cost["streaming_conv"] += 1
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
            self.cost["maxpool"] += 1
        elif op.kind == "gap":
            assert op.bias is not None and op.shift is not None and out_spec.lo is not None and out_spec.hi is not None
            body = ["const " + in_t + " *p = in;", f"for (int c = 0; c < {c}; c++) {{",
                    f"    int32_t acc = {int(op.bias[0])}, v;",
                    f"    for (int i = 0; i < {h * w}; i++) acc += *p++;"]
            body += ["    " + s for s in _requant("acc", int(op.shift[0]), out_spec.lo, out_spec.hi, "out[c]", out_t)]
            body += ["}"]
            self.cost["gap"] += 1
        elif op.kind == "relu":
            body = [f"for (int i = 0; i < {c * h * w}; i++) out[i] = ({out_t})(in[i] > 0 ? in[i] : 0);"]
            self.cost["relu"] += 1
        else:  # pragma: no cover - add has its own emitter, reshape emits nothing
            raise AssertionError(op.kind)
        self.functions += [f"POTNN_NOINLINE static void {fn}(const {in_t} *in, {out_t} *out)", "{"] + \
            ["    " + s for s in body] + ["}", ""]

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
        self.functions += [f"POTNN_NOINLINE static void {fn}(const {a_t} *a, const {b_t} *b, {out_spec.ctype} *out)",
                           "{"] + \
            ["    " + s for s in body] + ["}", ""]
        self.cost["add"] += 1


@dataclass(frozen=True)
class _PackedLayer:
    """How a packed layer's C calls its dot-product kernel."""

    kernel: str  # potnn_dot_<encoding>_<u8|s8>
    wtype: str  # C type of the weight table
    fixed: bool  # every filter has the same length in the stream (fp130, 2bit): wp += step
    step: int  # storage units per filter when fixed
    n_in: int  # weights per filter
    shifts: list[int] | None
    uniform: bool


@dataclass(frozen=True)
class _Geometry:
    """A conv's numbers, with its fused max-pool (if any) seen as a window of conv positions.

    Without a pool the window is one conv position. The 'union' is the input area one window reads:
    uh x uw pixels per input channel, whose top-left input pixel for output (Y, X) is
    (iy0 + Y*dy, ix0 + X*dx); it may lie partly in the zero padding.
    """

    h: int
    w: int
    icpg: int
    ocpg: int
    kh: int
    kw: int
    sh: int
    sw: int
    oh: int  # conv output
    ow: int
    py: int  # layer output (pooled)
    px: int
    qkh: int  # pool window, stride, padding (1, 1, 1, 1, 0, 0 without a pool)
    qkw: int
    qsh: int
    qsw: int
    qph: int
    qpw: int
    iy0: int
    ix0: int

    @staticmethod
    def of(op: IntOp, pooled: bool = True) -> "_Geometry":
        c, h, w = op.in_shape
        oc_n = op.out_shape[0]
        (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
        _, oh, ow = op.conv_shape or op.out_shape
        if op.pool is not None and pooled:
            (qkh, qkw), (qsh, qsw), (qph, qpw) = op.pool
            _, py, px = op.out_shape
        else:
            qkh = qkw = qsh = qsw = 1
            qph = qpw = 0
            py, px = oh, ow
        return _Geometry(h, w, c // op.groups, oc_n // op.groups, kh, kw, sh, sw, oh, ow, py, px,
                         qkh, qkw, qsh, qsw, qph, qpw, -qph * sh - ph, -qpw * sw - pw)

    @property
    def hw(self) -> int:
        return self.h * self.w

    @property
    def plane(self) -> int:
        return self.py * self.px

    @property
    def uh(self) -> int:
        return (self.qkh - 1) * self.sh + self.kh

    @property
    def uw(self) -> int:
        return (self.qkw - 1) * self.sw + self.kw

    @property
    def dy(self) -> int:
        return self.qsh * self.sh

    @property
    def dx(self) -> int:
        return self.qsw * self.sw

    @property
    def windows_static(self) -> bool:
        """Every window of every output lies inside the conv output (no pool padding to skip)."""
        return (self.qph == 0 and self.qpw == 0 and (self.py - 1) * self.qsh + self.qkh <= self.oh
                and (self.px - 1) * self.qsw + self.qkw <= self.ow)

    def interior(self) -> bool:
        """Some output's union lies wholly inside the image (else every position copies with tests)."""
        return (any(0 <= self.iy0 + y * self.dy <= self.h - self.uh for y in range(self.py))
                and any(0 <= self.ix0 + x * self.dx <= self.w - self.uw for x in range(self.px)))

    def guards(self) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
        """Union rows/columns that fall into the padding for some output, with the C test that says they
        do not ('@' stands for the union's top row iy or left column ix)."""
        rows: dict[int, list[str]] = {}
        cols: dict[int, list[str]] = {}
        for n, first, step, count, size, table in ((self.uh, self.iy0, self.dy, self.py, self.h, rows),
                                                   (self.uw, self.ix0, self.dx, self.px, self.w, cols)):
            last = first + (count - 1) * step
            for t in range(n):
                conds = ([f"@ >= {-t}"] if first + t < 0 else []) + ([f"@ < {size - t}"] if last + t >= size else [])
                if conds:
                    table[t] = conds
        return rows, cols


def _stream_terms(encoding: str, data: bytes, n: int) -> tuple[int, int]:
    """(count, negatives) of one packed filter as its C kernel walks it: count is the kernel's n
    (weights for fp130/2bit, entries for 5level without the trailing-zeros entry, codes for ternary),
    negatives the number of terms it adds as one's complement (the bias table adds them back)."""
    if encoding in ("fp130", "2bit"):
        bits, sign = (4, 8) if encoding == "fp130" else (2, 2)
        fields = [(int.from_bytes(data, "little") >> (bits * i)) & ((1 << bits) - 1) for i in range(n)]
        return n, sum(1 for f in fields if f & sign)
    bits = 4 if encoding == "5level" else 2
    stream = int.from_bytes(data, "little")
    fields = [(stream >> (bits * i)) & ((1 << bits) - 1) for i in range(len(data) * 8 // bits)]
    pos = count = neg = 0
    if encoding == "5level":
        while pos < n:
            f = fields[count]
            pos += f >> 2
            if pos == n:  # the trailing-zeros entry: the kernel stops before it
                break
            count += 1
            neg += (f >> 1) & 1
            pos += 1
        return count, neg
    prev_neg = False
    while pos < n:
        f = fields[count]
        count += 1
        if f == 3:
            pos += 2
        else:
            prev_neg = f == 2
            pos += 1
        neg += prev_neg
    return count, neg


# The dot-product kernels of the packed encodings: sum over the filter of x[i] * w[i] as uint32
# (wrapping, so no signed overflow whatever the order; the result fits int32 by _check_bounds).
# A negative term is added as its one's complement, t ^ -1 = -t - 1; the layer's bias table holds
# +1 per such term, so there is no negation or branch per weight. POTNN_NEG(b, k) is all ones when
# bit k of b is set. X is the input type (uint8_t or int8_t).
_DOT_KERNELS = {
    "fp130": r"""/* fp130: n weights, two per byte, low nibble first; nibble = [sign][shift(3)]. */
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const int8_t *w, int n)
{
    uint32_t acc = 0;
    const X *const end = x + (n & ~3);
    for (; x != end; x += 4, w += 2) {
        const int32_t b0 = w[0], b1 = w[1];
        acc += ((uint32_t)x[0] << (b0 & 7)) ^ (uint32_t)POTNN_NEG(b0, 3);
        acc += ((uint32_t)x[1] << (b0 >> 4 & 7)) ^ (uint32_t)(b0 >> 7);
        acc += ((uint32_t)x[2] << (b1 & 7)) ^ (uint32_t)POTNN_NEG(b1, 3);
        acc += ((uint32_t)x[3] << (b1 >> 4 & 7)) ^ (uint32_t)(b1 >> 7);
    }
    if (n & 2) {
        const int32_t b = *w++;
        acc += ((uint32_t)x[0] << (b & 7)) ^ (uint32_t)POTNN_NEG(b, 3);
        acc += ((uint32_t)x[1] << (b >> 4 & 7)) ^ (uint32_t)(b >> 7);
        x += 2;
    }
    if (n & 1) {
        const int32_t b = *w;
        acc += ((uint32_t)x[0] << (b & 7)) ^ (uint32_t)POTNN_NEG(b, 3);
    }
    return acc;
}""",
    "2bit": r"""/* 2bit: n weights, 16 per uint32, lowest bits first; code = [sign][shift]. Eight per inner
 * iteration: fully unrolled words would cost 260 more bytes of flash for 4 % fewer instructions. */
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const uint32_t *w, int n)
{
    uint32_t acc = 0, c;
    const X *const end = x + (n & ~15);
    while (x != end) {
        c = *w++;
        for (int half = 0; half < 2; half++, x += 8, c >>= 16) {
BODY8        }
    }
    if (n & 15)
        for (c = *w, n &= 15; n > 0; n--, c >>= 2)
            acc += ((uint32_t)*x++ << (c & 1u)) ^ (uint32_t)POTNN_NEG(c, 1);
    return acc;
}""",
    "5level": r"""/* 5level: n entries, two per byte, low nibble first; entry = [zeros before(2)][sign][x8]:
 * skip the zeros, then add x << (0 or 3). */
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const uint8_t *w, int n)
{
    uint32_t acc = 0;
    for (; n >= 2; n -= 2, x += 2) {
        const uint32_t b = *w++;
        x += b >> 2 & 3u;
        acc += ((uint32_t)x[0] << (POTNN_NEG(b, 0) & 3)) ^ (uint32_t)POTNN_NEG(b, 1);
        x += b >> 6;
        acc += ((uint32_t)x[1] << (POTNN_NEG(b, 4) & 3)) ^ (uint32_t)POTNN_NEG(b, 5);
    }
    if (n > 0) {
        const uint32_t b = *w;
        x += b >> 2 & 3u;
        acc += ((uint32_t)x[0] << (POTNN_NEG(b, 0) & 3)) ^ (uint32_t)POTNN_NEG(b, 1);
    }
    return acc;
}""",
    "ternary": r"""/* ternary: n codes, four per byte, lowest bits first; 00 = 0, 01 = +1, 10 = -1, 11 = the previous
 * value for two more inputs. keep/neg are the masks of the current value (0/0, ~0/0, ~0/~0). */
#define POTNN_TERNARY_STEP(c)                                              \
    if ((c) == 3u) {                                                       \
        t = (uint32_t)x[0] + (uint32_t)x[1];                               \
        x += 2;                                                            \
    } else {                                                               \
        keep = 0u - (uint32_t)((c) != 0u);                                 \
        neg = 0u - ((c) >> 1);                                             \
        t = (uint32_t)*x++;                                                \
    }                                                                      \
    acc += (t & keep) ^ neg;
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const uint8_t *w, int n)
{
    uint32_t acc = 0, keep = 0, neg = 0, t, codes;
    for (; n >= 4; n -= 4) {
        codes = *w++;
        POTNN_TERNARY_STEP(codes & 3u)
        POTNN_TERNARY_STEP(codes >> 2 & 3u)
        POTNN_TERNARY_STEP(codes >> 4 & 3u)
        POTNN_TERNARY_STEP(codes >> 6)
    }
    if (n > 0)
        for (codes = *w; n > 0; n--, codes >>= 2) {
            POTNN_TERNARY_STEP(codes & 3u)
        }
    return acc;
}""",
}


def _dot_kernel(encoding: str, signed: bool) -> list[str]:
    """C text of one dot-product kernel for inputs of the given signedness."""
    x = "int8_t" if signed else "uint8_t"
    text = _DOT_KERNELS[encoding].replace("NAME", f"potnn_dot_{encoding}_{'s8' if signed else 'u8'}").replace("const X *", f"const {x} *")
    if encoding == "2bit":
        body = "".join(f"            acc += ((uint32_t)x[{k}] << ({f'c >> {2 * k} & 1u' if k else 'c & 1u'})) ^ "
                       f"(uint32_t)POTNN_NEG(c, {2 * k + 1});\n" for k in range(8))
        text = text.replace("BODY8", body)
    return text.splitlines() + [""]


def _gather_name(signed: bool, index_t: str) -> str:
    return f"potnn_gather_{'s8' if signed else 'u8'}_{'u8' if index_t == 'uint8_t' else 'u16'}"


def _gather_kernel(signed: bool, index_t: str) -> list[str]:
    """C text of the kernel that sums one output's tabled weights (see _Emitter._unrolled_linear)."""
    x = "int8_t" if signed else "uint8_t"
    levels = get_encoding("unroll").max_shift + 1
    return f"""/* One output of an unrolled linear layer from tables: n[] counts its weights of each exponent
 * {levels - 1}..0, positive then negative, whose input indices follow each other in ix[]. Horner: the sum
 * is doubled once per exponent, so each weight costs a load and an add, not a shift. */
POTNN_KERNEL POTNN_RAMFUNC static int32_t {_gather_name(signed, index_t)}(const {x} *x, const {index_t} *ix, const {index_t} *n)
{{
    int32_t acc = 0, sum;
    for (const {index_t} *end = n + {2 * levels}; n != end; n++) {{
        unsigned c = *n;
        sum = 0;
        if (c & 1)
            sum += x[*ix++];
        if (c & 2) {{
            sum += x[ix[0]] + x[ix[1]];
            ix += 2;
        }}
        for (c >>= 2; c; c--, ix += 4)
            sum += x[ix[0]] + x[ix[1]] + x[ix[2]] + x[ix[3]];
        acc = (end - n) & 1 ? acc - sum : acc + acc + sum;
    }}
    return acc;
}}
""".splitlines() + [""]


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

    def ref(name: str) -> str:
        spec = program.tensors[name]
        if view_root(program, name) == program.input:
            return "input"
        if name == program.output and logits_external:
            return "out"
        return f"(({spec.ctype} *)(potnn_arena.bytes + {plan.offsets[name]}))"

    def emit(window_taps: int, gather_min: int) -> tuple[_Emitter, list[str], list[str], list[str]]:
        em = _Emitter(program, plan, window_taps, gather_min)
        calls: list[str] = []
        descr: list[str] = []
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
            em.cost["call"] += 1
            args = ", ".join(ref(n) for n in op.inputs)
            calls.append(f"    {fn}({args}, {ref(op.output)});")
            out = program.tensors[op.output]
            where = "logits" if op.output == program.output and logits_external else \
                f"arena+{plan.offsets.get(op.output, 0)}"
            detail = ""
            if op.kind in ("conv", "linear"):
                assert op.weight is not None
                nz = int(np.count_nonzero(op.weight))
                detail = f" {op.encoding}, {nz}/{op.weight.size} nonzero weights"
                if op.kind == "conv":
                    detail = f" {op.kernel[0]}x{op.kernel[1]}/s{op.stride[0]}" \
                        f"{'' if op.groups == 1 else f' groups {op.groups}'}" + detail
            shape = "x".join(map(str, out.shape))
            descr.append(f" *   {op.name:<16} {op.kind}{detail} -> {shape} {out.ctype} @ {where}")
        kernels = em.kernel_text()
        em.cost["predict"] += 1
        return em, calls, descr, kernels

    def flash_of(em: _Emitter) -> int:
        return em.weight_bytes + sum(_CODE_BYTES[k] * n for k, n in em.cost.items())

    # The fastest code first. While it does not fit the flash: ever smaller weight groups of unrolled
    # linear layers summed from index tables, then the same with the pool windows looped.
    gatherable = any(op.kind == "linear" and op.encoding == "unroll" for op in program.ops)
    for window_taps in (UNROLLED_WINDOW_TAPS, 0):
        for gather_min in (0,) + (GATHER_GROUPS if gatherable else ()):
            em, calls, descr, kernels = emit(window_taps, gather_min)
            if flash_of(em) <= config.flash:
                break
        if flash_of(em) <= config.flash or not em.repeated_windows:
            break
    k = program.num_classes
    ram = plan.arena_bytes + 4 * k
    weight_bytes = em.weight_bytes
    flash = flash_of(em)
    code = flash - weight_bytes
    c, h, w = program.input_shape
    if ram > config.ram:
        raise ExportError(f"model needs {ram} bytes of RAM (activation buffers {plan.arena_bytes} + logits {4 * k}) "
                          f"but Config.ram is {config.ram}: use fewer channels, pool earlier, or raise Config.ram")
    if flash > config.flash:
        raise ExportError(f"model needs about {flash} bytes of flash (weights {weight_bytes} + code ~{code}) "
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
        "/* All ones if bit k of b is set, else 0 (the sign mask of a packed weight). */",
        "#define POTNN_NEG(b, k) ((int32_t)((uint32_t)(b) << (31 - (k))) >> 31)",
        "",
        "/* GCC/Clang only, no effect on results: keep each layer a function of its own (map files and",
        " * profiles name it), and make a pointer opaque so that the compiler re-loads the inputs of each",
        " * output channel instead of caching them across channels in registers RV32EC does not have. */",
        "#if defined(__GNUC__)",
        "#define POTNN_NOINLINE __attribute__((noinline))",
        "#define POTNN_OPAQUE(p) __asm__(\"\" : \"+r\"(p))",
        "#define POTNN_AFTER(p, v) __asm__(\"\" : \"+r\"(p) : \"r\"(v))",
        "#else",
        "#define POTNN_NOINLINE",
        "#define POTNN_OPAQUE(p) ((void)0)",
        "#define POTNN_AFTER(p, v) ((void)0)",
        "#endif",
        "/* The dot-product kernels stay generic (GCC: not specialised per call), so their size is known. */",
        "#if defined(__GNUC__) && !defined(__clang__)",
        "#define POTNN_KERNEL __attribute__((noipa))",
        "#else",
        "#define POTNN_KERNEL POTNN_NOINLINE",
        "#endif",
        "/* The packed dot-product kernels; a firmware may define this to place them in SRAM. */",
        "#ifndef POTNN_RAMFUNC",
        "#define POTNN_RAMFUNC",
        "#endif",
        "",
        f"static union {{ uint32_t align; uint8_t bytes[{max(plan.arena_bytes, 4)}]; }} potnn_arena;",
        f"static int32_t potnn_logits[{k}];",
        "",
        *em.tables,
        "",
        *kernels,
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
