"""``2bit``: ±1, ±2, two bits ``[sign][shift]`` per weight, 16 per little-endian ``uint32``."""

from __future__ import annotations

from .base import SignShiftEncoding, pot_levels


class TwoBit(SignShiftEncoding):
    name = "2bit"
    levels = pot_levels(1, zero=False)
    max_shift = 1
    unit_bytes = 4
    field_bits = 2
    sign_bit = 1
    table_ctype = "uint32_t"
    stream_ctype = "uint32_t"
    kernel_code_bytes = 288
    decoder_state = ("int e, neg;", "uint32_t word;", "int left;")
    decoder_reset = ("left = 0; word = 0;",)
    decode = ("if (!left) { word = *wp++; left = 16; }",
              "{ const unsigned code = (unsigned)(word & 3u); word >>= 2; left--;",
              "  e = (int)(code & 1u); neg = (int)(code >> 1); }")


ENCODING = TwoBit()
