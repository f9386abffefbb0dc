"""The fuzzer's hostile frames: every kind the firmware must survive, from one seeded RNG.

Kinds: truncated, wrong CRC, oversize and "negative" (>= 0x8000) lengths, unknown types, wrong
protocol version, wrong length for the type, random garbage between frames (with planted sync
bytes), LOAD chunks out of order (wrong, repeated or restarting offsets, empty chunks), INFER
before the image is complete, and bursts of many frames at once. The same frames seed the
coverage fuzzer's corpus.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from bench.frames import OFFSET_BYTES, SYNC, VERSION, FrameType, encode_frame, load_payload

#: Hostile-frame kinds, in the order the counts are printed.
KINDS = ("truncated", "bad_crc", "oversize", "negative_length", "unknown_type", "bad_version",
         "bad_length", "garbage", "stray_load", "early_infer", "burst")
#: The kinds ``Generator.make`` builds (a burst is many of them at once).
FRAME_KINDS = tuple(k for k in KINDS if k != "burst")


def upload(image: bytes, sizes: Sequence[int]) -> bytes:
    """The requests that send ``image`` and ask for its answer, as a client would: an empty
    LOAD at offset 0 (the board starts a new image), the image in chunks of ``sizes`` (cycled),
    then INFER."""
    wire = bytearray(encode_frame(FrameType.LOAD_REQ, load_payload(b"", 0)))
    pos = i = 0
    while pos < len(image):
        n = max(1, sizes[i % len(sizes)])
        wire += encode_frame(FrameType.LOAD_REQ, load_payload(image[pos:pos + n], pos))
        pos, i = pos + n, i + 1
    return bytes(wire + encode_frame(FrameType.INFER_REQ))


class Generator:
    """Hostile frames of every kind, from one seeded RNG (a seed reproduces a whole run).

    ``capacity`` is the firmware's rx capacity (input size + 2), ``images`` the inputs whose
    chunks stray LOADs carry now and then.
    """

    UNKNOWN_TYPES = (0x00, 0x04, 0x42, 0x7F, 0x80, 0x81, 0x82, 0x83, 0xFE, 0xFF)

    def __init__(self, rng: random.Random, capacity: int, input_size: int, images: Sequence[bytes]):
        self.rng = rng
        self.capacity = capacity
        self.input_size = input_size
        self.images = list(images)

    def _chunk(self) -> bytes:
        """A LOAD payload: a piece of a known image or random bytes, at an offset that may or
        may not continue what the board holds."""
        r = self.rng
        n = r.randrange(0, min(self.input_size, 32) + 1)
        offset = r.choice((0, 0, r.randrange(0, self.input_size), r.randrange(0, 0x10000)))
        if self.images and r.random() < 0.5:
            start = min(offset, self.input_size - n)
            return load_payload(r.choice(self.images)[start:start + n], offset)
        return load_payload(r.randbytes(n), offset)

    def _any_request(self) -> bytes:
        r = self.rng
        choice = r.randrange(3)
        if choice == 0:
            return encode_frame(FrameType.INFO_REQ, b"")
        if choice == 1:
            return encode_frame(FrameType.INFER_REQ, b"")
        return encode_frame(FrameType.LOAD_REQ, self._chunk())

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
            return SYNC + bytes([VERSION, r.choice((1, 2, 3, 0x42))]) + n.to_bytes(2, "little") + tail
        if kind == "negative_length":
            n = r.choice((0xFFFF, 0x8000, 0xFFFE, r.randrange(0x8000, 0x10000)))
            tail = r.randbytes(r.randrange(0, 16))
            return SYNC + bytes([VERSION, r.choice((1, 2, 3))]) + n.to_bytes(2, "little") + tail
        if kind == "unknown_type":
            n = r.randrange(0, min(self.capacity, 64) + 1)
            return encode_frame(r.choice(self.UNKNOWN_TYPES), r.randbytes(n))
        if kind == "bad_version":
            version = r.choice((0, 1, 3, 0x7F, 0xFF))
            frame_type = r.choice((FrameType.INFO_REQ, FrameType.INFER_REQ, FrameType.LOAD_REQ, 0x42))
            return encode_frame(frame_type, self._chunk() if frame_type == FrameType.LOAD_REQ else b"", version)
        if kind == "bad_length":
            which = r.randrange(3)
            if which == 0:
                return encode_frame(FrameType.INFO_REQ, r.randbytes(r.randrange(1, min(self.capacity, 32) + 1)))
            if which == 1:
                return encode_frame(FrameType.INFER_REQ, r.randbytes(r.randrange(1, min(self.capacity, 32) + 1)))
            return encode_frame(FrameType.LOAD_REQ, r.randbytes(r.randrange(0, OFFSET_BYTES)))
        if kind == "garbage":
            n = r.randrange(1, 96)
            data = bytearray(r.randbytes(n))
            for _ in range(r.randrange(0, 3)):       # plant sync bytes: lone A5, A5 A5 5A, A5 5A
                pos = r.randrange(0, len(data))
                data[pos:pos] = r.choice((b"\xa5", b"\xa5\xa5\x5a", b"\xa5\x5a", b"\x5a"))
            return bytes(data)
        if kind == "stray_load":
            return encode_frame(FrameType.LOAD_REQ, self._chunk())
        if kind == "early_infer":
            return encode_frame(FrameType.INFER_REQ, b"")
        raise ValueError(f"unknown hostile-frame kind {kind!r}")


def write_seed_corpus(directory: Path, seed: int = 1, count: int = 64, input_size: int = 256) -> Path:
    """Seed inputs for the coverage fuzzer: the frames of every kind, as the emulator campaign makes
    them, each file starting with a 0 (fuzz_protocol.c's first input byte: no silences)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    images = [rng.randbytes(input_size) for _ in range(4)]
    gen = Generator(rng, input_size + OFFSET_BYTES, input_size, images)
    kinds = FRAME_KINDS
    for i in range(count):
        data = gen.make(kinds[i % len(kinds)])
        data += encode_frame(FrameType.INFO_REQ, b"") if i % 2 else upload(images[i % 4], (64, 7, input_size))
        (directory / f"seed-{i:03d}").write_bytes(b"\0" + data)
    return directory
