"""The five power-of-two weight encodings: level sets, legalisation and bit packing.

This module is the specification of how quantised weights are stored in the generated C.
A layer's weights are a 2-D integer array ``q[n_filters, filter_len]`` in packing order (the
PyTorch weight layout flattened per output channel: ``[in_ch_per_group][kh][kw]`` for a
convolution, ``[in_features]`` for a linear layer).

Every packed stream is aligned per filter to its storage unit: filters are concatenated and
each one is padded with zero bits up to a whole unit. The C decoder can therefore start at any
filter's offset (see :func:`filter_offsets`) and never reads across a filter boundary - a
property whose absence caused mismatches in the earlier reference implementation.

Bit fields are always filled least-significant first: the first weight of a filter sits in the
lowest bits of its first byte (and, for ``2bit``, of its first little-endian ``uint32``).

=========  ==========================  ====================================================
name       levels                      packing
=========  ==========================  ====================================================
unroll     0, ±1, ±2, ±4, ..., ±128    not packed: weights become shift-add code
fp130      ±1, ±2, ..., ±128           nibble ``[sign][exp(3)]``, value ±2^exp
5level     -8, -1, 0, +1, +8           nibble ``[skip(2)][sign][mag]``, zeros run-length coded
2bit       -2, -1, +1, +2              2 bits ``[sign][shift]``, 16 per ``uint32``
ternary    -1, 0, +1                   2-bit codes 00=0, 01=+1, 10=-1, 11=repeat previous x2
=========  ==========================  ====================================================

Sign bits are 1 for negative values everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENCODINGS: tuple[str, ...] = ("unroll", "fp130", "5level", "2bit", "ternary")


@dataclass(frozen=True)
class Encoding:
    """Static description of one weight encoding.

    Attributes:
        name: one of :data:`ENCODINGS`.
        levels: the representable weight values, sorted ascending.
        has_zero: whether 0 is representable (encodings without it map 0 to +1 in
            :func:`legalize`).
        max_shift: log2 of the largest ``|level|``; the largest shift the C code applies.
        packed: False only for ``unroll``, whose weights are compiled into code, not data.
        unit_bytes: storage unit each filter is padded to (0 when not packed).
    """

    name: str
    levels: tuple[int, ...]
    has_zero: bool
    max_shift: int
    packed: bool
    unit_bytes: int


def _pot_levels(max_shift: int, zero: bool) -> tuple[int, ...]:
    """±2^0..±2^max_shift, optionally with 0, sorted - the shared shape of the PoT level sets."""
    magnitudes = [1 << e for e in range(max_shift + 1)]
    return tuple(sorted([-m for m in magnitudes] + ([0] if zero else []) + magnitudes))


_TABLE: dict[str, Encoding] = {
    "unroll": Encoding("unroll", _pot_levels(7, zero=True), True, 7, False, 0),
    "fp130": Encoding("fp130", _pot_levels(7, zero=False), False, 7, True, 1),
    "5level": Encoding("5level", (-8, -1, 0, 1, 8), True, 3, True, 1),
    "2bit": Encoding("2bit", _pot_levels(1, zero=False), False, 1, True, 4),
    "ternary": Encoding("ternary", (-1, 0, 1), True, 0, True, 1),
}

# Width in bits of one packed field (a weight or a 5level/ternary entry).
_FIELD_BITS: dict[str, int] = {"fp130": 4, "5level": 4, "2bit": 2, "ternary": 2}

_MAX_SKIP = 3  # 5level: the 2-bit skip field counts at most 3 preceding zeros.
_TERNARY_REPEAT = 0b11
_TERNARY_CODE: dict[int, int] = {0: 0b00, 1: 0b01, -1: 0b10}
_TERNARY_VALUE: dict[int, int] = {code: value for value, code in _TERNARY_CODE.items()}


def get_encoding(name: str) -> Encoding:
    """Return the :class:`Encoding` called ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the valid ones so a typo in a
            config is fixed at once.
    """
    try:
        return _TABLE[name]
    except KeyError:
        raise ValueError(
            f"unknown weight encoding {name!r}; valid encodings: {', '.join(ENCODINGS)}"
        ) from None


def _as_weights(q: np.ndarray) -> np.ndarray:
    """Validate that ``q`` is a 2-D integer array ``[n_filters, filter_len]``.

    Float arrays are refused rather than rounded, because a non-integer here means the caller
    forgot to quantise and silent rounding would hide that.
    """
    arr = np.asarray(q)
    if arr.ndim != 2:
        raise ValueError(f"weights must be 2-D [n_filters, filter_len], got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"weights must be an integer array, got dtype {arr.dtype}")
    return arr


def _check_levels(enc: Encoding, q: np.ndarray, allowed: tuple[int, ...]) -> None:
    """Raise ValueError naming the offending values when ``q`` holds values outside ``allowed``."""
    bad = np.unique(q[~np.isin(q, allowed)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8])
        raise ValueError(
            f"weights {shown} are not levels of encoding {enc.name!r} (levels: {list(enc.levels)})"
        )


def _zero_run_position(q: np.ndarray) -> np.ndarray:
    """1-based position of each zero within its run of consecutive zeros in its filter.

    Non-zero entries get 0. Vectorised as "index minus index of the last non-zero at or before
    it" with a running maximum along each filter (``torch.cummax`` mirrors it).
    """
    idx = np.arange(q.shape[1])
    last_nonzero = np.maximum.accumulate(np.where(q != 0, idx, -1), axis=1)
    return np.where(q == 0, idx - last_nonzero, 0)


def legalize(name: str, q: np.ndarray) -> np.ndarray:
    """Return a copy of ``q`` that encoding ``name`` can represent.

    Representable weights are never changed; only values the packing cannot store are moved,
    so training (QAT, which mirrors this rule in torch) sees exactly what the board will run:

    * ``fp130``, ``2bit`` (no zero level): every 0 becomes +1.
    * ``5level``: within each filter (row), in each run of consecutive zeros the zeros at
      1-based positions 4, 8, 12, ... of the original run become +1. This is exactly
      "the skip field encodes up to 3 preceding zeros; a 4th consecutive zero becomes +1".
      Vectorised: ``pos = i - (index of last non-zero at or before i)`` via a running max,
      then replace where ``q == 0 and pos % 4 == 0``.
    * ``unroll``, ``ternary``: returned unchanged.

    Raises:
        ValueError: a value that is not a level of the encoding (other than the 0 that
            ``fp130``/``2bit`` map to +1), a non-2-D or non-integer array, an unknown name.
    """
    enc = get_encoding(name)
    q = _as_weights(q)
    _check_levels(enc, q, enc.levels if enc.has_zero else enc.levels + (0,))
    out = q.copy()
    if not enc.has_zero:
        out[out == 0] = 1
    elif name == "5level":
        pos = _zero_run_position(out)
        out[(pos > 0) & (pos % (_MAX_SKIP + 1) == 0)] = 1
    return out


def _check_legal(enc: Encoding, q: np.ndarray) -> None:
    """Refuse weights the packing cannot represent (pack never legalises silently)."""
    _check_levels(enc, q, enc.levels)
    if enc.name == "5level" and (_zero_run_position(q) > _MAX_SKIP).any():
        raise ValueError(
            "5level weights contain a run of more than 3 zeros in a filter; call legalize() first"
        )


def _fields_to_bytes(fields: np.ndarray, bits: int, unit_bytes: int) -> np.ndarray:
    """Pack rows of ``bits``-wide fields LSB-first into bytes, each row padded to ``unit_bytes``.

    Returns uint8 ``[rows, bytes_per_row]``. Because units are little-endian, LSB-first bytes
    equal LSB-first ``uint32`` words, so one routine serves every encoding.
    """
    per_byte = 8 // bits
    per_unit = per_byte * unit_bytes
    rows, n = fields.shape
    padded = np.zeros((rows, -(-n // per_unit) * per_unit), dtype=np.uint8)
    padded[:, :n] = fields
    grouped = padded.reshape(rows, -1, per_byte)
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)


def _bytes_to_fields(data: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`_fields_to_bytes` without the padding removal: uint8 fields, LSB-first."""
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    return ((data[..., None] >> shifts) & ((1 << bits) - 1)).reshape(*data.shape[:-1], -1)


