"""``ternary``: -1, 0, +1 as 2-bit codes (00 = 0, 01 = +1, 10 = -1, 11 = the previous value twice more),
four per byte, lowest bits first. Every weight is representable; only the code stream's length varies."""

from __future__ import annotations

import numpy as np

from .base import RunEncoding

REPEAT = 0b11
CODE: dict[int, int] = {0: 0b00, 1: 0b01, -1: 0b10}
VALUE: dict[int, int] = {code: value for value, code in CODE.items()}


class Ternary(RunEncoding):
    name = "ternary"
    levels = (-1, 0, 1)
    max_shift = 0
    unit_bytes = 1
    field_bits = 2
    kernel_code_bytes = 358
    decoder_state = ("int e, neg;", "unsigned byte;", "int left, prev, repeat;")
    decoder_reset = ("left = 0; byte = 0; prev = 0; repeat = 0;",)
    decode = ("if (repeat) { repeat--; }",
              "else {",
              "    unsigned code;",
              "    if (!left) { byte = *wp++; left = 4; }",
              "    code = byte & 3u; byte >>= 2; left--;",
              "    if (code == 3u) repeat = 1; else prev = code == 1u ? 1 : code == 2u ? -1 : 0;",
              "}",
              "e = prev ? 0 : -1; neg = prev < 0;")

    def _codes(self, row: np.ndarray) -> list[tuple[int, int]]:
        """Greedy (code, current value) pairs of one filter: when the next two weights both equal the
        previous value (0 at filter start) emit 11 and advance by two, else the explicit code."""
        values = row.tolist()
        codes: list[tuple[int, int]] = []
        prev = 0
        i = 0
        while i < len(values):
            if i + 1 < len(values) and values[i] == prev and values[i + 1] == prev:
                codes.append((REPEAT, prev))
                i += 2
            else:
                prev = values[i]
                codes.append((CODE[prev], prev))
                i += 1
        return codes

    def row_fields(self, row: np.ndarray) -> np.ndarray:
        return np.array([code for code, _ in self._codes(row)], dtype=np.uint8)

    def decode_filter(self, fields: np.ndarray, start: int, out: np.ndarray) -> int:
        length = out.size
        pos = 0
        prev = 0
        k = start
        while pos < length:
            if k >= fields.size:
                raise ValueError("ternary stream truncated")
            code = int(fields[k])
            k += 1
            if code == REPEAT:
                if pos + 2 > length:
                    raise ValueError("malformed ternary stream: repeat code past the filter end")
                out[pos : pos + 2] = prev
                pos += 2
            else:
                prev = VALUE[code]
                out[pos] = prev
                pos += 1
        return k

    def kernel_terms(self, row: np.ndarray) -> tuple[int, int]:
        """One term per code (a repeat adds two inputs as one term), negative while the value is -1."""
        codes = self._codes(row)
        return len(codes), sum(1 for _, value in codes if value < 0)


ENCODING = Ternary()
