"""The fuzzer's malformed frames: every kind the firmware must survive, from one seeded RNG.

Kinds: truncated, wrong CRC, oversize and "negative" (>= 0x8000) lengths, unknown types, wrong
protocol version, wrong length for the type, random garbage between frames (with planted sync
bytes), and bursts of many frames at once. The same frames seed the coverage fuzzer's corpus.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from bench.protocol import SYNC, VERSION, FrameType, encode_frame

#: Malformed-frame kinds, in the order the counts are printed.
KINDS = ("truncated", "bad_crc", "oversize", "negative_length", "unknown_type", "bad_version",
         "bad_length", "garbage", "burst")
#: The kinds ``Generator.make`` builds (a burst is many of them at once).
FRAME_KINDS = tuple(k for k in KINDS if k != "burst")


class Generator:
    """Malformed frames of every kind, from one seeded RNG (a seed reproduces a whole run)."""

    UNKNOWN_TYPES = (0x00, 0x03, 0x42, 0x7F, 0x80, 0x81, 0x82, 0xFE, 0xFF)

    def __init__(self, rng: random.Random, capacity: int, input_size: int, images: Sequence[bytes]):
        self.rng = rng
        self.capacity = capacity
        self.input_size = input_size
        self.images = list(images)

    def _payload(self, n: int) -> bytes:
        r = self.rng
        if self.images and n == self.input_size and r.random() < 0.5:
            return r.choice(self.images)
        return r.randbytes(n)

    def _any_request(self) -> bytes:
        r = self.rng
        if r.random() < 0.5:
            return encode_frame(FrameType.INFO_REQ, b"")
        return encode_frame(FrameType.INFER_REQ, self._payload(self.input_size))

    def make(self, kind: str) -> bytes:
        r = self.rng
        if kind == "truncated":
            wire = self._any_request()
            return wire[: r.randrange(1, len(wire))]
        if kind == "bad_crc":
            wire = bytearray(self._any_request())
            pos = r.randrange(2, len(wire))          # VER .. CRC: anything the CRC covers or is
            wire[pos] ^= r.randrange(1, 256)        # a corrupted LEN also moves the frame's end
            return bytes(wire)
        if kind == "oversize":
            n = r.randrange(self.capacity + 1, 0x8000)
            tail = r.randbytes(r.randrange(0, 16))
            return SYNC + bytes([VERSION, r.choice((1, 2, 0x42))]) + n.to_bytes(2, "little") + tail
        if kind == "negative_length":
            n = r.choice((0xFFFF, 0x8000, 0xFFFE, r.randrange(0x8000, 0x10000)))
            tail = r.randbytes(r.randrange(0, 16))
            return SYNC + bytes([VERSION, r.choice((1, 2))]) + n.to_bytes(2, "little") + tail
        if kind == "unknown_type":
            n = r.randrange(0, min(self.capacity, 64) + 1)
            return encode_frame(r.choice(self.UNKNOWN_TYPES), r.randbytes(n))
        if kind == "bad_version":
            version = r.choice((0, 2, 3, 0x7F, 0xFF))
            return encode_frame(r.choice((FrameType.INFO_REQ, FrameType.INFER_REQ, 0x42)),
                          self._payload(r.choice((0, self.input_size))), version)
        if kind == "bad_length":
            if r.random() < 0.5:
                return encode_frame(FrameType.INFO_REQ, r.randbytes(r.randrange(1, min(self.capacity, 32) + 1)))
            n = r.choice([k for k in (0, 1, self.input_size - 1, r.randrange(0, self.capacity + 1))
                          if k != self.input_size and 0 <= k <= self.capacity] or [0])
            return encode_frame(FrameType.INFER_REQ, r.randbytes(n))
        if kind == "garbage":
            n = r.randrange(1, 96)
            data = bytearray(r.randbytes(n))
            for _ in range(r.randrange(0, 3)):       # plant sync bytes: lone A5, A5 A5 5A, A5 5A
                pos = r.randrange(0, len(data))
                data[pos:pos] = r.choice((b"\xa5", b"\xa5\xa5\x5a", b"\xa5\x5a", b"\x5a"))
            return bytes(data)
        raise ValueError(f"unknown malformed-frame kind {kind!r}")


def write_seed_corpus(directory: Path, seed: int = 1, count: int = 64, input_size: int = 256) -> Path:
    """Seed inputs for the coverage fuzzer: the frames of every kind, as the emulator campaign makes them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    images = [rng.randbytes(input_size) for _ in range(4)]
    gen = Generator(rng, input_size, input_size, images)
    kinds = FRAME_KINDS
    for i in range(count):
        data = gen.make(kinds[i % len(kinds)])
        data += encode_frame(FrameType.INFO_REQ, b"") if i % 2 else encode_frame(FrameType.INFER_REQ, images[i % 4])
        (directory / f"seed-{i:03d}").write_bytes(data)
    return directory
