"""The bench wire protocol's frames and payloads (specified in firmware/PROTOCOL.md), no I/O.

What is here: the frame types and NAK reasons, frame encoding, the one byte-at-a-time decoder
of the host side (the same state machine as firmware/protocol.c, so the fuzzer's oracle can run
it to predict the firmware), and the INFO / LOAD / INFER / NAK payload layouts. The client that
talks to a board with them is ``bench.protocol.BenchClient``.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from enum import IntEnum

SYNC = b"\xA5\x5A"
VERSION = 2
MAX_PAYLOAD = 8192
HEADER_BYTES = 4              # VER, TYPE, LEN lo, LEN hi
OVERHEAD = len(SYNC) + HEADER_BYTES + 2
INFO_FIXED_BYTES = 27         # INFO_RESP payload before the board name
OFFSET_BYTES = 2              # a LOAD chunk's offset, after its data
LOAD_RESP_BYTES = 4           # a LOAD answer: held, then the end of the chunk it answers


class FrameType(IntEnum):
    INFO_REQ = 0x01
    INFER_REQ = 0x02
    LOAD_REQ = 0x03
    INFO_RESP = 0x81
    INFER_RESP = 0x82
    LOAD_RESP = 0x83
    NAK = 0xFF


class NakReason(IntEnum):
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    BAD_VERSION = 4
    TOO_LONG = 5


def unverified(reason: int) -> bool:
    """True for the NAKs of a frame whose CRC the board never found good (bad CRC, or a length
    above its room refused at the header): the link may have caused them. The other reasons
    refuse a frame that arrived intact."""
    return reason in (NakReason.BAD_CRC, NakReason.TOO_LONG)


class ProtocolError(Exception):
    """The board answered something that breaks the protocol; one-line message."""


class BenchTimeout(ProtocolError):
    """No (valid) answer within the deadline, even after retries."""


class NakError(ProtocolError):
    """The board refused the request."""

    def __init__(self, reason: int, request_type: int, detail: int):
        self.reason = reason
        self.request_type = request_type
        self.detail = detail
        self.payload = bytes([reason & 0xFF, request_type & 0xFF]) + (detail & 0xFFFF).to_bytes(2, "little")
        try:
            name = NakReason(reason).name.lower().replace("_", " ")
        except ValueError:
            name = f"reason {reason}"
        hint = ""
        if reason == NakReason.BAD_LENGTH:
            least = "at least " if request_type == FrameType.LOAD_REQ else ""
            hint = f" (this type takes {least}{detail} payload bytes)"
        elif reason == NakReason.TOO_LONG:
            hint = f" (the board has room for {detail} payload bytes)"
        elif reason == NakReason.BAD_VERSION:
            hint = (f" (the board speaks protocol version {detail}, this bench {VERSION}: "
                    "flash the board with this bench's firmware)")
        super().__init__(f"board refused request type {request_type:#04x}: {name}{hint}")


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection, no final xor):
    the standard library's CRC-CCITT (XModem) started at 0xFFFF instead of 0."""
    return binascii.crc_hqx(data, crc)


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes
    version: int = VERSION


@dataclass(frozen=True)
class BadFrame:
    """What the decoder saw instead of a good frame (the firmware NAKs the same cases)."""

    reason: NakReason          # BAD_CRC or TOO_LONG
    type: int
    length: int


