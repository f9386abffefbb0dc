"""The fuzzer's oracle: what the firmware must answer to every byte it is sent.

``FirmwareModel`` mirrors the request side of the firmware: the frame parser (firmware/
protocol.c, run here as the host's own ``FrameDecoder`` with the firmware's rx capacity) and the
request dispatch of firmware/app.c (PROTOCOL.md is the contract both follow). Fed the same bytes
as the firmware, it predicts each answer exactly: which NAK with which type and detail, the
``rx_dropped`` and ``naks_sent`` counters INFO must report, and the reference logits of an INFER.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from bench.protocol import VERSION, BadFrame, Frame, FrameDecoder, FrameType, NakReason

#: The firmware's counters saturate at this value.
COUNTER_MAX = 0xFFFF


@dataclass(frozen=True)
class Expect:
    """One answer the firmware must send.

    ``kind`` "nak": ``payload`` is the exact 4-byte NAK payload. "info": ``dropped``/``naks``
    are the counters INFO must report. "infer": ``logits`` is the reference (None when the
    image is not one the fuzzer knows, e.g. a frame completed by chance with a good CRC).
    """

    kind: str
    payload: bytes = b""
    dropped: int = 0
    naks: int = 0
    logits: tuple[int, ...] | None = None
    image: bytes = b""

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
        return "INFER answer" + (" with the reference logits" if self.logits is not None else "")


class FirmwareModel:
    """Mirror of ``proto_rx_feed`` (protocol.c) and ``handle_frame``/``bench_run`` (app.c).

    ``capacity`` is the firmware's rx capacity (= input size), ``references`` maps image bytes
    to their reference logits. ``dropped``/``naks`` start at the values the firmware reports
    in its first INFO answer.
    """

    def __init__(self, capacity: int, input_size: int, references: dict[bytes, Sequence[int]] | None = None,
                 dropped: int = 0, naks: int = 0):
        self.capacity = capacity
        self.input_size = input_size
        self.references = references or {}
        self.parser = FrameDecoder(max_payload=capacity)
        self._dropped_at_start = dropped
        self.naks = naks

    @property
    def dropped(self) -> int:
        """``rx_dropped`` as the firmware counts it: garbage bytes since reset, saturating."""
        return min(COUNTER_MAX, self._dropped_at_start + self.parser.dropped)

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
            if event.reason == NakReason.BAD_LENGTH:      # longer than the firmware can hold
                return self._nak(NakReason.BAD_LENGTH, event.type, self.capacity)
            return self._nak(NakReason.BAD_CRC, event.type, 0)
        if event.version != VERSION:
            return self._nak(NakReason.BAD_VERSION, event.type, VERSION)
        if event.type == FrameType.INFO_REQ:
            if event.payload:
                return self._nak(NakReason.BAD_LENGTH, event.type, 0)
            return Expect("info", dropped=self.dropped, naks=self.naks)
        if event.type == FrameType.INFER_REQ:
            if len(event.payload) != self.input_size:
                return self._nak(NakReason.BAD_LENGTH, event.type, self.input_size)
            ref = self.references.get(event.payload)
            return Expect("infer", logits=None if ref is None else tuple(int(v) for v in ref), image=event.payload)
        return self._nak(NakReason.UNKNOWN_TYPE, event.type, 0)
