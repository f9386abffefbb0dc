"""Unrolled convs: every nonzero weight is code, and no tap has a padding test.

Per (pooled) output position, the input area its window reads (the 'union', per input channel) is read
in place when it lies inside the image, else copied with zeros for the padding into a stack buffer with
the input's own strides ('in place' layout, when that buffer is small), or always copied into a compact
[channel][row][column] buffer. Every tap then loads `p[constant]`, input-major (InputMajor): about one
load and one add per weight. Output channels go in blocks of register accumulators; a fused max-pool
keeps each channel's running max in a register, so its blocks are smaller (unless its filters are
dense), and its code is repeated per conv position of the pool window while the copies stay small,
else it loops over the window offsets woff[]. Bias and the taps' common power of two are applied once,
after the max.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..program import IntOp
from .cwriter import INT32_MIN, CWriter, shl, steps
from .emitter import Emitter, OpEmitter
from .geometry import ConvGeometry
from .input_major import InputMajor
from .patch_copy import PatchCopy


@dataclass(frozen=True)
class _Layout:
    """Where the taps read: row and channel strides of the buffer, its size, and whether the interior is
    read in place (the input's own strides) or everything is copied into a compact buffer."""

    rs: int
    cs: int
    size: int
    in_place: bool


def _layout(op: IntOp, patch_limit: int) -> _Layout | None:
    g = ConvGeometry.of(op)
    strided = (g.icpg - 1) * g.hw + (g.uh - 1) * g.w + g.uw
    compact = g.icpg * g.uh * g.uw
    if strided <= patch_limit and g.uh <= g.h and g.uw <= g.w:  # (a wider window would overlap itself)
        return _Layout(g.w, g.hw, strided, True)
    if compact <= patch_limit:
        return _Layout(g.uw, g.uh * g.uw, compact, False)
    return None


@dataclass(frozen=True)
class _Block:
    """The output channels summed together, and their loads per pool window (one without a pool)."""

    channels: list[int]
    windows: list[InputMajor]


class UnrolledConv(OpEmitter):
    """See the module docstring; GuardedUnrolledConv takes the receptive fields too big to copy."""

    @classmethod
    def accepts(cls, em: Emitter, op: IntOp) -> bool:
        return _layout(op, em.target.patch_limit) is not None

    @cached_property
    def g(self) -> ConvGeometry:
        return ConvGeometry.of(self.op)

    @cached_property
    def layout(self) -> _Layout:
        layout = _layout(self.op, self.em.target.patch_limit)
        assert layout is not None
        return layout

    @cached_property
    def guards(self) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
        return self.g.guards()

    @cached_property
    def window_offsets(self) -> list[int]:
        g = self.g
        return [wy * g.sh * self.layout.rs + wx * g.sw for wy in range(g.qkh) for wx in range(g.qkw)]

    @property
    def pooled(self) -> bool:
        return self.op.pool is not None

    @cached_property
    def repeat_windows(self) -> bool:
        """Repeat the per-window code rather than loop over the windows, while that costs little flash."""
        assert self.op.weight is not None
        return self.pooled and self.g.windows_static and \
            int((self.op.weight != 0).sum()) * len(self.window_offsets) <= self.em.fit.window_taps

    @property
    def looped_copy(self) -> bool:
        rows, cols = self.guards
        return self.op.groups * self.g.uh * self.g.uw > self.em.target.looped_copy_elements and bool(rows or cols)

    def _copy(self, group: int) -> PatchCopy:
        g = self.g
        first = group * g.icpg * g.hw
        rows, cols = self.guards
        return PatchCopy(g, self.in_ctype, f"b + {first}" if first else "b", self.layout.rs, self.layout.cs, rows,
                         cols, self.layout.in_place, "iy,ix" if self.looped_copy else None, g.interior())

    @cached_property
    def blocks(self) -> list[list[_Block]]:
        """Per group, its blocks of output channels (equal sizes: 12 channels as 6+6 rather than 8+4)."""
        op, g, target = self.op, self.g, self.em.target
        assert op.weight is not None
        offsets = [(j * self.layout.cs + ky * self.layout.rs + kx, j, ky, kx)
                   for j in range(g.icpg) for ky in range(g.kh) for kx in range(g.kw)]
        windows = self.window_offsets if self.repeat_windows else [0]
        groups = []
        for gi in range(op.groups):
            ocs = range(gi * g.ocpg, (gi + 1) * g.ocpg)
            fan_in = int(np.count_nonzero(op.weight[list(ocs)])) / len(ocs)
            size = target.accumulators
            if self.pooled and fan_in < target.dense_fan_in:
                size = target.pooled_accumulators
            n = -(-len(ocs) // size)
            blocks = []
            for k in range(n):
                channels = list(ocs[k * len(ocs) // n:(k + 1) * len(ocs) // n])
                blocks.append(_Block(channels, [
                    InputMajor.plan(op.weight, channels, [(o + wo, j, ky, kx) for o, j, ky, kx in offsets],
                                    target.pooled_accumulators) for wo in windows]))
            groups.append(blocks)
        return groups

    def _write_block(self, out: CWriter, block: _Block) -> None:
        plane = self.g.plane
        n = len(block.channels)
        with out.block():
            if not self.pooled:
                code, exps = block.windows[0].lines()
                out("POTNN_OPAQUE(p);", *code)
                for i, oc in enumerate(block.channels):
                    out(*self.store_biased(oc, f"o[{oc * plane}]", shl(f"a{i}", exps[i])))
                return
            # each channel's running max in a register (m_i); the common power of two is applied after the max
            if self.repeat_windows:
                out(f"int32_t {', '.join(f'm{i}' for i in range(n))};", "p = src;")
                for w, window in enumerate(block.windows):
                    code, exps = window.lines()
                    with out.block():
                        out("POTNN_OPAQUE(p);", *code)
                        out(*(f"m{i} = a{i};" if w == 0 else f"if (a{i} > m{i}) m{i} = a{i};" for i in range(n)))
                        if w + 1 < len(block.windows):  # the next window's loads wait for these maxes
                            out(*(f"POTNN_AFTER(p, m{i});" for i in range(n)))
            else:
                code, exps = block.windows[0].lines()
                count = str(len(self.window_offsets)) if self.g.windows_static else "nwin"
                out(f"int32_t {', '.join(f'm{i} = {INT32_MIN}' for i in range(n))};")
                with out.block(f"for (int k = 0; k < {count}; k++)"):
                    out("p = src + woff[k];", "POTNN_OPAQUE(p);", *code)
                    out(*(f"if (a{i} > m{i}) m{i} = a{i};" for i in range(n)))
            for i, oc in enumerate(block.channels):
                out(*self.store_biased(oc, f"o[{oc * plane}]", shl(f"m{i}", exps[i])))

    def body(self) -> list[str]:
        g, layout, pooled = self.g, self.layout, self.pooled
        rows, cols = self.guards
        guarded = bool(rows or cols)
        woffs = self.window_offsets
        woff_t = "uint8_t" if max(woffs) < 256 else "uint16_t"
        dynamic = pooled and not g.windows_static
        looped = self.looped_copy
        interior = g.interior()
        flags = not looped or interior  # the flags feed the unrolled border copy and the interior test
        out = CWriter()
        if not self.op.final:
            out("int32_t v;")
        out(f"const {self.in_ctype} *src, *p;", f"{self.out_ctype} *o = out;")
        if guarded or not layout.in_place:
            out(f"{self.in_ctype} patch[{layout.size}];")
        if pooled and g.windows_static and not self.repeat_windows:
            out(f"static const {woff_t} woff[{len(woffs)}] = {{{', '.join(map(str, woffs))}}};")
        elif dynamic:
            out(f"{woff_t} woff[{len(woffs)}];", "int nwin;")
        iy, iy_step = (f", iy = {g.iy0}", f", iy += {g.dy}") if rows or looped else ("", "")
        cy, cy_step = (f", cy = {-g.qph}", f", cy += {g.qsh}") if dynamic else ("", "")
        cx, cx_step = (f", cx = {-g.qpw}", f", cx += {g.qsw}") if dynamic else ("", "")
        # each loop tests the offset it advances, and the other running values are kept sums (steps)
        with out.block(f"for (int row = {g.iy0 * g.w}{iy}{cy}; row != {(g.iy0 + g.py * g.dy) * g.w}; "
                       f"row += {g.dy * g.w}{iy_step}{cy_step})"):
            if iy or cy:
                out(steps(*(["iy"] if iy else []), *(["cy"] if cy else [])))
            for r, conds in rows.items() if flags else ():
                out(f"const int ry{r} = {' && '.join(c.replace('@', 'iy') for c in conds)};")
            with out.block(f"for (int ix = {g.ix0}{cx}; ix != {g.ix0 + g.px * g.dx}; ix += {g.dx}{cx_step}, o++)"):
                out(steps("o", *(["cx"] if cx else [])))
                out("const int b = row + ix;")
                for c, conds in cols.items() if flags else ():
                    out(f"const int cx{c} = {' && '.join(s.replace('@', 'ix') for s in conds)};")
                if guarded and interior:
                    out(f"const int inside = {' && '.join([f'ry{r}' for r in rows] + [f'cx{c}' for c in cols])};")
                if dynamic:
                    out("nwin = 0;")
                    with out.block(f"for (int wy = 0, ro = 0; wy < {g.qkh}; wy++, ro += {g.sh * layout.rs})"):
                        out(steps("ro"), f"if ((unsigned)(cy + wy) >= {g.oh}u) continue;")
                        with out.block(f"for (int wx = 0, co = ro; wx < {g.qkw}; wx++, co += {g.sw})"):
                            out(steps("co"), f"if ((unsigned)(cx + wx) < {g.ow}u) woff[nwin++] = ({woff_t})co;")
                for gi, blocks in enumerate(self.blocks):
                    copy = self._copy(gi)
                    if layout.in_place and guarded and interior:
                        with out.block("if (inside)", close="} else {"):
                            out(f"src = in + {copy.src_off};")
                        with out.indented():
                            out(*copy.lines(), "src = patch;")
                        out("}")
                    elif layout.in_place and not guarded:
                        out(f"src = in + {copy.src_off};")
                    else:
                        out(*copy.lines(), "src = patch;")
                    if not pooled:
                        out("p = src;")
                    for block in blocks:
                        self._write_block(out, block)
        return out.lines

    def constructs(self) -> Counter[str]:
        rows, cols = self.guards
        cost: Counter[str] = Counter(conv_loops=1, guard_flag=sum(map(len, rows.values())) + sum(map(len, cols.values())),
                                     dyn_windows=int(self.pooled and not self.g.windows_static))
        for gi, blocks in enumerate(self.blocks):
            cost.update(self._copy(gi).constructs())
            cost.update(group_select=1, pixel_block=len(blocks))
            for block in blocks:
                n = len(block.channels)
                cost.update(store=n)
                for window in block.windows:
                    cost.update(window.constructs())
                if self.repeat_windows:
                    cost.update(pool_max=n * (len(block.windows) - 1))
                elif self.pooled:
                    cost.update(pool_max=n, window_loop=1)
        return cost
