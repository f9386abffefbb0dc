"""Tests for potnn.encoding: level sets, legalisation, the packed bit layouts and the C kernel templates."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import potnn.codegen.kernels
import potnn.encoding
from potnn.quantizer import legalize as legalize_torch
from potnn.encoding import (
    ENCODINGS,
    filter_offsets,
    get_encoding,
    legalize,
    pack,
    packed_size,
    unpack,
)

PACKED = ("fp130", "5level", "2bit", "ternary", "indexed")


def _random_legal(name: str, rng: np.random.Generator, n_filters: int, length: int) -> np.ndarray:
    """Random weights over the full level set (zeros included), made legal by legalize."""
    levels = np.array(get_encoding(name).levels + (0,))
    return legalize(name, rng.choice(levels, size=(n_filters, length)))


def _legalize_5level_by_loop(q: np.ndarray) -> np.ndarray:
    """Independent, obviously-correct reading of the 5level rule, to check the vectorised one."""
    out = q.copy()
    for row in out:
        run = 0
        for i, value in enumerate(row):
            run = run + 1 if value == 0 else 0
            if run and run % 4 == 0:
                row[i] = 1
    return out


def test_table() -> None:
    assert ENCODINGS == ("unroll", "fp130", "5level", "2bit", "ternary", "indexed")
    expected = {
        "unroll": (tuple(sorted([0] + [s * (1 << e) for e in range(8) for s in (1, -1)])), True, 7, False),
        "fp130": (tuple(sorted(s * (1 << e) for e in range(8) for s in (1, -1))), False, 7, True),
        "5level": ((-8, -1, 0, 1, 8), True, 3, True),
        "2bit": ((-2, -1, 1, 2), False, 1, True),
        "ternary": ((-1, 0, 1), True, 0, True),
        "indexed": (tuple(sorted([0] + [s * (1 << e) for e in range(8) for s in (1, -1)])), True, 7, True),
    }
    for name, (levels, has_zero, max_shift, packed) in expected.items():
        enc = get_encoding(name)
        assert (enc.name, enc.levels, enc.has_zero, enc.max_shift, enc.packed) == (
            name, levels, has_zero, max_shift, packed,
        )
    assert [get_encoding(n).unit_bytes for n in PACKED] == [1, 1, 4, 1, 1]


def test_unknown_encoding_lists_names() -> None:
    with pytest.raises(ValueError) as err:
        get_encoding("4bit")
    for name in ENCODINGS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", PACKED)
def test_round_trip_random(name: str) -> None:
    rng = np.random.default_rng(1234)
    for length in range(1, 41):
        q = _random_legal(name, rng, 3, length)
        data = pack(name, q)
        assert len(data) == packed_size(name, q)
        decoded = unpack(name, data, 3, length)
        assert decoded.dtype == np.int32
        np.testing.assert_array_equal(decoded, q)


@pytest.mark.parametrize("run", range(10))
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_5level_zero_runs(run: int, where: str) -> None:
    rng = np.random.default_rng(run)
    nonzero = lambda k: rng.choice([-8, -1, 1, 8], size=k)  # noqa: E731
    parts = {
        "start": [np.zeros(run, int), nonzero(3)],
        "middle": [nonzero(2), np.zeros(run, int), nonzero(2)],
        "end": [nonzero(3), np.zeros(run, int)],
    }[where]
    q = np.concatenate(parts)[None, :]
    legal = legalize("5level", q)
    changed = np.flatnonzero(legal != q)
    first_zero = {"start": 0, "middle": 2, "end": 3}[where]
    np.testing.assert_array_equal(changed, first_zero + np.arange(3, run, 4))
    assert (legal[0, changed] == 1).all()
    np.testing.assert_array_equal(unpack("5level", pack("5level", legal), 1, q.shape[1]), legal)


@pytest.mark.parametrize("value", [-1, 0, 1])
@pytest.mark.parametrize("run", range(10))
def test_ternary_repeated_runs(value: int, run: int) -> None:
    rng = np.random.default_rng(run)
    others = rng.choice([-1, 0, 1], size=4)
    for q in (np.concatenate([np.full(run, value), others]), np.concatenate([others, np.full(run, value)])):
        if q.size == 0:
            continue
        row = q[None, :]
        np.testing.assert_array_equal(unpack("ternary", pack("ternary", row), 1, q.size), row)


def test_hand_computed_fp130() -> None:
    # 1 = +2^0 -> nibble 0x0 (low), -128 = -2^7 -> 0b1111 (high).
    assert pack("fp130", np.array([[1, -128]])) == b"\xf0"
    # -1 -> 0x8, 2 -> 0x1, 4 -> 0x2, then a zero pad nibble; two filters stay byte aligned.
    assert pack("fp130", np.array([[-1, 2, 4], [64, -4, 1]])) == bytes([0x18, 0x02, 0xA6, 0x00])


def test_hand_computed_indexed() -> None:
    """Header levels << 3 | low, then per exponent (high first) the steps to positive, 0, to negative, 0."""
    q = np.array([[0, 4, -1, 0, 4, 0], [0, 0, 0, 0, 0, 0]])
    assert pack("indexed", q) == bytes([3 << 3 | 0, 2, 3, 0, 0, 0, 0, 0, 3, 0]) + bytes([0])
    np.testing.assert_array_equal(unpack("indexed", pack("indexed", q), 2, 6), q)
    places = np.array([0, 1, 2, 6, 7, 8])  # the row kernel's layout: rows of 6, 3 taps each
    assert pack("indexed", q, places) == bytes([3 << 3, 2, 6, 0, 0, 0, 0, 0, 3, 0, 0])


def test_indexed_bridges_steps_over_255() -> None:
    """A step of more than 255 goes through a place listed as both +w and -w (no effect on the sum)."""
    q = np.zeros((1, 1000), dtype=np.int64)
    q[0, 999] = -4
    data = pack("indexed", q)
    assert data == bytes([1 << 3 | 2, 255, 255, 255, 0, 255, 255, 255, 235, 0])
    np.testing.assert_array_equal(unpack("indexed", data, 1, 1000), q)
    crowded = np.zeros((1, 600), dtype=np.int64)
    crowded[0, 1:256], crowded[0, 300] = -1, 1
    with pytest.raises(ValueError, match="use fp130"):
        pack("indexed", crowded)
    with pytest.raises(ValueError, match="packing order"):
        pack("fp130", np.ones((1, 1000), dtype=np.int64), np.arange(1000))


def test_hand_computed_5level() -> None:
    # entries: (skip 2, +8)=1001, (skip 3, +1)=1100, (skip 1, -1)=0110, trailing (skip 2)=1000.
    q = np.array([[0, 0, 8, 0, 0, 0, 1, 0, -1, 0, 0]])
    assert pack("5level", q) == bytes([0xC9, 0x86])
    # -8 = 0011 then a pad nibble; the next filter starts on a new byte: +1 = 0000, -1 = 0010.
    assert pack("5level", np.array([[-8], [1], [-1]])) == bytes([0x03, 0x00, 0x02])
    assert filter_offsets("5level", np.array([[-8], [1], [-1]])) == [0, 1, 2]
    # an all-zero filter of 3 is the trailing entry alone: skip 3 = 1100.
    assert pack("5level", np.zeros((1, 3), int)) == bytes([0x0C])


def test_hand_computed_2bit() -> None:
    # codes 1=00, -1=10, 2=01, -2=11 -> 0b11_01_10_00 in the low byte of a little-endian uint32.
    assert pack("2bit", np.array([[1, -1, 2, -2]])) == bytes([0xD8, 0, 0, 0])
    # 17 weights: one full word of 11s, then a word holding a single 11.
    assert pack("2bit", np.full((1, 17), -2)) == bytes([0xFF] * 4 + [0x03, 0, 0, 0])


def test_hand_computed_ternary() -> None:
    # 11 (0,0 = start value twice), 01, 11 (1,1), 10, 00 -> 0b10_11_01_11, 0b00.
    assert pack("ternary", np.array([[0, 0, 1, 1, 1, -1, 0]])) == bytes([0xB7, 0x00])
    # 01 then 11 (two more 1s) -> 0b1101.
    assert pack("ternary", np.array([[1, 1, 1]])) == bytes([0x0D])
    # a single trailing value never uses 11: [0] -> 00; [0, 0] -> 11.
    assert pack("ternary", np.array([[0]])) == bytes([0x00])
    assert pack("ternary", np.array([[0, 0]])) == bytes([0x03])


def test_legalize_examples() -> None:
    nine = legalize("5level", np.zeros((1, 9), dtype=np.int8))
    np.testing.assert_array_equal(nine, [[0, 0, 0, 1, 0, 0, 0, 1, 0]])
    # runs do not continue across a filter boundary
    two_filters = np.array([[1, 0, 0], [0, 0, -8]])
    np.testing.assert_array_equal(legalize("5level", two_filters), two_filters)
    np.testing.assert_array_equal(legalize("fp130", np.array([[0, -4, 0]])), [[1, -4, 1]])
    np.testing.assert_array_equal(legalize("2bit", np.array([[0, -2]])), [[1, -2]])
    q = np.array([[0, 0, 0, 0, 1, -1]])
    np.testing.assert_array_equal(legalize("ternary", q), q)
    np.testing.assert_array_equal(legalize("unroll", np.array([[0, -128, 64]])), [[0, -128, 64]])


def test_legalize_matches_loop_and_keeps_input() -> None:
    rng = np.random.default_rng(7)
    q = rng.choice([-8, -1, 0, 0, 0, 0, 1, 8], size=(20, 50))
    before = q.copy()
    legal = legalize("5level", q)
    np.testing.assert_array_equal(q, before)
    np.testing.assert_array_equal(legal, _legalize_5level_by_loop(q))


@pytest.mark.parametrize(
    ("name", "value"), [("fp130", 3), ("fp130", 256), ("5level", 2), ("2bit", 4), ("ternary", 2), ("unroll", 3)]
)
def test_legalize_rejects_non_levels(name: str, value: int) -> None:
    with pytest.raises(ValueError):
        legalize(name, np.array([[1, value]]))


@pytest.mark.parametrize("name", PACKED)
def test_per_filter_alignment(name: str) -> None:
    rng = np.random.default_rng(99)
    length = 21
    q = _random_legal(name, rng, 6, length)
    data = pack(name, q)
    offsets = filter_offsets(name, q)
    assert offsets[0] == 0
    unit = get_encoding(name).unit_bytes
    assert all(offset % unit == 0 for offset in offsets)
    ends = offsets[1:] + [len(data)]
    for k, (start, end) in enumerate(zip(offsets, ends)):
        np.testing.assert_array_equal(unpack(name, data[start:end], 1, length)[0], q[k])


@pytest.mark.parametrize(
    ("name", "q"),
    [
        ("unroll", np.array([[1, 2]])),
        ("fp130", np.array([[0, 1]])),
        ("5level", np.array([[1, 0, 0, 0, 0]])),
        ("5level", np.array([[2]])),
        ("2bit", np.array([[0]])),
        ("2bit", np.array([[4]])),
        ("ternary", np.array([[2]])),
        ("fp130", np.array([[1.0, 2.0]])),
        ("fp130", np.array([1, 2])),
    ],
)
def test_pack_rejects_illegal(name: str, q: np.ndarray) -> None:
    with pytest.raises(ValueError):
        pack(name, q)


@pytest.mark.parametrize("name", PACKED)
def test_unpack_rejects_wrong_length(name: str) -> None:
    q = _random_legal(name, np.random.default_rng(5), 2, 9)
    data = pack(name, q)
    with pytest.raises(ValueError):
        unpack(name, data + b"\x00" * get_encoding(name).unit_bytes, 2, 9)
    with pytest.raises(ValueError):
        unpack(name, data[: -get_encoding(name).unit_bytes], 2, 9)


def test_unpack_rejects_overrunning_entries() -> None:
    # ternary: a repeat code with one position left; 5level: skip 3 past a filter of 2.
    with pytest.raises(ValueError):
        unpack("ternary", bytes([0b1101]), 1, 2)
    with pytest.raises(ValueError):
        unpack("5level", bytes([0x0C]), 1, 2)


@pytest.mark.parametrize("name", ENCODINGS)
def test_torch_legalize_is_the_numpy_rule(name: str) -> None:
    """QAT legalises with the encoding's torch twin; it must move exactly the weights the NumPy rule moves."""
    rng = np.random.default_rng(3)
    enc = get_encoding(name)
    levels = np.array(enc.levels + ((0,) if not enc.has_zero else ()))
    q = rng.choice(levels, size=(7, 40))
    q[:, 5:25] = 0  # long zero runs, so that 5level's rule has work
    legal = legalize(name, q)
    if not enc.has_zero:  # rounding (pot_round) already maps 0 to +1; the twin sees no zeros
        q = np.where(q == 0, 1, q)
    np.testing.assert_array_equal(legalize_torch(torch.from_numpy(q), name).numpy(), legal)


