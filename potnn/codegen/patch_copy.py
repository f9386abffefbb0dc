"""The copy of a receptive field into a stack buffer `patch[]`, with zeros where it lies in the padding.

Convs read their taps at constant offsets from one pointer, so that no tap needs a padding test: an
output whose receptive field lies inside the image reads it in place (or copies it without tests), one
on the border copies it testing only the rows and columns (flags ryR/cxC) that can fall outside.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .cwriter import indent
from .geometry import ConvGeometry


@dataclass(frozen=True)
class PatchCopy:
    """How one group's input channels are copied.

    Attributes:
        g: the conv's geometry (its union is what is copied).
        in_ctype: the input's C type.
        src_off: C expression of the union's top-left element in in[].
        rs, cs: row and channel strides of patch[].
        rows, cols: ConvGeometry.guards() of the union.
        in_place: the interior is read in place, so only border positions copy.
        looped: "top,left" C names: the border copy loops over rows and three column ranges (zero,
            copied, zero) instead of unrolled tests per element (many groups: the unrolled copies, about
            20 bytes of RV32EC per element, would cost more flash than they save time).
        interior: some output's union lies wholly inside the image.
    """

    g: ConvGeometry
    in_ctype: str
    src_off: str
    rs: int
    cs: int
    rows: dict[int, list[str]]
    cols: dict[int, list[str]]
    in_place: bool
    looped: str | None = None
    interior: bool = True

    @property
    def _elements(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(self.g.uh) for c in range(self.g.uw)]

    @property
    def _fast(self) -> bool:
        """An interior copy without tests is written (compact layout, some interior position)."""
        return not (self.in_place or not self.interior)

    def _guarded(self) -> list[str]:
        g, src_off, cs = self.g, self.src_off, self.cs
        multi = g.icpg > 1
        if self.looped:
            top, left = self.looped.split(",")
            body = [f"for (int r = 0, sr = sb, dr = d; r < {g.uh}; r++, sr += {g.w}, dr += {self.rs}) {{",
                    "    int c = 0;",
                    f"    if ((unsigned)({top} + r) < {g.h}u) {{",
                    "        for (; c < c0; c++) patch[dr + c] = 0;",
                    "        for (; c < c1; c++) patch[dr + c] = in[sr + c];",
                    "    }",
                    f"    for (; c < {g.uw}; c++) patch[dr + c] = 0;",
                    "}"]
            columns = [f"const int c0 = {left} < 0 ? -{left} : 0, c1 = {left} > {g.w - g.uw} ? {g.w} - {left} : {g.uw};"]
            if not multi:
                return ["{", f"    const int sb = {src_off}, d = 0;"] + indent(columns + body) + ["}"]
            return ["{"] + indent(columns) + \
                [f"    for (int j = 0, sb = {src_off}, d = 0; j < {g.icpg}; j++, sb += {g.hw}, d += {cs}) {{"] + \
                indent(body, 2) + ["    }", "}"]
        body = []
        for r, c in self._elements:
            cond = " && ".join(self._flags(r, c))
            load = f"in[sb + {r * g.w + c}]"
            body.append(f"patch[d + {r * self.rs + c}] = " + (f"{cond} ? {load} : 0;" if cond else f"{load};"))
        if multi:
            return [f"for (int j = 0, sb = {src_off}, d = 0; j < {g.icpg}; j++, sb += {g.hw}, d += {cs}) {{"] + \
                indent(body) + ["}"]
        return [s.replace("patch[d + ", "patch[").replace("in[sb + ", f"in[{src_off} + ") for s in body]

    def flag_lines(self, top: str = "iy0", left: str = "ix0") -> list[str]:
        """The padding flags the copy tests (ryR, cxC) and `inside` (the union lies in the image), for the
        union's top row `top` and left column `left`; none where only the looped copy runs (it tests itself)."""
        if self.looped and not self.interior:
            return []
        lines = [f"const int ry{r} = {' && '.join(s.replace('@', top) for s in conds)};" for r, conds in self.rows.items()]
        lines += [f"const int cx{c} = {' && '.join(s.replace('@', left) for s in conds)};" for c, conds in self.cols.items()]
        if (self.rows or self.cols) and self.interior:
            lines.append(f"const int inside = {' && '.join([f'ry{r}' for r in self.rows] + [f'cx{c}' for c in self.cols])};")
        return lines

    def _flags(self, r: int, c: int) -> list[str]:
        return ([f"ry{r}"] if r in self.rows else []) + ([f"cx{c}"] if c in self.cols else [])

    def lines(self) -> list[str]:
        if not self._fast:
            return self._guarded()
        g = self.g
        fast = [f"d[{r * self.rs + c}] = s[{r * g.w + c}];" for r, c in self._elements]
        if g.icpg > 1:
            fast = [f"for (int j = 0; j < {g.icpg}; j++, s += {g.hw}, d += {self.cs}) {{"] + indent(fast) + ["}"]
        fast = ["{", f"    const {self.in_ctype} *s = in + {self.src_off};", f"    {self.in_ctype} *d = patch;"] + \
            indent(fast) + ["}"]
        if not (self.rows or self.cols):
            return fast
        return ["if (inside) " + fast[0]] + fast[1:-1] + ["} else {"] + indent(self._guarded()) + ["}"]

    def constructs(self) -> Counter[str]:
        cost: Counter[str] = Counter()
        if self._fast:
            cost.update(copy=len(self._elements), copy_block=1)
            if not (self.rows or self.cols):
                return cost
        if self.looped:
            cost.update(copy_looped=1)
        else:
            cost.update(copy_test=sum(len(self._flags(r, c)) for r, c in self._elements),
                        copy_guarded=len(self._elements), copy_block=1)
        return cost
