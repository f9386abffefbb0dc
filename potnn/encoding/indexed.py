"""``indexed``: 0, ±1 … ±128 as lists of where each exponent's weights are, summed by Horner's rule.

A filter is a header byte ``levels << 3 | low`` (its non-zero weights have exponents ``low`` …
``low + levels - 1``), then for each exponent from the highest down: the positions of its positive
weights, a 0, the positions of its negative weights, a 0. A position is stored as the step from the
previous one of its list (the first from -1), so every step is 1 … 255 and 0 can end a list. The
kernel adds the inputs of a list with no shift at all (a load and an add per weight) and doubles the
sum once per exponent; a zero weight is simply absent, so pruning buys speed and flash alike.

A step longer than 255 cannot be stored; the packer then puts one position into both lists of the
exponent (added once and subtracted once: no effect on the sum) every 255 places, which the unpacker
reads back as the zero it is.

Positions are the weights' indices in packing order, or for the row kernel (four neighbouring outputs
of a conv row at once, `positions` of :meth:`Indexed.filter_bytes`) their places in the copied
receptive field: the stream depends on the layout the kernel reads.
"""

from __future__ import annotations

import numpy as np

from .base import Encoding, pot_levels

MAX_STEP = 255


def _steps(positions: list[int]) -> list[int]:
    """Steps from -1 through the sorted `positions`, each 1 … MAX_STEP (no gap may exceed it: see _bridged)."""
    return np.diff([-1, *positions]).tolist()


def _bridged(plus: list[int], minus: list[int], places: set[int]) -> tuple[list[int], list[int]]:
    """The two lists of one exponent with a position added to both wherever either has a gap over MAX_STEP.

    The bridge is the farthest of the filter's `places` the gap's start can step to that the other list
    does not hold; a gap with no such place (every weight place within 255 in the other list) raises
    ValueError: no trained filter looks so.
    """
    plus, minus = sorted(plus), sorted(minus)
    while True:
        for values, other in ((plus, minus), (minus, plus)):
            gaps = [(a, b) for a, b in zip([-1, *values], values) if b - a > MAX_STEP]
            if gaps:
                start = gaps[0][0]
                taken = set(other)
                free = [c for c in range(start + MAX_STEP, start, -1) if c in places and c not in taken]
                if not free:
                    raise ValueError(f"indexed: no weight place in {start + 1}..{start + MAX_STEP} is free to bridge a "
                                     "step longer than 255; use fp130 for this layer")
                plus, minus = sorted(plus + [free[0]]), sorted(minus + [free[0]])
                break
        else:
            return plus, minus


class Indexed(Encoding):
    name = "indexed"
    levels = pot_levels(7, zero=True)
    has_zero = True
    max_shift = 7
    unit_bytes = 1
    field_bits = 8
    kernel_code_bytes = 90
    row_kernel_code_bytes = 206
    row_kernel_rows = 1
    self_delimiting = True
    free_zeros = True

    def filter_bytes(self, q: np.ndarray, positions: np.ndarray | None = None) -> list[bytes]:
        where = np.arange(q.shape[1]) if positions is None else np.asarray(positions)
        places = set(where.tolist())
        out = []
        for row in q:
            nonzero = row != 0
            if not nonzero.any():
                out.append(bytes([0]))
                continue
            exps = np.log2(np.abs(row[nonzero])).astype(int)
            low, high = int(exps.min()), int(exps.max())
            stream = [(high - low + 1) << 3 | low]
            for e in range(high, low - 1, -1):
                plus = where[row == 1 << e].tolist()
                minus = where[row == -(1 << e)].tolist()
                for values in _bridged(plus, minus, places):
                    stream += _steps(values) + [0]
            out.append(bytes(stream))
        return out

    def unpack(self, raw: np.ndarray, n_filters: int, filter_len: int,
               positions: np.ndarray | None = None) -> np.ndarray:
        where = np.arange(filter_len) if positions is None else np.asarray(positions)
        index = {int(p): i for i, p in enumerate(where)}
        out = np.zeros((n_filters, filter_len), dtype=np.int64)
        k = 0
        for row in out:
            if k >= raw.size:
                raise ValueError(f"indexed stream ends before filter {n_filters} of {n_filters}")
            levels, low = int(raw[k]) >> 3, int(raw[k]) & 7
            k += 1
            if levels + low > 8:
                raise ValueError(f"indexed filter header {raw[k - 1]:#04x} names exponents past 7")
            for e in range(low + levels - 1, low - 1, -1):
                for sign in (1, -1):
                    p = -1
                    while True:
                        if k >= raw.size:
                            raise ValueError("indexed stream ends inside a list of positions")
                        step = int(raw[k])
                        k += 1
                        if step == 0:
                            break
                        p += step
                        if p not in index:
                            raise ValueError(f"indexed position {p} is not a weight of the filter")
                        row[index[p]] += sign << e
        if k != raw.size:
            raise ValueError(f"indexed stream has {raw.size - k} trailing bytes")
        result = out.astype(np.int32)
        self.check_legal(result)
        return result

    def kernel_terms(self, row: np.ndarray) -> tuple[int, int]:
        """The kernel subtracts negative terms itself and finds each filter's end: (non-zeros, 0)."""
        return int((row != 0).sum()), 0


ENCODING = Indexed()