def test_kernel_terms_follow_the_streams() -> None:
    """(count the kernel is called with, terms added as one's complement) per filter."""
    assert get_encoding("ternary").kernel_terms(np.array([-1, -1, -1, 0, 1])) == (4, 2)  # -1, repeat, 0, +1
    assert get_encoding("5level").kernel_terms(np.array([0, -8, 0, 0, 1, 0])) == (2, 1)  # trailing entry not walked
    assert get_encoding("fp130").kernel_terms(np.array([1, -2, -128])) == (3, 2)
    assert get_encoding("2bit").kernel_terms(np.array([2, 1])) == (2, 0)
    assert get_encoding("indexed").kernel_terms(np.array([0, -8, 0, 1])) == (2, 0)


_TEMPLATES = sorted(Path(potnn.encoding.__file__).parent.glob("kernels/*.c")) + \
    sorted(potnn.codegen.kernels.C_DIR.glob("*.c"))


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
@pytest.mark.parametrize("template", _TEMPLATES, ids=lambda p: p.name)
@pytest.mark.parametrize("x", ["uint8_t", "int8_t"])
def test_kernel_template_compiles_on_its_own(template: Path, x: str, tmp_path: Path) -> None:
    """Every static kernel is a real C file: with the header's macros and its tokens defined it compiles
    warning-free (`static` defined away, so that -Wall does not flag the unused function)."""
    prelude = potnn.codegen.kernels.C_DIR / "prelude.h"
    tokens = {"NAME": "potnn_kernel_check", "X": x, "INDEX": "uint16_t", "MAX_EXPONENT": "7", "COUNTS": "16",
              "static": ""}
    result = subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-c", "-include", "stdint.h", "-include",
                             str(prelude), *(f"-D{k}={v}" for k, v in tokens.items()), str(template),
                             "-o", str(tmp_path / "kernel.o")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kernel.o").stat().st_size > 0
