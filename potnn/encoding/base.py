"""What every weight encoding is: a level set, a legalisation rule, a bit packing and its C side.

A layer's weights are a 2-D integer array ``q[n_filters, filter_len]`` in packing order (the
PyTorch weight layout flattened per output channel). Every packed stream is aligned per filter to
the encoding's storage unit, so the C decoder can start at any filter and never reads across a
filter boundary. Bit fields are filled least-significant first. Sign bits are 1 for negative values.

Two families share their packing here: `SignShiftEncoding` (every weight is a fixed-width
``[sign][shift]`` field: fp130, 2bit) and `RunEncoding` (variable-length entries per filter:
5level, ternary). Each concrete encoding lives in its own module of this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

KERNEL_DIR = Path(__file__).parent / "kernels"


def pot_levels(max_shift: int, zero: bool) -> tuple[int, ...]:
    """±2^0..±2^max_shift, optionally with 0, sorted: the shape shared by the PoT level sets."""
    magnitudes = [1 << e for e in range(max_shift + 1)]
    return tuple(sorted([-m for m in magnitudes] + ([0] if zero else []) + magnitudes))


def as_weights(q: np.ndarray) -> np.ndarray:
    """Validate that ``q`` is a 2-D integer array ``[n_filters, filter_len]``.

    Float arrays are refused rather than rounded: a non-integer here means the caller forgot to
    quantise, and silent rounding would hide that.
    """
    arr = np.asarray(q)
    if arr.ndim != 2:
        raise ValueError(f"weights must be 2-D [n_filters, filter_len], got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"weights must be an integer array, got dtype {arr.dtype}")
    return arr


def fields_to_bytes(fields: np.ndarray, bits: int, unit_bytes: int) -> np.ndarray:
    """Pack rows of ``bits``-wide fields LSB-first into bytes, each row padded to ``unit_bytes``.

    Returns uint8 ``[rows, bytes_per_row]``. Units are little-endian, so LSB-first bytes equal
    LSB-first ``uint32`` words and one routine serves every encoding.
    """
    per_byte = 8 // bits
    per_unit = per_byte * unit_bytes
    rows, n = fields.shape
    padded = np.zeros((rows, -(-n // per_unit) * per_unit), dtype=np.uint8)
    padded[:, :n] = fields
    grouped = padded.reshape(rows, -1, per_byte)
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)


def bytes_to_fields(data: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`fields_to_bytes` without the padding removal: uint8 fields, LSB-first."""
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    return ((data[..., None] >> shifts) & ((1 << bits) - 1)).reshape(*data.shape[:-1], -1)


class Encoding:
    """One weight encoding: its facts for NumPy, for PyTorch (QAT) and for the C generator.

    Attributes:
        name: the name a Config uses.
        levels: the representable weight values, sorted ascending.
        has_zero: whether 0 is representable (without it, :meth:`legalize` maps 0 to +1).
        max_shift: log2 of the largest ``|level|``: the largest shift the C code applies.
        packed: False only for ``unroll``, whose weights are compiled into code, not data.
        unit_bytes: storage unit each filter is padded to (0 when not packed).
        field_bits: width of one packed field (a weight or an entry).
        table_ctype: C type of the weight table the dot-product kernel reads.
        stream_ctype: C type of the weight table the weight-by-weight decoder reads.
        fixed_length: every filter takes the same bytes, so the C steps from filter to filter without an
            offset table.
        kernel_code_bytes: size of the dot-product kernel in GCC -Os RV32EC code (flash estimate).
        row_kernel_code_bytes: the same for the row kernel (kernels/row4_<name>.c: four neighbouring
            outputs of a conv 3 taps wide per weight decoded); 0 when the encoding has none.
        row_kernel_rows: rows of the receptive field (input channels x kernel rows) the row kernel takes
            per step: a conv whose row count is not a multiple keeps the one-output kernel.
        self_delimiting: each filter's stream says where it ends and the kernels take no weight count;
            the stream stores positions, so it depends on the layout the kernel reads (`positions` of
            `filter_bytes` and `unpack`), and the row kernel returns the next filter's stream.
        free_zeros: a zero weight costs no instructions (pruning speeds the layer up), where the packed
            kernels of the other encodings decode every weight, zero or not.
    """

    name: ClassVar[str]
    levels: ClassVar[tuple[int, ...]]
    has_zero: ClassVar[bool]
    max_shift: ClassVar[int]
    packed: ClassVar[bool] = True
    unit_bytes: ClassVar[int] = 1
    field_bits: ClassVar[int] = 0
    table_ctype: ClassVar[str] = "uint8_t"
    stream_ctype: ClassVar[str] = "uint8_t"
    fixed_length: ClassVar[bool] = False
    kernel_code_bytes: ClassVar[int] = 0
    row_kernel_code_bytes: ClassVar[int] = 0
    row_kernel_rows: ClassVar[int] = 2
    self_delimiting: ClassVar[bool] = False
    free_zeros: ClassVar[bool] = False
    # C statements of the weight-by-weight decoder: state declarations, reset at a filter's start,
    # the next weight into e (shift, -1 for zero) and neg, and the step past a half-used unit.
    decoder_state: ClassVar[tuple[str, ...]] = ()
    decoder_reset: ClassVar[tuple[str, ...]] = ()
    decode: ClassVar[tuple[str, ...]] = ()
    decoder_finish: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"<encoding {self.name}>"

    # ---- NumPy ------------------------------------------------------------------------------
    def check_levels(self, q: np.ndarray, allowed: tuple[int, ...]) -> None:
        """Raise ValueError naming the offending values when ``q`` holds values outside ``allowed``."""
        bad = np.unique(q[~np.isin(q, allowed)])
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:8])
            raise ValueError(
                f"weights {shown} are not levels of encoding {self.name!r} (levels: {list(self.levels)})"
            )

    def legalize(self, q: np.ndarray) -> np.ndarray:
        """A copy of validated weights ``q`` that this encoding can represent (0 -> +1 without zero)."""
        self.check_levels(q, self.levels if self.has_zero else self.levels + (0,))
        out = q.copy()
        if not self.has_zero:
            out[out == 0] = 1
        return out

    def check_legal(self, q: np.ndarray) -> None:
        """Refuse weights the packing cannot represent (packing never legalises silently)."""
        self.check_levels(q, self.levels)

    def filter_bytes(self, q: np.ndarray) -> list[bytes]:
        """The packed bytes of each filter of legal int64 weights, padded to the storage unit."""
        raise ValueError(f"encoding {self.name!r} is not packed: its weights are emitted as shift-add code")

    def unpack(self, raw: np.ndarray, n_filters: int, filter_len: int) -> np.ndarray:
        """Strictly decode a stream back into int32 weights ``[n_filters, filter_len]``."""
        raise ValueError(f"encoding {self.name!r} is not packed: its weights are emitted as shift-add code")

    def kernel_terms(self, row: np.ndarray) -> tuple[int, int]:
        """(n, negatives) of one legal filter as the dot kernel walks it: n is the count the kernel is
        called with, negatives the terms it adds as one's complement (the bias table adds them back)."""
        raise ValueError(f"encoding {self.name!r} has no dot-product kernel")

    # ---- PyTorch ----------------------------------------------------------------------------
    def legalize_torch(self, q: torch.Tensor) -> torch.Tensor:
        """QAT's twin of :meth:`legalize` on rounded weights; rounding already gave every weight a level."""
        return q

    # ---- C --------------------------------------------------------------------------------
    def kernel_source(self) -> str:
        """The dot-product kernel's template (kernels/dot_<name>.c): NAME and X stand for the
        function name and the input type."""
        return (KERNEL_DIR / f"dot_{self.name}.c").read_text()

    def row_kernel_source(self) -> str:
        """The row kernel's template (kernels/row4_<name>.c), with the same tokens as the dot kernel's."""
        return (KERNEL_DIR / f"row4_{self.name}.c").read_text()