def _log2_magnitude(q: np.ndarray) -> np.ndarray:
    """Exponent e of each ±2^e weight (weights must be non-zero powers of two)."""
    return np.log2(np.abs(q)).astype(np.uint8)


def _five_level_fields(row: np.ndarray) -> np.ndarray:
    """5level entries of one legal filter: ``skip<<2 | sign<<1 | mag`` plus the trailing entry."""
    nz = np.flatnonzero(row)
    starts = np.concatenate(([0], nz + 1))[: nz.size]
    vals = row[nz]
    fields = ((nz - starts) << 2) | ((vals < 0) << 1) | (np.abs(vals) == 8)
    trailing = row.size - (nz[-1] + 1 if nz.size else 0)
    if trailing:
        fields = np.append(fields, trailing << 2)
    return fields.astype(np.uint8)


def _ternary_fields(row: np.ndarray) -> np.ndarray:
    """Greedy ternary codes of one filter, exactly as specified.

    At each position: if two positions remain and both equal the previous decoded value
    (0 at filter start), emit 11 and advance by two; otherwise emit the explicit code.
    Sequential by nature (each choice moves the cursor), hence the loop.
    """
    values = row.tolist()
    codes: list[int] = []
    prev = 0
    i = 0
    n = len(values)
    while i < n:
        if i + 1 < n and values[i] == prev and values[i + 1] == prev:
            codes.append(_TERNARY_REPEAT)
            i += 2
        else:
            prev = values[i]
            codes.append(_TERNARY_CODE[prev])
            i += 1
    return np.array(codes, dtype=np.uint8)


