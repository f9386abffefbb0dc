"""``unroll``: 0, ±1 … ±128, not packed: each nonzero weight becomes shift-add code, zeros cost nothing."""

from __future__ import annotations

from .base import Encoding, pot_levels


class Unroll(Encoding):
    name = "unroll"
    levels = pot_levels(7, zero=True)
    has_zero = True
    max_shift = 7
    packed = False
    free_zeros = True
    unit_bytes = 0


ENCODING = Unroll()