def encode_frame(frame_type: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """``A5 5A | VER | TYPE | LEN (LE) | PAYLOAD | CRC (MSB first)``."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    body = bytes([version & 0xFF, frame_type & 0xFF]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return SYNC + body + crc16(body).to_bytes(2, "big")


def load_payload(data: bytes, offset: int) -> bytes:
    """A LOAD chunk: the image bytes from ``offset``, then the offset (u16 LE). The offset goes
    last so that the firmware can store the frame right behind the bytes it holds."""
    return bytes(data) + offset.to_bytes(OFFSET_BYTES, "little")


class FrameDecoder:
    """Byte-at-a-time frame parser: the same state machine as firmware/protocol.c.

    The one decoder of the host side: ``BenchClient`` reads answers with it, and the fuzzer's
    firmware model (``bench.fuzz.oracle``) runs it with the firmware's room to predict what
    the firmware makes of every byte. ``dropped`` counts the bytes skipped while hunting for a
    frame, as the firmware's ``rx_dropped`` does. ``max_payload`` may change between frames
    (the firmware's room shrinks as it holds more of an image).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_payload = max_payload
        self.dropped = 0           # non-sync bytes seen between frames
        self.reset()

    def reset(self) -> None:
        """Forget a partial frame (what the firmware does after an inter-byte timeout)."""
        self._state = 0            # 0 hunt, 1 got SYNC0, 2 in frame
        self._body = bytearray()
        self._length = 0

    @property
    def busy(self) -> bool:
        return self._state != 0

    def feed(self, data: bytes) -> list[Frame | BadFrame]:
        out: list[Frame | BadFrame] = []
        for byte in data:
            event = self.feed_byte(byte)
            if event is not None:
                out.append(event)
        return out

    def feed_byte(self, byte: int) -> Frame | BadFrame | None:
        """One byte in; the frame (or what was wrong with it) that this byte ends, if any."""
        if self._state == 0:
            if byte == SYNC[0]:
                self._state = 1
            else:
                self.dropped += 1
            return None
        if self._state == 1:
            if byte == SYNC[1]:
                self._state, self._body = 2, bytearray()
            elif byte != SYNC[0]:                 # A5 A5 5A still syncs
                self._state = 0
            return None
        body = self._body
        body.append(byte)
        n = len(body)
        if n == HEADER_BYTES:
            self._length = body[2] | body[3] << 8
            if self._length > self.max_payload:
                self._state = 0
                return BadFrame(NakReason.TOO_LONG, body[1], self._length)
        if n < HEADER_BYTES + self._length + 2:
            return None
        self._state = 0
        if crc16(bytes(body)) != 0:
            return BadFrame(NakReason.BAD_CRC, body[1], self._length)
        return Frame(body[1], bytes(body[HEADER_BYTES:HEADER_BYTES + self._length]), body[0])


@dataclass(frozen=True)
class InfoResult:
    firmware_version: str      # "major.minor"
    model_hash: int            # bench.build.model_hash() of the header it was built with
    input_size: int
    num_classes: int
    clock_hz: int
    stack_reserved: int        # bytes the board file reserves for the stack
    rx_capacity: int           # longest request payload the firmware accepts (input_size + 2)
    counter_bits: int          # cycle counts wrap at 2**counter_bits
    flags: int
    stack_high_water: int      # deepest stack use since reset, bytes (0: not measured)
    rx_dropped: int            # garbage bytes skipped since reset (saturates at 65535)
    naks_sent: int             # NAKs sent since reset (saturates at 65535)
    board: str

    @property
    def model_hash_hex(self) -> str:
        return f"{self.model_hash:08x}"

    @classmethod
    def decode(cls, payload: bytes) -> "InfoResult":
        if len(payload) < INFO_FIXED_BYTES:
            raise ProtocolError(f"INFO answer of {len(payload)} bytes, expected at least {INFO_FIXED_BYTES}")
        u16 = lambda off: int.from_bytes(payload[off:off + 2], "little")  # noqa: E731
        u32 = lambda off: int.from_bytes(payload[off:off + 4], "little")  # noqa: E731
        name_len = payload[26]
        name = payload[27:27 + name_len]
        if len(name) != name_len:
            raise ProtocolError("INFO answer truncated inside the board name")
        fw = u16(0)
        return cls(firmware_version=f"{fw >> 8}.{fw & 0xFF}", model_hash=u32(2), input_size=u16(6),
                   num_classes=u16(8), clock_hz=u32(10), stack_reserved=u16(14), rx_capacity=u16(16),
                   counter_bits=payload[18], flags=payload[19], stack_high_water=u16(20),
                   rx_dropped=u16(22), naks_sent=u16(24), board=name.decode("ascii", errors="replace"))


@dataclass(frozen=True)
class InferResult:
    """An INFER answer: class, logits, cycles, and the CRC-16 of the image it was computed from
    (how the host knows the answer belongs to the image it sent)."""

    cls: int
    logits: list[int]
    cycles: int
    image_crc: int

    @classmethod
    def decode(cls, payload: bytes) -> "InferResult":
        if len(payload) < 10:
            raise ProtocolError(f"INFER answer of {len(payload)} bytes, expected at least 10")
        k = int.from_bytes(payload[2:4], "little")
        if len(payload) != 10 + 4 * k:
            raise ProtocolError(f"INFER answer of {len(payload)} bytes for {k} logits")
        logits = [int.from_bytes(payload[8 + 4 * i: 12 + 4 * i], "little", signed=True) for i in range(k)]
        return cls(cls=int.from_bytes(payload[0:2], "little"), logits=logits,
                   cycles=int.from_bytes(payload[4:8], "little"), image_crc=int.from_bytes(payload[-2:], "little"))

    def encode(self) -> bytes:
        """The payload the firmware sends for this answer (tests and the fuzzer's oracle build answers with it)."""
        return (self.cls.to_bytes(2, "little") + len(self.logits).to_bytes(2, "little")
                + (self.cycles & 0xFFFFFFFF).to_bytes(4, "little")
                + b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") for v in self.logits)
                + self.image_crc.to_bytes(2, "little"))


@dataclass(frozen=True)
class LoadResult:
    """A LOAD answer: ``held``, the image bytes the board holds from offset 0, and ``end``, the
    offset + n of the LOAD it answers (mod 2^16), which tells a late answer to another LOAD apart."""

    held: int
    end: int

    @classmethod
    def decode(cls, payload: bytes) -> "LoadResult":
        if len(payload) != LOAD_RESP_BYTES:
            raise ProtocolError(f"LOAD answer of {len(payload)} bytes, expected {LOAD_RESP_BYTES}")
        return cls(int.from_bytes(payload[:2], "little"), int.from_bytes(payload[2:], "little"))

    def encode(self) -> bytes:
        return self.held.to_bytes(2, "little") + (self.end & 0xFFFF).to_bytes(2, "little")


def decode_nak(payload: bytes) -> NakError:
    if len(payload) < 4:
        raise ProtocolError(f"NAK of {len(payload)} bytes, expected 4")
    return NakError(payload[0], payload[1], int.from_bytes(payload[2:4], "little"))