def _filter_bytes(name: str, q: np.ndarray) -> list[bytes]:
    """The packed bytes of each filter, already padded to the storage unit."""
    enc = get_encoding(name)
    if not enc.packed:
        raise ValueError(f"encoding {name!r} is not packed: its weights are emitted as shift-add code")
    q = _as_weights(q).astype(np.int64)  # int64 so that abs(-128) cannot overflow int8
    _check_legal(enc, q)
    bits = _FIELD_BITS[name]
    if name in ("fp130", "2bit"):
        magnitude = _log2_magnitude(q)
        sign_bit = 3 if name == "fp130" else 1
        fields = ((q < 0).astype(np.uint8) << sign_bit) | magnitude
        return [row.tobytes() for row in _fields_to_bytes(fields, bits, enc.unit_bytes)]
    encode_row = _five_level_fields if name == "5level" else _ternary_fields
    return [_fields_to_bytes(encode_row(row)[None, :], bits, enc.unit_bytes).tobytes() for row in q]


def pack(name: str, q: np.ndarray) -> bytes:
    """Pack legal weights ``q[n_filters, filter_len]`` into the encoding's byte stream.

    Raises:
        ValueError: for ``unroll`` (not packed), unknown names, or weights that are not
            legal for the encoding (use :func:`legalize` first; pack never alters weights).
    """
    return b"".join(_filter_bytes(name, q))


def packed_size(name: str, q: np.ndarray) -> int:
    """Size in bytes of ``pack(name, q)``: what the weights cost in flash."""
    return sum(len(chunk) for chunk in _filter_bytes(name, q))


def filter_offsets(name: str, q: np.ndarray) -> list[int]:
    """Byte offset of each filter's start in ``pack(name, q)``, for the C emitter's index table.

    ``5level`` and ``ternary`` filters have data-dependent lengths, so the decoder needs these
    to start a filter without decoding its predecessors.
    """
    offsets: list[int] = []
    position = 0
    for chunk in _filter_bytes(name, q):
        offsets.append(position)
        position += len(chunk)
    return offsets


def _decode_five_level(fields: np.ndarray, start: int, out: np.ndarray) -> int:
    """Decode one 5level filter into ``out`` from field index ``start``; return the next index.

    The decoder stops once ``len(out)`` positions are consumed; an entry whose skip lands
    exactly on the filter end is the trailing-zeros entry and must carry sign=mag=0.
    """
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


def _decode_ternary(fields: np.ndarray, start: int, out: np.ndarray) -> int:
    """Decode one ternary filter into ``out`` from field index ``start``; return the next index."""
    length = out.size
    pos = 0
    prev = 0
    k = start
    while pos < length:
        if k >= fields.size:
            raise ValueError("ternary stream truncated")
        code = int(fields[k])
        k += 1
        if code == _TERNARY_REPEAT:
            if pos + 2 > length:
                raise ValueError("malformed ternary stream: repeat code past the filter end")
            out[pos : pos + 2] = prev
            pos += 2
        else:
            prev = _TERNARY_VALUE[code]
            out[pos] = prev
            pos += 1
    return k


def unpack(name: str, data: bytes, n_filters: int, filter_len: int) -> np.ndarray:
    """Decode ``data`` back into int32 weights ``[n_filters, filter_len]``.

    This is the reference decoder the C decoder must agree with. It is strict: a wrong length,
    non-zero padding or an entry running past a filter end raises ValueError, so an encoder bug
    cannot round-trip by accident.
    """
    enc = get_encoding(name)
    if not enc.packed:
        raise ValueError(f"encoding {name!r} is not packed: its weights are emitted as shift-add code")
    bits = _FIELD_BITS[name]
    raw = np.frombuffer(data, dtype=np.uint8)
    per_unit = 8 // bits * enc.unit_bytes
    if name in ("fp130", "2bit"):
        filter_bytes = -(-filter_len // per_unit) * enc.unit_bytes
        if raw.size != n_filters * filter_bytes:
            raise ValueError(
                f"{name} stream has {raw.size} bytes, expected {n_filters * filter_bytes}"
            )
        fields = _bytes_to_fields(raw.reshape(n_filters, filter_bytes), bits)
        if fields[:, filter_len:].any():
            raise ValueError(f"{name} stream has non-zero padding")
        fields = fields[:, :filter_len].astype(np.int32)
        sign_bit = 3 if name == "fp130" else 1
        magnitude = np.left_shift(1, fields & ((1 << sign_bit) - 1))
        return np.where(fields >> sign_bit, -magnitude, magnitude).astype(np.int32)
    fields = _bytes_to_fields(raw, bits)
    decode = _decode_five_level if name == "5level" else _decode_ternary
    out = np.zeros((n_filters, filter_len), dtype=np.int32)
    k = 0
    for row in out:
        end = decode(fields, k, row)
        k = -(-end // per_unit) * per_unit
        if fields[end:k].any():
            raise ValueError(f"{name} stream has non-zero padding")
    if k != fields.size:
        raise ValueError(f"{name} stream has {raw.size - k // (8 // bits)} trailing bytes")
    return out
