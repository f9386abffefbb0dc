"""The fuzzer's oracle: what the firmware must answer to every byte it is sent.

``FirmwareModel`` mirrors the request side of the firmware: the frame parser (firmware/
protocol.c, run here as the host's own ``FrameDecoder`` with the firmware's room) and the
request handling of firmware/app.c (PROTOCOL.md is the contract both follow): the image the
LOAD chunks build, the room that shrinks as it grows, INFER's inference or repeated answer.
Fed the same bytes as the firmware, it predicts each answer exactly: which NAK with which type
and detail, how much of the image each LOAD answer says is held, the ``rx_dropped`` and
``naks_sent`` counters INFO must report, and the logits and image CRC of an INFER answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from bench.frames import OFFSET_BYTES, VERSION, BadFrame, Frame, FrameDecoder, FrameType, NakReason, crc16

#: The firmware's counters saturate at this value.
COUNTER_MAX = 0xFFFF


@dataclass(frozen=True)
class Expect:
    """One answer the firmware must send.

    ``kind`` "nak": ``payload`` is the exact 4-byte NAK payload. "info": ``dropped``/``naks``
    are the counters INFO must report. "load": ``held`` is the image bytes the board says it
    holds, ``end`` the offset + n of the LOAD it answers. "infer": ``image_crc`` is the CRC-16 of
    the image the answer is for, and ``logits`` its reference (None when the image is not one the
    fuzzer knows); ``repeat`` says the board must repeat its previous INFER answer byte for byte
    (no inference since), ``fresh`` that it has run no inference since reset (an answer of zeros).
    """

    kind: str
    payload: bytes = b""
    dropped: int = 0
    naks: int = 0
    held: int = 0
    end: int = 0
    logits: tuple[int, ...] | None = None
    image_crc: int = 0
    repeat: bool = False
    fresh: bool = False

    def describe(self) -> str:
        if self.kind == "nak":
            try:
                reason = NakReason(self.payload[0]).name
            except ValueError:
                reason = str(self.payload[0])
            return (f"NAK {reason} type {self.payload[1]:#04x} detail "
                    f"{int.from_bytes(self.payload[2:4], 'little')}")
        if self.kind == "info":
            return f"INFO answer (rx_dropped {self.dropped}, naks_sent {self.naks})"
        if self.kind == "load":
            return f"LOAD answer (holds {self.held} bytes, for the chunk ending at {self.end})"
        what = "the previous INFER answer again" if self.repeat else "INFER answer"
        return what + (" with the reference logits" if self.logits is not None and not self.repeat else "") + \
            f" (image CRC {self.image_crc:#06x})"


class FirmwareModel:
    """Mirror of ``proto_rx_feed`` (protocol.c) and ``handle_frame``/``bench_run`` (app.c).

    ``capacity`` is the firmware's rx capacity (INFO's ``rx_capacity``: input size + 2),
    ``references`` maps image bytes to their reference logits. ``dropped``/``naks`` start at
    the values the firmware reports in its first INFO answer; the image state starts as after
    a reset (nothing held, no inference run), which holds when the model is made at the
    firmware's first request.
    """

    def __init__(self, capacity: int, input_size: int, references: dict[bytes, Sequence[int]] | None = None,
                 dropped: int = 0, naks: int = 0):
        self.capacity = capacity
        self.input_size = input_size
        self.references = references or {}
        self.parser = FrameDecoder(max_payload=capacity)
        self._dropped_at_start = dropped
        self.naks = naks
        self.image = bytearray(input_size)
        self.loaded = 0                   # image bytes held, from offset 0
        self.inferred = False             # an inference has run since reset
        self._last_crc = 0                # CRC-16 of the image of the last inference

    @property
    def dropped(self) -> int:
        """``rx_dropped`` as the firmware counts it: garbage bytes since reset, saturating."""
        return min(COUNTER_MAX, self._dropped_at_start + self.parser.dropped)

    @property
    def room(self) -> int:
        """The longest payload the firmware accepts now: the buffer behind the bytes it holds."""
        return self.capacity - self.loaded

    @property
    def busy(self) -> bool:
        """A frame is half received."""
        return self.parser.busy

    def reset(self) -> None:
        """The firmware's inter-byte timeout: drop a partial frame."""
        self.parser.reset()

    def feed(self, data: bytes) -> list[Expect]:
        """The answers ``data`` causes, in order (byte by byte: an answer reports the counters
        as they stand when its frame ends)."""
        out: list[Expect] = []
        for byte in data:
            event = self.parser.feed_byte(byte)
            if event is not None:
                out.append(self._answer(event))
                self.parser.max_payload = self.room
        return out

    def complete(self) -> tuple[bytes, list[Expect]]:
        """Zero bytes that finish a partial frame (at most capacity + 6), and what they cause."""
        filler = bytearray()
        out: list[Expect] = []
        while self.busy:
            filler.append(0)
            out += self.feed(b"\0")
        return bytes(filler), out

    def _nak(self, reason: int, ftype: int, detail: int) -> Expect:
        self.naks = min(COUNTER_MAX, self.naks + 1)
        return Expect("nak", bytes([reason, ftype]) + detail.to_bytes(2, "little"))

    def _answer(self, event: Frame | BadFrame) -> Expect:
        """``proto_rx_feed``'s verdict on a frame, then ``handle_frame`` in app.c."""
        if isinstance(event, BadFrame):
            if event.reason == NakReason.TOO_LONG:         # longer than the room behind the image
                return self._nak(NakReason.TOO_LONG, event.type, self.room)
            return self._nak(NakReason.BAD_CRC, event.type, 0)
        if event.version != VERSION:
            return self._nak(NakReason.BAD_VERSION, event.type, VERSION)
        if event.type == FrameType.LOAD_REQ:
            if len(event.payload) < OFFSET_BYTES:
                return self._nak(NakReason.BAD_LENGTH, event.type, OFFSET_BYTES)
            return self._load(event.payload)
        if event.type not in (FrameType.INFO_REQ, FrameType.INFER_REQ):
            return self._nak(NakReason.UNKNOWN_TYPE, event.type, 0)
        if event.payload:
            return self._nak(NakReason.BAD_LENGTH, event.type, 0)
        if event.type == FrameType.INFO_REQ:
            return Expect("info", dropped=self.dropped, naks=self.naks)
        return self._infer()

    def _load(self, payload: bytes) -> Expect:
        n = len(payload) - OFFSET_BYTES
        offset = int.from_bytes(payload[n:], "little")
        if offset == self.loaded:
            self.image[self.loaded:self.loaded + n] = payload[:n]
            self.loaded += n
        elif offset == 0:
            self.loaded = 0                                # a new image begins
        return Expect("load", held=self.loaded, end=(offset + n) & 0xFFFF)

    def _infer(self) -> Expect:
        if self.loaded != self.input_size:                 # no new image: the last answer again
            return Expect("infer", image_crc=self._last_crc, repeat=self.inferred, fresh=not self.inferred)
        image = bytes(self.image)
        self.loaded, self.inferred, self._last_crc = 0, True, crc16(image)
        ref = self.references.get(image)
        return Expect("infer", logits=None if ref is None else tuple(int(v) for v in ref), image_crc=self._last_crc)
