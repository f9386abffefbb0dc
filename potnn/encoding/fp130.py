"""``fp130``: ±1 … ±128, a nibble ``[sign][exp(3)]`` per weight, two per byte, low nibble first."""

from __future__ import annotations

from .base import SignShiftEncoding, pot_levels


class FP130(SignShiftEncoding):
    name = "fp130"
    levels = pot_levels(7, zero=False)
    max_shift = 7
    unit_bytes = 1
    field_bits = 4
    sign_bit = 3
    table_ctype = "int8_t"  # the kernel sign-extends a byte to test the high nibble's sign
    kernel_code_bytes = 238
    row_kernel_code_bytes = 480
    decoder_state = ("int e, neg;", "int half;")
    decoder_reset = ("half = 0;",)
    decode = ("{ const unsigned nib = half ? (unsigned)(*wp++ >> 4) : (unsigned)(*wp & 15u); half ^= 1;",
              "  e = (int)(nib & 7u); neg = (int)(nib >> 3); }")
    decoder_finish = ("if (half) wp++;",)


ENCODING = FP130()
