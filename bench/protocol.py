"""Host side of the bench wire protocol (specified in firmware/PROTOCOL.md).

What is here: frame encoding, a byte-at-a-time decoder that resynchronises on garbage the way
the firmware's parser does, the INFO / INFER payload layouts, and ``BenchClient``, which talks
to a board (or the emulator, or the host build over a pty) through any pyserial-like object
(``write(bytes)``, ``read(n)`` honouring ``timeout``; ``reset_input_buffer()`` if it has one).

Why the client owns its deadlines: a board that stopped answering must become one clear
exception ("board stopped answering"), not a hang, whatever timeout the port was opened with.
"""

from __future__ import annotations

import binascii
import time
from collections import deque
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
        self.payload = bytes([reason & 0xFF, request_type & 0xFF]) + (detail & 0xFFFF).to_bytes(2, "little")
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
    """Byte-at-a-time frame parser: the same state machine as firmware/protocol.c.

    The one decoder of the host side: ``BenchClient`` reads answers with it, and the fuzzer's
    firmware model (``bench.fuzz.oracle``) runs it with the firmware's capacity to predict what
    the firmware makes of every byte. ``dropped`` counts the bytes skipped while hunting for a
    frame, as the firmware's ``rx_dropped`` does.
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


@dataclass
class ClientStats:
    """How hard the link made the client work (a run records it in summary.json as ``link``)."""

    requests: int = 0
    attempts: int = 0
    recovered: int = 0          # requests answered only after a retry
    no_answer: int = 0          # attempts whose answer did not come in time
    corrupt_answers: int = 0    # attempts whose answer failed its CRC or its own rules
    naks_retried: int = 0       # NAKs caused by the link (bad CRC, or a refusal that did not repeat)
    filler_bytes: int = 0       # bytes sent to end a partial frame in the firmware before a retry
    barriers: int = 0           # of the requests, INFOs sent as a barrier after a retried one (class doc)

    @property
    def retries(self) -> int:
        return self.attempts - self.requests

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "attempts": self.attempts, "retries": self.retries,
                "recovered": self.recovered, "no_answer": self.no_answer,
                "corrupt_answers": self.corrupt_answers, "naks_retried": self.naks_retried,
                "filler_bytes": self.filler_bytes, "barriers": self.barriers}


class BenchClient:
    """Request/response client for one board.

    ``timeout``: seconds to wait for an INFO answer; ``infer_timeout``: for an INFER answer
    (inference itself can take a while in an emulator).  A request whose answer is lost or
    corrupted, or that the board NAKs as corrupted (bad CRC), is retried ``retries`` times after
    a resynchronisation; any other NAK raises ``NakError`` at once.  Reads use short slices (the
    port's timeout is lowered to 0.05 s if it is longer or None).

    For lossy links (what ``bench.run`` uses):

    - ``budget_s``: give up on a request once this many seconds have passed since its first
      attempt, however many ``retries`` are left (``retries=None``: as many as fit);
    - ``adaptive``: once answers of a request type have been seen, wait for an attempt's
      answer only ``PATIENCE`` times the median of the last 32 (at least ``MIN_WAIT_S``), so a
      lost byte costs a fraction of a second instead of the whole ``timeout``; before that,
      wait ``UNKNOWN_WAIT_S`` (or ``PATIENCE`` times the slowest answer of any type), doubled
      for each attempt in a row to which not one byte came back - a slow inference looks like
      that, while a lossy link keeps answering something (NAKs, broken frames) - up to
      ``timeout``;
    - ``confirm_naks``: a refusal (NAK other than bad CRC) is final only when it repeats on a
      fresh attempt: a corrupted length byte makes the firmware refuse a good request once.

    Resynchronisation before a retry: once INFO has told the firmware's ``rx_capacity``, the
    client sends ``rx_capacity + 6 + FILLER_MARGIN`` zero bytes, which end any partial frame a
    lost byte left in the firmware's parser (at most capacity + 6 bytes are missing; zeros
    between frames are dropped as garbage). Then it discards whatever arrives until the line has
    been quiet for ``quiet_s`` (default ``QUIET_S``, longer than the boards' inter-byte timeout,
    so without the filler the firmware drops a partial frame by itself).

    ``barriers`` (a barrier after a retried request): an earlier attempt to which not one byte
    came back may still be answered later (the firmware was only slower than the wait). The
    protocol carries no request id, so such a late answer would pass for the next request's.
    Before returning, the client therefore sends INFO and waits for its answer: the firmware
    answers in order, so once INFO's answer is in, every earlier answer has arrived and been
    skipped. (An attempt that heard something - a NAK, a broken frame - got its outcome.)
    """

    PATIENCE = 4.0
    MIN_WAIT_S = 0.1
    UNKNOWN_WAIT_S = 0.5
    FILLER_MARGIN = 16

    def __init__(self, port: SerialLike, *, timeout: float = 2.0, infer_timeout: float = 30.0,
                 retries: int | None = 2, budget_s: float | None = None, adaptive: bool = False,
                 confirm_naks: bool = False, barriers: bool = False, quiet_s: float | None = None):
        if retries is None and budget_s is None:
            raise ValueError("unlimited retries need a time budget (budget_s)")
        self.port = port
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self.retries = retries
        self.budget_s = budget_s
        self.adaptive = adaptive
        self.confirm_naks = confirm_naks
        self.barriers = barriers
        self.quiet_s = quiet_s
        self.decoder = FrameDecoder()
        self.stats = ClientStats()
        self.rx_capacity: int | None = None     # learned from INFO
        self.num_classes: int | None = None     # learned from INFO
        self._slowest: dict[int, float] = {}    # request type -> slowest answer seen (s)
        self._recent: dict[int, deque[float]] = {}  # request type -> latencies of the last answers
        current = getattr(port, "timeout", None)
        if current is None or current > 0.05:
            try:
                port.timeout = 0.05
            except AttributeError:
                pass

    def info(self) -> InfoResult:
        frame = self.request(FrameType.INFO_REQ, b"", FrameType.INFO_RESP, self.timeout)
        result = InfoResult.decode(frame.payload)
        self.rx_capacity, self.num_classes = result.rx_capacity, result.num_classes
        return result

    def infer(self, image: bytes) -> InferResult:
        frame = self.request(FrameType.INFER_REQ, bytes(image), FrameType.INFER_RESP, self.infer_timeout,
                             check=self._check_infer)
        return InferResult.decode(frame.payload)

    def _check_infer(self, frame: Frame) -> str | None:
        """An INFER answer that breaks its own rules was corrupted on the way (CRC-16 misses
        about one random corruption in 65536): the logit count INFO announced, and class =
        first largest logit (PROTOCOL.md)."""
        if self.num_classes is None:        # no INFO yet: nothing to hold the answer against
            return None
        try:
            r = InferResult.decode(frame.payload)
        except ProtocolError as e:
            return str(e)
        if len(r.logits) != self.num_classes:
            return f"{len(r.logits)} logits, the board has {self.num_classes} classes"
        if r.logits and r.cls != r.logits.index(max(r.logits)):
            return f"class {r.cls} is not the first largest logit"
        return None

    def request(self, request_type: int, payload: bytes, response_type: int, timeout: float,
                check: Any = None, barrier: bool = True) -> Frame:
        """Send one request and return its response frame (retrying transient failures).

        ``check(frame) -> problem or None`` rejects an answer as corrupted (then it is retried).
        ``barrier=False`` skips the INFO barrier after a retried request (the barrier's own
        request), which the client sends only when made with ``barriers=True`` (class doc).
        """
        wire = encode_frame(request_type, payload)
        self.stats.requests += 1
        start = time.monotonic()
        problem = "no answer"
        last_nak: bytes | None = None
        attempt = silent_streak = 0
        pending = False          # an earlier attempt heard nothing: its answer may still come
        while True:
            if attempt and self._resync():
                silent_streak = 0
            wait = self._attempt_timeout(request_type, timeout, silent_streak)
            if self.budget_s is not None:
                wait = max(min(wait, start + self.budget_s - time.monotonic()), self.MIN_WAIT_S)
            sent_at = time.monotonic()
            self.port.write(wire)
            self.stats.attempts += 1
            frame, problem, nak, heard = self._await(request_type, response_type, wait)
            silent_streak = 0 if heard else silent_streak + 1
            pending = pending or (frame is None and not heard)
            if frame is not None and check is not None:
                bad = check(frame)
                if bad:
                    frame, problem = None, f"corrupted answer ({bad})"
                    self.stats.corrupt_answers += 1
            if frame is not None:
                self._learn(request_type, time.monotonic() - sent_at)
                if attempt:
                    self.stats.recovered += 1
                    if barrier and self.barriers and pending:
                        self._barrier()
                return frame
            if nak is not None:
                if nak.reason != NakReason.BAD_CRC and nak.request_type == request_type and \
                        (not self.confirm_naks or last_nak == nak.payload):
                    raise nak
                last_nak = nak.payload
                self.stats.naks_retried += 1
            attempt += 1
            out_of_tries = self.retries is not None and attempt > self.retries
            out_of_time = self.budget_s is not None and time.monotonic() - start >= self.budget_s
            if out_of_tries or out_of_time:
                spent = time.monotonic() - start
                raise BenchTimeout(f"board stopped answering ({problem} to request {request_type:#04x}, "
                                   f"{attempt} attempts in {spent:.1f} s)")

    def _barrier(self) -> None:
        """Ask INFO and wait for its answer: the firmware answers in order, so every earlier
        attempt's answer has then arrived (and been skipped), and none can meet the next request."""
        self.stats.barriers += 1
        self.request(FrameType.INFO_REQ, b"", FrameType.INFO_RESP, self.timeout, barrier=False)

    def _attempt_timeout(self, request_type: int, timeout: float, silent_streak: int) -> float:
        """How long one attempt waits: ``timeout``, or with ``adaptive`` a multiple of the
        recent answer times of this type; before any, ``UNKNOWN_WAIT_S`` doubled for each
        attempt in a row to which nothing at all came back (class doc), up to ``timeout``."""
        if not self.adaptive:
            return timeout
        recent = sorted(self._recent.get(request_type, ()))
        if recent:
            typical = recent[len(recent) // 2]                  # median of the last answers
            return min(timeout, max(self.MIN_WAIT_S, self.PATIENCE * typical))
        base = max(self.UNKNOWN_WAIT_S, self.PATIENCE * max(self._slowest.values(), default=0.0))
        return min(timeout, base * 2 ** silent_streak)

    def _learn(self, request_type: int, latency: float) -> None:
        """Remember an answer time. After a retry the answer may belong to an earlier attempt
        and the time is then too short; the median of 32 shrugs that off, and correctness never
        rests on it (the barrier does that)."""
        self._slowest[request_type] = max(latency, self._slowest.get(request_type, 0.0))
        self._recent.setdefault(request_type, deque(maxlen=32)).append(latency)

    def _await(self, request_type: int, response_type: int,
               timeout: float) -> tuple[Frame | None, str, NakError | None, bool]:
        """(answer, problem, NAK, heard): ``heard`` is False when not one byte came back."""
        deadline = time.monotonic() + timeout
        self.decoder.reset()
        heard = False
        while time.monotonic() < deadline:
            chunk = self.port.read(max(1, int(getattr(self.port, "in_waiting", 0) or 0)))
            heard = heard or bool(chunk)
            for event in self.decoder.feed(chunk):
                if isinstance(event, BadFrame):
                    self.stats.corrupt_answers += 1
                    return None, f"corrupted answer ({event.reason.name.lower()})", None, True
                if event.type == FrameType.NAK:
                    nak = decode_nak(event.payload)
                    if nak.reason == NakReason.BAD_CRC:
                        return None, "board saw a corrupted request", nak, True
                    if nak.request_type != request_type:
                        return None, "board refused a corrupted request", nak, True
                    return None, str(nak), nak, True
                if event.type == response_type:
                    if event.version != VERSION:
                        raise ProtocolError(f"board answered with protocol version {event.version}, "
                                            f"this bench speaks {VERSION}")
                    return event, "", None, True
                # anything else is a stale answer to an earlier request: skip it
        self.stats.no_answer += 1
        return None, "no answer", None, heard

    def _resync(self) -> bool:
        """End any partial frame in the firmware, then discard what is in flight (class doc);
        True when anything came back meanwhile."""
        if self.rx_capacity is not None:
            filler = bytes(self.rx_capacity + 6 + self.FILLER_MARGIN)
            self.port.write(filler)
            self.stats.filler_bytes += len(filler)
        return self._drain()

    def _drain(self) -> bool:
        """Read and drop bytes until none has arrived for the quiet time (30 s at most: a board
        that never stops talking must not hang us); True when any byte arrived."""
        quiet = QUIET_S if self.quiet_s is None else self.quiet_s
        now = time.monotonic()
        last, give_up = now, now + 30.0
        heard = False
        slice_s = getattr(self.port, "timeout", None)
        if quiet > 0 and slice_s is not None and slice_s > quiet / 2:
            try:                                  # read in slices shorter than the quiet time
                self.port.timeout = quiet / 2
            except AttributeError:
                slice_s = None
        while now - last < quiet and now < give_up:
            waiting = int(getattr(self.port, "in_waiting", 0) or 0)
            if waiting or quiet > 0:
                if self.port.read(max(1, waiting)):
                    last, heard = time.monotonic(), True
            now = time.monotonic()
        if slice_s is not None and getattr(self.port, "timeout", None) != slice_s:
            self.port.timeout = slice_s
        reset = getattr(self.port, "reset_input_buffer", None)
        if callable(reset):
            reset()
        self.decoder.reset()
        return heard