class SignShiftEncoding(Encoding):
    """Every weight is one fixed-width field ``[sign][log2 |w|]``: fixed filter length, no zero."""

    has_zero = False
    fixed_length = True
    sign_bit: ClassVar[int]

    def filter_bytes(self, q: np.ndarray) -> list[bytes]:
        magnitude = np.log2(np.abs(q)).astype(np.uint8)
        fields = ((q < 0).astype(np.uint8) << self.sign_bit) | magnitude
        return [row.tobytes() for row in fields_to_bytes(fields, self.field_bits, self.unit_bytes)]

    def unpack(self, raw: np.ndarray, n_filters: int, filter_len: int) -> np.ndarray:
        per_unit = 8 // self.field_bits * self.unit_bytes
        filter_bytes = -(-filter_len // per_unit) * self.unit_bytes
        if raw.size != n_filters * filter_bytes:
            raise ValueError(f"{self.name} stream has {raw.size} bytes, expected {n_filters * filter_bytes}")
        fields = bytes_to_fields(raw.reshape(n_filters, filter_bytes), self.field_bits)
        if fields[:, filter_len:].any():
            raise ValueError(f"{self.name} stream has non-zero padding")
        fields = fields[:, :filter_len].astype(np.int32)
        magnitude = np.left_shift(1, fields & ((1 << self.sign_bit) - 1))
        return np.where(fields >> self.sign_bit, -magnitude, magnitude).astype(np.int32)

    def kernel_terms(self, row: np.ndarray) -> tuple[int, int]:
        return row.size, int((row < 0).sum())


class RunEncoding(Encoding):
    """Variable-length entries per filter (a run of zeros or repeats is one entry): the C needs each
    filter's offset and entry count, and decoding is sequential."""

    has_zero = True

    def row_fields(self, row: np.ndarray) -> np.ndarray:
        """The entries of one legal filter, uint8."""
        raise NotImplementedError

    def decode_filter(self, fields: np.ndarray, start: int, out: np.ndarray) -> int:
        """Decode one filter into ``out`` from field index ``start``; return the next index."""
        raise NotImplementedError

    def filter_bytes(self, q: np.ndarray) -> list[bytes]:
        return [fields_to_bytes(self.row_fields(row)[None, :], self.field_bits, self.unit_bytes).tobytes()
                for row in q]

    def unpack(self, raw: np.ndarray, n_filters: int, filter_len: int) -> np.ndarray:
        per_unit = 8 // self.field_bits * self.unit_bytes
        fields = bytes_to_fields(raw, self.field_bits)
        out = np.zeros((n_filters, filter_len), dtype=np.int32)
        k = 0
        for row in out:
            end = self.decode_filter(fields, k, row)
            k = -(-end // per_unit) * per_unit
            if fields[end:k].any():
                raise ValueError(f"{self.name} stream has non-zero padding")
        if k != fields.size:
            raise ValueError(f"{self.name} stream has {raw.size - k // (8 // self.field_bits)} trailing bytes")
        return out
