"""The geometry of a conv for its C loops: the receptive field of one output (with a fused max-pool,
of one pool window), the padding tests it needs, and loops that walk the output positions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..program import IntOp
from .cwriter import CWriter, steps


@dataclass(frozen=True)
class ConvGeometry:
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
    def of(op: IntOp, pooled: bool = True) -> "ConvGeometry":
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
        return ConvGeometry(h, w, c // op.groups, oc_n // op.groups, kh, kw, sh, sw, oh, ow, py, px,
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



class PositionLoops:
    """C loops over a conv's output positions, with iy0/ix0 (top-left input row/column, may be negative)
    and base = iy0 * W + ix0 kept by additions only — RV32EC has no multiplier.

    With a fused max-pool, `outputs` walks the pooled positions and `window` the conv positions of each
    pool window (skipping those in the pool's padding); without, `window` only sets base. Inside
    `outputs` and around `window` goes per-output set-up and the store.
    """

    def __init__(self, op: IntOp) -> None:
        self.op = op
        _, self.h, self.w = op.in_shape
        _, self.oh, self.ow = op.conv_shape or op.out_shape
        _, py, px = op.out_shape
        self.plane = py * px

    @contextmanager
    def outputs(self, out: CWriter) -> Iterator[None]:
        (sh, sw), (ph, pw), w = self.op.stride, self.op.padding, self.w
        if self.op.pool is None:
            rows = (f"for (int iy0 = {-ph}, rowbase = {-ph * w}; iy0 < {(self.oh - 1) * sh - ph + 1}; "
                    f"iy0 += {sh}, rowbase += {sh * w})")
            cols = f"for (int ix0 = {-pw}; ix0 < {(self.ow - 1) * sw - pw + 1}; ix0 += {sw})"
        else:
            (_, _), (qsh, qsw), (qph, qpw) = self.op.pool
            _, py, px = self.op.out_shape
            iy, ix = -qph * sh - ph, -qpw * sw - pw
            rows = (f"for (int oy0 = {-qph}, iyw = {iy}, roww = {iy * w}; oy0 < {(py - 1) * qsh - qph + 1}; "
                    f"oy0 += {qsh}, iyw += {qsh * sh}, roww += {qsh * sh * w})")
            cols = f"for (int ox0 = {-qpw}, ixw = {ix}; ox0 < {(px - 1) * qsw - qpw + 1}; ox0 += {qsw}, ixw += {qsw * sw})"
        with out.block(rows):
            out(steps("rowbase") if self.op.pool is None else steps("iyw", "roww"))
            with out.block(cols):
                if self.op.pool is not None:
                    out(steps("ixw"))
                yield

    @contextmanager
    def window(self, out: CWriter) -> Iterator[None]:
        if self.op.pool is None:
            out("const int base = rowbase + ix0;")
            yield
            return
        (qkh, qkw), (qsh, qsw), (qph, qpw) = self.op.pool
        (sh, sw), w = self.op.stride, self.w
        _, py, px = self.op.out_shape
        with out.block(f"for (int wy = 0, iy0 = iyw, rowbase = roww; wy < {qkh}; wy++, iy0 += {sh}, rowbase += {sh * w})"):
            out(steps("iy0", "rowbase"))
            if qph > 0 or (py - 1) * qsh - qph + qkh > self.oh:
                out(f"if ((unsigned)(oy0 + wy) >= {self.oh}u) continue;")
            with out.block(f"for (int wx = 0, ix0 = ixw; wx < {qkw}; wx++, ix0 += {sw})"):
                out(steps("ix0"))
                if qpw > 0 or (px - 1) * qsw - qpw + qkw > self.ow:
                    out(f"if ((unsigned)(ox0 + wx) >= {self.ow}u) continue;")
                out("const int base = rowbase + ix0;")
                yield
