"""Weights as shift-add code: taps of equal exponent summed first, so that an accumulator is shifted
once per exponent, not once per weight."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .cwriter import shl


@dataclass(frozen=True)
class ExponentGroup:
    """The taps of one exponent: sources added and sources subtracted, in tap order."""

    exponent: int
    positive: list[str]
    negative: list[str]

    @property
    def size(self) -> int:
        return len(self.positive) + len(self.negative)


def exponent(weight: int) -> int:
    """e of a weight ±2^e."""
    return int(abs(weight)).bit_length() - 1


def exponent_groups(taps: list[tuple[str, int]]) -> list[ExponentGroup]:
    """Taps (C source, weight) grouped by exponent, smallest exponent first."""
    by_exp: dict[int, list[tuple[bool, str]]] = {}
    for src, w in taps:
        by_exp.setdefault(exponent(w), []).append((w > 0, src))
    return [ExponentGroup(e, [s for p, s in terms if p], [s for p, s in terms if not p])
            for e, terms in sorted(by_exp.items())]


def group_lines(groups: list[ExponentGroup], init: bool = False) -> list[str]:
    """acc += (Σ ±x) << e, one statement per group; with `init` the first statement assigns acc."""
    lines = []
    for g in groups:
        if g.positive and g.negative:
            expr, op = " + ".join(g.positive) + " - " + " - ".join(g.negative), "+="
        else:
            expr, op = " + ".join(g.positive or g.negative), ("+=" if g.positive else "-=")
        term = shl(f"({expr})" if g.size > 1 else expr, g.exponent)
        if init and not lines:
            negated = f"-{term}" if term[0] == "(" or term.startswith("POTNN") else f"-({term})"
            lines.append(f"acc = {term if op == '+=' else negated};")
        else:
            lines.append(f"acc {op} {term};")
    if init and not lines:
        lines.append("acc = 0;")
    return lines


def group_constructs(groups: list[ExponentGroup], tap: str = "tap") -> Counter[str]:
    """Flash constructs of `group_lines`: one `tap` per weight, one shift-and-add per group."""
    return Counter({tap: sum(g.size for g in groups), "group": len(groups)})
