"""The power-of-two weight encodings, one module each, behind a registry.

=========  ==========================  ====================================================
name       levels                      packing
=========  ==========================  ====================================================
unroll     0, ±1, ±2, ±4, ..., ±128    not packed: weights become shift-add code
fp130      ±1, ±2, ..., ±128           nibble ``[sign][exp(3)]``, value ±2^exp
5level     -8, -1, 0, +1, +8           nibble ``[skip(2)][sign][mag]``, zeros run-length coded
2bit       -2, -1, +1, +2              2 bits ``[sign][shift]``, 16 per ``uint32``
ternary    -1, 0, +1                   2-bit codes 00=0, 01=+1, 10=-1, 11=repeat previous x2
indexed    0, ±1, ±2, ±4, ..., ±128    per exponent and sign, the weights' positions (a byte
                                       step each); zeros take no bytes and no time
=========  ==========================  ====================================================

An encoding is one module defining ``ENCODING`` (an :class:`Encoding`) and one entry in
``_MODULES``. The functions below are the specification of how weights are stored in the
generated C; `unpack` is the reference decoder the C decoders must agree with.
"""

from __future__ import annotations

import math

import numpy as np

from . import five_level, fp130, indexed, ternary, two_bit, unroll
from .base import Encoding, as_weights

_MODULES = (unroll, fp130, five_level, two_bit, ternary, indexed)
_REGISTRY: dict[str, Encoding] = {m.ENCODING.name: m.ENCODING for m in _MODULES}
ENCODINGS: tuple[str, ...] = tuple(_REGISTRY)


def get_encoding(name: str) -> Encoding:
    """Return the encoding called ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the valid ones so that a typo in a
            config is fixed at once.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown weight encoding {name!r}; valid encodings: {', '.join(ENCODINGS)}") from None


def legalize(name: str, q: np.ndarray) -> np.ndarray:
    """Return a copy of ``q`` that encoding ``name`` can represent.

    Representable weights are never changed; only values the packing cannot store are moved, so
    that training (QAT applies the encoding's torch twin) sees exactly what the board will run:
    ``fp130`` and ``2bit`` (no zero) map every 0 to +1; ``5level`` turns the 4th, 8th, ... zero of
    each run of zeros in a filter into +1; ``unroll`` and ``ternary`` return ``q`` unchanged.

    Raises:
        ValueError: a value that is not a level (other than the 0 that ``fp130``/``2bit`` map to
            +1), a non-2-D or non-integer array, an unknown name.
    """
    return get_encoding(name).legalize(as_weights(q))


def dense_levels(name: str, shape: tuple[int, ...], rng: np.random.Generator, sparsity: float = 0.0) -> np.ndarray:
    """Integer weights of `shape` at nonzero levels of encoding `name`, drawn by `rng`, except `sparsity` of each
    filter (first axis) at random places; legalized. What a flash figure of untrained weights must bound: no
    two filters alike, since a compiler shares the code of identical filters."""
    levels = np.array([v for v in get_encoding(name).levels if v != 0], dtype=np.int64)
    rows, n = shape[0], math.prod(shape[1:])
    q = rng.choice(levels, size=(rows, n))
    if sparsity:
        np.put_along_axis(q, rng.random((rows, n)).argsort(1)[:, :math.floor(sparsity * n + 1e-9)], 0, axis=1)
    return legalize(name, q).reshape(shape)


def _filter_bytes(name: str, q: np.ndarray, positions: np.ndarray | None = None) -> list[bytes]:
    """The packed bytes of each filter, already padded to the storage unit (ValueError for unroll)."""
    enc = get_encoding(name)
    q = as_weights(q).astype(np.int64)  # int64 so that abs(-128) cannot overflow int8
    enc.check_legal(q)
    if positions is None:
        return enc.filter_bytes(q)
    _check_positions(enc, positions, q.shape[1])
    return enc.filter_bytes(q, positions)  # type: ignore[call-arg]  # only self-delimiting encodings take them


def _check_positions(enc: Encoding, positions: np.ndarray, filter_len: int) -> None:
    if not enc.self_delimiting:
        raise ValueError(f"encoding {enc.name!r} stores weights in packing order; it takes no positions")
    if len(positions) != filter_len or len(set(np.asarray(positions).tolist())) != filter_len or min(positions) < 0:
        raise ValueError(f"positions must be {filter_len} distinct non-negative places, one per weight")


def pack(name: str, q: np.ndarray, positions: np.ndarray | None = None) -> bytes:
    """Pack legal weights ``q[n_filters, filter_len]`` into the encoding's byte stream.

    ``positions`` (self-delimiting encodings only) gives each weight's place in the input the kernel
    reads, where it differs from the weight's index (the row kernel's receptive-field layout).

    Raises:
        ValueError: for ``unroll`` (not packed), unknown names, or weights that are not legal for
            the encoding (use :func:`legalize` first; pack never alters weights).
    """
    return b"".join(_filter_bytes(name, q, positions))


def packed_size(name: str, q: np.ndarray) -> int:
    """Size in bytes of ``pack(name, q)``: what the weights cost in flash."""
    return sum(len(chunk) for chunk in _filter_bytes(name, q))


def filter_offsets(name: str, q: np.ndarray, positions: np.ndarray | None = None) -> list[int]:
    """Byte offset of each filter's start in ``pack(name, q, positions)``: variable-length encodings need
    them to start a filter without decoding its predecessors."""
    offsets: list[int] = []
    position = 0
    for chunk in _filter_bytes(name, q, positions):
        offsets.append(position)
        position += len(chunk)
    return offsets


def unpack(name: str, data: bytes, n_filters: int, filter_len: int, positions: np.ndarray | None = None) -> np.ndarray:
    """Decode ``data`` back into int32 weights ``[n_filters, filter_len]`` (``positions`` as for pack).

    Strict: a wrong length, non-zero padding or an entry running past a filter end raises
    ValueError, so that an encoder bug cannot round-trip by accident.
    """
    enc, raw = get_encoding(name), np.frombuffer(data, dtype=np.uint8)
    if positions is None:
        return enc.unpack(raw, n_filters, filter_len)
    _check_positions(enc, positions, filter_len)
    return enc.unpack(raw, n_filters, filter_len, positions)  # type: ignore[call-arg]


__all__ = ["ENCODINGS", "Encoding", "dense_levels", "filter_offsets", "get_encoding", "legalize", "pack", "packed_size", "unpack"]
