"""A small C writer (lines with block indentation) and the C expressions every emitter shares."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

INDENT = "    "
INT32_MIN = "-2147483647 - 1"


class CWriter:
    """C lines at a current depth: `block` opens ``head {`` and closes ``}`` around what its body writes."""

    def __init__(self, depth: int = 0) -> None:
        self.lines: list[str] = []
        self.depth = depth

    def __call__(self, *lines: str) -> None:
        self.lines += [INDENT * self.depth + s for s in lines]

    def extend(self, lines: Iterable[str]) -> None:
        """Lines already indented relative to the current depth."""
        self(*lines)

    @contextmanager
    def block(self, head: str = "", close: str = "}") -> Iterator[None]:
        self(f"{head} {{" if head else "{")
        self.depth += 1
        yield
        self.depth -= 1
        self(close)

    @contextmanager
    def indented(self) -> Iterator[None]:
        self.depth += 1
        yield
        self.depth -= 1


def indent(lines: Iterable[str], levels: int = 1) -> list[str]:
    return [INDENT * levels + s for s in lines]


def cname(name: str) -> str:
    """A C identifier made of a module path."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def shl(src: str, exponent: int) -> str:
    """C for src * 2**exponent: POTNN_SHL, whose result the compiler cannot fold into a multiply."""
    return src if exponent == 0 else f"POTNN_SHL({src}, {exponent})"


def steps(*names: str) -> str:
    """The statement at the top of a loop's body that keeps the variables `names`, advanced by constant
    additions in the loop's header, running sums (a compiler would otherwise compute them as the loop's
    count times the step: a multiply)."""
    return " ".join(f"POTNN_STEP({n});" for n in names)


def clamp_store(dst: str, ctype: str, lo: int, hi: int) -> str:
    return f"{dst} = ({ctype})(v < {lo} ? {lo} : v > {hi} ? {hi} : v);"


def requant(acc: str, shift: int, lo: int, hi: int, dst: str, ctype: str) -> list[str]:
    """Requantise: v = acc >> shift (rounding is in the bias), clamp to [lo, hi], store."""
    v = f"{acc} >> {shift}" if shift > 0 else acc if shift == 0 else f"POTNN_SHL({acc}, {-shift})"
    return [f"v = {v};", clamp_store(dst, ctype, lo, hi)]


def requant_by_table(acc: str, table: str, may_be_negative: bool, lo: int, hi: int, dst: str,
                     ctype: str) -> list[str]:
    """Requantise with the shift read from a per-channel table (a negative shift is a left shift)."""
    v = f"{table} >= 0 ? {acc} >> {table} : POTNN_SHL({acc}, -{table})" if may_be_negative else f"{acc} >> {table}"
    return [f"v = {v};", clamp_store(dst, ctype, lo, hi)]


def c_array(ctype: str, name: str, values: Iterable[int] | np.ndarray, per_line: int = 16) -> list[str]:
    """A static const table, `per_line` values a line."""
    vals = [str(int(v)) for v in values]
    lines = [f"static const {ctype} {name}[{len(vals)}] = {{"]
    for i in range(0, len(vals), per_line):
        lines.append(INDENT + ", ".join(vals[i:i + per_line]) + ",")
    lines.append("};")
    return lines


CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4}
