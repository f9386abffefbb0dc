"""Host side of the bench wire protocol (specified in firmware/PROTOCOL.md).

What is here: frame encoding, a byte-at-a-time decoder that resynchronises on garbage the way
the firmware's parser does, the INFO / INFER payload layouts, and ``BenchClient``, which talks
to a board (or the emulator, or the host build over a pty) through any pyserial-like object
(``write(bytes)``, ``read(n)`` honouring ``timeout``; ``reset_input_buffer()`` if it has one).

Why the client owns its deadlines: a board that stopped answering must become one clear
exception ("board stopped answering"), not a hang, whatever timeout the port was opened with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

SYNC = b"\xA5\x5A"
VERSION = 1
MAX_PAYLOAD = 8192
HEADER_BYTES = 4              # VER, TYPE, LEN lo, LEN hi
OVERHEAD = len(SYNC) + HEADER_BYTES + 2
QUIET_S = 0.1                 # longer than the firmware's inter-byte timeout (20-50 ms)
INFO_FIXED_BYTES = 27         # INFO_RESP payload before the board name


class FrameType(IntEnum):
    INFO_REQ = 0x01
    INFER_REQ = 0x02
    INFO_RESP = 0x81
    INFER_RESP = 0x82
    NAK = 0xFF


class NakReason(IntEnum):
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    BAD_VERSION = 4


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
        try:
            name = NakReason(reason).name.lower().replace("_", " ")
        except ValueError:
            name = f"reason {reason}"
        hint = ""
        if reason == NakReason.BAD_LENGTH:
            hint = f" (the board accepts {detail} payload bytes)"
        elif reason == NakReason.BAD_VERSION:
            hint = f" (the board speaks protocol version {detail})"
        super().__init__(f"board refused request type {request_type:#04x}: {name}{hint}")


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final xor."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes
    version: int = VERSION


@dataclass(frozen=True)
class BadFrame:
    """What the decoder saw instead of a good frame (the firmware NAKs the same cases)."""

    reason: NakReason          # BAD_CRC or BAD_LENGTH
    type: int
    length: int


def encode_frame(frame_type: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """``A5 5A | VER | TYPE | LEN (LE) | PAYLOAD | CRC (MSB first)``."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    body = bytes([version & 0xFF, frame_type & 0xFF]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return SYNC + body + crc16(body).to_bytes(2, "big")


class FrameDecoder:
    """Byte-at-a-time frame parser: the same state machine as firmware/protocol.c."""

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
            event = self._feed_byte(byte)
            if event is not None:
                out.append(event)
        return out

    def _feed_byte(self, byte: int) -> Frame | BadFrame | None:
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
                return BadFrame(NakReason.BAD_LENGTH, body[1], self._length)
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
    rx_capacity: int           # longest request payload the firmware accepts
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
    cls: int
    logits: list[int]
    cycles: int

    @classmethod
    def decode(cls, payload: bytes) -> "InferResult":
        if len(payload) < 8:
            raise ProtocolError(f"INFER answer of {len(payload)} bytes, expected at least 8")
        k = int.from_bytes(payload[2:4], "little")
        if len(payload) != 8 + 4 * k:
            raise ProtocolError(f"INFER answer of {len(payload)} bytes for {k} logits")
        logits = [int.from_bytes(payload[8 + 4 * i: 12 + 4 * i], "little", signed=True) for i in range(k)]
        return cls(cls=int.from_bytes(payload[0:2], "little"), logits=logits,
                   cycles=int.from_bytes(payload[4:8], "little"))


def decode_nak(payload: bytes) -> NakError:
    if len(payload) < 4:
        raise ProtocolError(f"NAK of {len(payload)} bytes, expected 4")
    return NakError(payload[0], payload[1], int.from_bytes(payload[2:4], "little"))


class SerialLike(Protocol):
    timeout: float | None

    def write(self, data: bytes) -> Any: ...

    def read(self, size: int = 1) -> bytes: ...


class BenchClient:
    """Request/response client for one board.

    ``timeout``: seconds to wait for an INFO answer; ``infer_timeout``: for an INFER answer
    (inference itself can take a while in an emulator).  A request whose answer is lost or
    corrupted, or that the board NAKs as corrupted (bad CRC), is retried ``retries`` times after
    a quiet gap; any other NAK raises ``NakError`` at once.  Reads use short slices (the port's
    timeout is lowered to 0.05 s if it is longer or None).
    """

    def __init__(self, port: SerialLike, *, timeout: float = 2.0, infer_timeout: float = 30.0,
                 retries: int = 2):
        self.port = port
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self.retries = retries
        self.decoder = FrameDecoder()
        current = getattr(port, "timeout", None)
        if current is None or current > 0.05:
            try:
                port.timeout = 0.05
            except AttributeError:
                pass

    def info(self) -> InfoResult:
        frame = self.request(FrameType.INFO_REQ, b"", FrameType.INFO_RESP, self.timeout)
        return InfoResult.decode(frame.payload)

    def infer(self, image: bytes) -> InferResult:
        frame = self.request(FrameType.INFER_REQ, bytes(image), FrameType.INFER_RESP, self.infer_timeout)
        return InferResult.decode(frame.payload)

    def request(self, request_type: int, payload: bytes, response_type: int, timeout: float) -> Frame:
        """Send one request and return its response frame (retrying transient failures)."""
        wire = encode_frame(request_type, payload)
        problem = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                self._quiet()
            self.port.write(wire)
            frame, problem = self._await(response_type, timeout)
            if frame is not None:
                return frame
        raise BenchTimeout(f"board stopped answering ({problem} to request {request_type:#04x}, "
                           f"{self.retries + 1} attempts, {timeout:g} s each)")

    def _await(self, response_type: int, timeout: float) -> tuple[Frame | None, str]:
        deadline = time.monotonic() + timeout
        self.decoder.reset()
        while time.monotonic() < deadline:
            chunk = self.port.read(max(1, int(getattr(self.port, "in_waiting", 0) or 0)))
            for event in self.decoder.feed(chunk):
                if isinstance(event, BadFrame):
                    return None, f"corrupted answer ({event.reason.name.lower()})"
                if event.type == FrameType.NAK:
                    nak = decode_nak(event.payload)
                    if nak.reason == NakReason.BAD_CRC:
                        return None, "board saw a corrupted request"
                    raise nak
                if event.type == response_type:
                    if event.version != VERSION:
                        raise ProtocolError(f"board answered with protocol version {event.version}, "
                                            f"this bench speaks {VERSION}")
                    return event, ""
                # anything else is a stale answer to an earlier request: skip it
        return None, "no answer"

    def _quiet(self) -> None:
        """Let the firmware drop any partial frame, then discard what is in flight."""
        time.sleep(QUIET_S)
        reset = getattr(self.port, "reset_input_buffer", None)
        if callable(reset):
            reset()
        else:
            while self.port.read(4096):
                pass
        self.decoder.reset()
