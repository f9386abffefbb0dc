"""Input-major accumulation of a block of output channels: each input loaded once (per exponent) and
added into the register accumulators a0.. of every channel of the block that uses it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .cwriter import shl
from .shift_add import exponent

Tap = tuple[int, int]  # (accumulator index, weight)


@dataclass(frozen=True)
class InputMajor:
    """The loads of one block, in the order chosen, and the adds each feeds.

    Two orders, whichever needs fewer instructions (loads + adds + shifts, estimated):

    * by exponent, largest first (Horner's scheme): an input is loaded once per exponent among the
      block's weights for it, and an accumulator is shifted once per distinct exponent, not once per
      weight. Pays for sparse blocks, whose inputs rarely feed two channels.
    * by input: each input loaded once and added, shifted, into every accumulator that uses it. Pays
      for dense blocks with many inputs per channel.
    """

    channels: int
    by_input: bool
    loads: list[tuple[int, list[Tap]]]  # (offset from p, the taps it feeds)

    @staticmethod
    def plan(weight: np.ndarray, block: list[int], offsets: list[tuple[int, int, int, int]],
             small_block: int) -> InputMajor:
        """`offsets`: (offset from p, input channel, ky, kx) of each tap position; `small_block`: blocks of
        at most this many channels and a 3x3 window's loads, which GCC keeps in registers across exponents."""
        uses = [[(i, int(weight[oc, j, ky, kx])) for i, oc in enumerate(block) if weight[oc, j, ky, kx]]
                for _, j, ky, kx in offsets]
        n_taps = sum(map(len, uses))
        loaded = sum(1 for u in uses if u)
        by_input = loaded + n_taps + sum(len({exponent(v) for _, v in u} - {0}) for u in uses)
        small = len(block) <= small_block and loaded <= 9
        pairs = loaded if small else sum(len({exponent(v) for _, v in u}) for u in uses)
        per_channel: list[set[int]] = [set() for _ in block]
        for u in uses:
            for i, v in u:
                per_channel[i].add(exponent(v))
        by_exponent = pairs + n_taps + sum(max(len(e) - 1, 0) for e in per_channel)
        if by_input < by_exponent:
            return InputMajor(len(block), True, [(o, u) for (o, _, _, _), u in zip(offsets, uses) if u])
        top = max((exponent(v) for u in uses for _, v in u), default=-1)
        loads = []
        for e in range(top, -1, -1):
            for (o, _, _, _), u in zip(offsets, uses):
                here = [(i, v) for i, v in u if exponent(v) == e]
                if here:
                    loads.append((o, here))
        return InputMajor(len(block), False, loads)

    def lines(self) -> tuple[list[str], list[int]]:
        """The C, and per channel the left shift still to apply to its sum (after a max-pool's max: a
        shift keeps the order). The caller's POTNN_OPAQUE(p) keeps GCC from carrying the loaded inputs
        over to the next block in spilled registers."""
        lines = [f"int32_t x, {', '.join(f'a{i}' for i in range(self.channels))};"]
        level: list[int | None] = [None] * self.channels  # each accumulator's current exponent
        for offset, taps in self.loads:
            lines.append(f"x = p[{offset}];")
            for i, v in taps:
                e, sign = exponent(v), "+" if v > 0 else "-"
                if self.by_input:
                    term = shl("x", e)
                    lines.append(f"a{i} {sign}= {term};" if level[i] is not None else
                                 f"a{i} = {term};" if v > 0 else f"a{i} = -{term};")
                    level[i] = 0
                elif level[i] is None:
                    lines.append(f"a{i} = x;" if v > 0 else f"a{i} = -x;")
                elif level[i] != e:
                    lines.append(f"a{i} = POTNN_SHL(a{i}, {level[i] - e}) {sign} x;")
                else:
                    lines.append(f"a{i} {sign}= x;")
                level[i] = 0 if self.by_input else e
        lines += [f"a{i} = 0;" for i in range(self.channels) if level[i] is None]
        return lines, [lv or 0 for lv in level]

    def constructs(self) -> Counter[str]:
        taps = [v for _, t in self.loads for _, v in t]
        if self.by_input:
            shifts = sum(exponent(v) > 0 for v in taps)
        else:
            per_channel: dict[int, set[int]] = {}
            for _, t in self.loads:
                for i, v in t:
                    per_channel.setdefault(i, set()).add(exponent(v))
            shifts = sum(len(e) - 1 for e in per_channel.values())
        return Counter(pixel_load=len(self.loads), pixel_tap=len(taps), pixel_shift=shifts)
