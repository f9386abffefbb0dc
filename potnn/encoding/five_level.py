"""``5level``: -8, -1, 0, +1, +8 as nibbles ``[skip(2)][sign][mag]``, two per byte, low nibble first.

The skip field counts the zeros before a weight, at most 3, so in each run of zeros within a
filter the 4th, 8th, 12th ... zero becomes +1 (legalisation). A filter ending in zeros gets one
trailing entry whose skip reaches the filter end and whose sign and mag are 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import RunEncoding

if TYPE_CHECKING:
    import torch

MAX_SKIP = 3


def zero_run_position(q: np.ndarray) -> np.ndarray:
    """1-based position of each zero within its run of consecutive zeros in its filter (0 elsewhere):
    index minus the index of the last non-zero at or before it, by a running maximum along the filter."""
    idx = np.arange(q.shape[1])
    last_nonzero = np.maximum.accumulate(np.where(q != 0, idx, -1), axis=1)
    return np.where(q == 0, idx - last_nonzero, 0)


class FiveLevel(RunEncoding):
    name = "5level"
    levels = (-8, -1, 0, 1, 8)
    max_shift = 3
    unit_bytes = 1
    field_bits = 4
    kernel_code_bytes = 142
    decoder_state = ("int e, neg;", "int half, zeros, pending;", "unsigned entry;")
    decoder_reset = ("half = 0; zeros = 0; pending = 0; entry = 0;",)
    decode = ("if (!zeros && !pending) {",
              "    entry = half ? (unsigned)(*wp++ >> 4) : (unsigned)(*wp & 15u); half ^= 1;",
              "    zeros = (int)(entry >> 2); pending = 1;",
              "}",
              "if (zeros) { zeros--; e = -1; neg = 0; }",
              "else { pending = 0; e = (entry & 1u) ? 3 : 0; neg = (int)((entry >> 1) & 1u); }")
    decoder_finish = ("if (half) wp++;",)

    def legalize(self, q: np.ndarray) -> np.ndarray:
        out = super().legalize(q)
        pos = zero_run_position(out)
        out[(pos > 0) & (pos % (MAX_SKIP + 1) == 0)] = 1
        return out

    def check_legal(self, q: np.ndarray) -> None:
        super().check_legal(q)
        if (zero_run_position(q) > MAX_SKIP).any():
            raise ValueError("5level weights contain a run of more than 3 zeros in a filter; call legalize() first")

    def legalize_torch(self, q: torch.Tensor) -> torch.Tensor:
        """The same rule on a tensor, with a running maximum along each filter (torch.cummax)."""
        import torch  # QAT only: the NumPy side of potnn runs without torch

        if q.numel() == 0:
            return q
        zero = q == 0
        pos = torch.arange(q.shape[1], device=q.device).expand_as(q)
        last_nonzero = torch.cummax(torch.where(zero, torch.full_like(pos, -1), pos), dim=1).values
        forced = zero & ((pos - last_nonzero) % (MAX_SKIP + 1) == 0)
        return torch.where(forced, torch.ones_like(q), q)

    def row_fields(self, row: np.ndarray) -> np.ndarray:
        nz = np.flatnonzero(row)
        starts = np.concatenate(([0], nz + 1))[: nz.size]
        vals = row[nz]
        fields = ((nz - starts) << 2) | ((vals < 0) << 1) | (np.abs(vals) == 8)
        trailing = row.size - (nz[-1] + 1 if nz.size else 0)
        if trailing:
            fields = np.append(fields, trailing << 2)
        return fields.astype(np.uint8)

    def decode_filter(self, fields: np.ndarray, start: int, out: np.ndarray) -> int:
        """Stops once ``len(out)`` positions are consumed; an entry whose skip lands exactly on the
        filter end is the trailing-zeros entry and must carry sign=mag=0."""
        length = out.size
        pos = 0
        k = start
        while pos < length:
            if k >= fields.size:
                raise ValueError("5level stream truncated")
            field = int(fields[k])
            k += 1
            pos += field >> 2
            sign, mag = (field >> 1) & 1, field & 1
            if pos > length or (pos == length and (sign or mag)):
                raise ValueError("malformed 5level stream: entry past the filter end")
            if pos == length:
                break
            out[pos] = (-1 if sign else 1) * (8 if mag else 1)
            pos += 1
        return k

    def kernel_terms(self, row: np.ndarray) -> tuple[int, int]:
        """One entry per nonzero weight (the kernel stops before the trailing-zeros entry)."""
        return int(np.count_nonzero(row)), int((row < 0).sum())


ENCODING = FiveLevel()
