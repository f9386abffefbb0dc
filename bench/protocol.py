"""Host side of the bench wire protocol (firmware/PROTOCOL.md): ``BenchClient``.

``BenchClient`` talks to a board (or the emulator, or the host build over a pty) through any
pyserial-like object (``write(bytes)``, ``read(n)`` honouring ``timeout``). The frames and
payloads are ``bench.frames``; the names a caller needs are re-exported here.

Why the client owns its deadlines: a board that stopped answering must become one clear
exception ("board stopped answering"), not a hang, whatever timeout the port was opened with.
Why it sends an image in chunks whose size follows the measured loss: over a link that loses or
corrupts one byte in a hundred, a 256-byte image in one frame arrives intact about one time in
five, and an 1,800-byte one almost never; a lost chunk costs a chunk.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from bench.frames import (INFO_FIXED_BYTES, LOAD_RESP_BYTES, OFFSET_BYTES, OVERHEAD, SYNC, VERSION, BadFrame,
                          BenchTimeout, Frame, FrameDecoder, FrameType, InferResult, InfoResult, LoadResult, NakError,
                          NakReason, ProtocolError, crc16, decode_nak, encode_frame, load_payload, unverified)

__all__ = ["BadFrame", "BenchClient", "BenchTimeout", "ClientStats", "Frame", "FrameDecoder", "FrameType",
           "InferResult", "InfoResult", "LoadResult", "NakError", "NakReason", "ProtocolError", "SYNC", "VERSION",
           "crc16", "encode_frame", "load_payload"]

#: The port is read in slices this short, so a wait ends within this much of its deadline.
READ_SLICE_S = 0.01


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
    no_answer: int = 0          # attempts whose answer did not come (whole) in time
    corrupt_answers: int = 0    # attempts whose answer failed its CRC or its own rules
    naks_retried: int = 0       # NAKs of a request damaged on the way (bad CRC, too long, wrong type; a refusal once)
    filler_bytes: int = 0       # zeros sent to end a frame the board holds half received
    chunks: int = 0             # of the requests, LOADs of image chunks
    reuploads: int = 0          # images sent again because the answer was computed from another one
    late_answers: int = 0       # answers to an earlier request, come after it was given up: skipped
    resized: int = 0            # LOAD chunks given up after a failed attempt for smaller ones (the loss grew)

    @property
    def retries(self) -> int:
        return self.attempts - self.requests

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "attempts": self.attempts, "retries": self.retries,
                "recovered": self.recovered, "no_answer": self.no_answer,
                "corrupt_answers": self.corrupt_answers, "naks_retried": self.naks_retried,
                "filler_bytes": self.filler_bytes, "chunks": self.chunks, "reuploads": self.reuploads,
                "late_answers": self.late_answers, "resized": self.resized}


@dataclass
class _Outcome:
    """What one attempt got back."""

    frame: Frame | None = None       # an answer of the awaited type
    nak: NakError | None = None
    problem: str = "no answer"
    heard: bool = False              # any byte at all came back
    corrupt: bool = False            # a frame came back broken


class LossEstimate:
    """The link's recent loss per byte, from the attempts' outcomes and the bytes each put on
    the wire (both ways): an attempt of ``b`` bytes gets through with probability (1 - loss)^b,
    so loss = -ln(share of good attempts) / (mean bytes per attempt). Older attempts weigh less
    (``DECAY`` per attempt)."""

    DECAY = 0.95

    def __init__(self) -> None:
        self.attempts = 0.0
        self.good = 0.0
        self.bytes = 0.0

    def add(self, exposed: int, failed: bool) -> None:
        self.attempts = self.attempts * self.DECAY + 1
        self.good = self.good * self.DECAY + (not failed)
        self.bytes = self.bytes * self.DECAY + exposed

    @property
    def per_byte(self) -> float:
        if self.good >= self.attempts:
            return 0.0
        share = max(self.good, 0.5) / self.attempts        # all failed: as if half of one got through
        return -math.log(min(share, 1.0)) / (self.bytes / self.attempts)


class BenchClient:
    """Request/response client for one board (PROTOCOL.md, "Host rules").

    ``timeout``: the longest wait for an INFO or LOAD answer; ``infer_timeout``: for an INFER
    answer (inference itself can take a while in an emulator). Each request is retried until
    answered: ``retries`` times at most (None: as many as fit), and for ``budget_s`` seconds at
    most when given; then ``BenchTimeout``.

    - Waits follow the answers: an attempt waits ``PATIENCE`` times the median of the last 32
      answer times of its request type (at least ``MIN_WAIT_S``); before the first,
      ``UNKNOWN_WAIT_S``. Each attempt in a row to which not one byte came back doubles the
      wait (a slow inference looks like that), up to the type's timeout.
    - A corrupted answer, or a NAK of a frame the board never found intact (bad CRC, too long,
      another type than sent) is retried at once. A refusal of an intact frame (bad length,
      unknown type, bad version) is final when the next attempt gets the same one: a
      corruption that slips past CRC-16 (one in 65536) does not repeat.
    - After an attempt to which nothing came back, the board may hold the request half
      received (a byte was lost): the retry is preceded by ``len(request) + FILLER_MARGIN``
      zeros, which complete that frame (the board NAKs it: the client skips that one NAK) and
      are dropped as garbage otherwise.
    - ``infer`` sends the image in LOAD chunks of about ``CHUNK_SCALE`` / (measured loss per
      byte) bytes (the whole image on a clean link), then INFER; an answer whose image CRC is
      not the image's is for another image (a stale one), and the image is sent again. A chunk
      whose attempt failed is sent again smaller when the loss that failure measured asks for
      smaller chunks (else a first chunk the size of the image could almost never get through).
    """

    PATIENCE = 4.0
    MIN_WAIT_S = 0.03
    #: Zeros after every request: they complete a request that lost up to this many bytes, so
    #: the board NAKs it at once instead of waiting for bytes that never come.
    TRAIL = 4
    #: An answer that stops arriving for this long in the middle of its frame lost bytes.
    STALL_S = 0.03
    UNKNOWN_WAIT_S = 0.5
    FILLER_MARGIN = 16
    MIN_CHUNK = 8
    #: Chunk size x loss per byte. Whole-frame survival is exp(-loss x bytes), and every attempt
    #: also carries a frame's overhead, an answer and a round trip; on the paced emulator link at
    #: 1 % faults, 0.4 / loss moved the most images per second (0.6 and 1.0 moved 2-10 % fewer).
    CHUNK_SCALE = 0.4
    #: Image uploads per ``infer`` whose answer may be for another image before giving up.
    MAX_UPLOADS = 4
    #: LOAD answers in a row that do not advance the image before giving up.
    MAX_STALLED_LOADS = 16

    def __init__(self, port: SerialLike, *, timeout: float = 2.0, infer_timeout: float = 30.0,
                 retries: int | None = 2, budget_s: float | None = None):
        if retries is None and budget_s is None:
            raise ValueError("unlimited retries need a time budget (budget_s)")
        self.port = port
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self.retries = retries
        self.budget_s = budget_s
        self.decoder = FrameDecoder()
        self.stats = ClientStats()
        self.loss = LossEstimate()
        self.info_result: InfoResult | None = None    # the last INFO answer
        self._recent: dict[int, deque[float]] = {}    # request type -> latencies of the last answers
        current = getattr(port, "timeout", None)
        if current is None or current > READ_SLICE_S:
            try:
                port.timeout = READ_SLICE_S
            except AttributeError:
                pass

    # ------------------------------------------------------------------ requests
    def info(self) -> InfoResult:
        answer = self._exchange(FrameType.INFO_REQ, b"", FrameType.INFO_RESP, self.timeout, check=_check_info)
        result = InfoResult.decode(answer.payload)
        if result.rx_capacity < result.input_size + OFFSET_BYTES:
            raise ProtocolError(f"the board takes requests of {result.rx_capacity} bytes, less than one "
                                f"{result.input_size}-byte image chunk: its firmware is not protocol version {VERSION}")
        self.info_result = result
        return result

    def infer(self, image: bytes) -> InferResult:
        """Send ``image`` in chunks, ask INFER, and return the answer computed from that image."""
        image = bytes(image)
        info = self.info_result or self.info()
        if len(image) != info.input_size:
            raise ValueError(f"an image of {len(image)} bytes, but the board's model takes {info.input_size}")
        want = crc16(image)
        for _ in range(self.MAX_UPLOADS):
            self._upload(image)
            answer = self._exchange(FrameType.INFER_REQ, b"", FrameType.INFER_RESP, self.infer_timeout,
                                    check=self._check_infer)
            result = InferResult.decode(answer.payload)
            if result.image_crc == want:
                return result
            self.stats.reuploads += 1
        raise ProtocolError(f"the board answered {self.MAX_UPLOADS} times for an image other than the one sent "
                            f"(image CRC {result.image_crc:#06x}, sent {want:#06x})")

    def _upload(self, image: bytes) -> None:
        """LOAD ``image`` chunk by chunk (PROTOCOL.md, "Sending an image"). The board answers each
        LOAD with how many bytes it holds; the client continues from there when that is no further
        than the furthest byte this upload has sent (a chunk given up for a smaller one may have been
        taken after all), and otherwise (the board holds bytes of an image abandoned earlier) first
        sends an empty chunk at offset 0, which makes the board start over."""
        assert self.info_result is not None
        capacity = self.info_result.rx_capacity
        pos, restart, stalled, best, sent = 0, False, 0, 0, 0
        while pos < len(image) or restart:
            n = 0 if restart else min(self._chunk_size(), len(image) - pos)
            sent = max(sent, pos + n)
            answer = self._exchange(FrameType.LOAD_REQ, load_payload(image[pos:pos + n], pos), FrameType.LOAD_RESP,
                                    self.timeout, check=lambda f: _check_held(f, len(image)), no_room_ok=True,
                                    answers=functools.partial(_answers_load, end=pos + n),
                                    smaller=functools.partial(self._smaller_than, n))
            if answer is None:          # the loss measured on this chunk's attempts asks for smaller ones
                self.stats.resized += 1
                continue
            self.stats.chunks += 1
            held = capacity - answer.detail if isinstance(answer, NakError) else LoadResult.decode(answer.payload).held
            restart = held > sent
            pos = 0 if restart else held
            sent = 0 if restart else sent
            stalled = 0 if pos > best else stalled + 1
            best = max(best, pos)
            if stalled > self.MAX_STALLED_LOADS:
                raise ProtocolError(f"the board does not keep the image: {stalled} LOAD answers in a row without "
                                    f"progress (it holds {held} of {len(image)} bytes)")

    def _smaller_than(self, n: int) -> bool:
        """The measured loss now asks for chunks smaller than `n` bytes (a chunk the size of the whole
        image, sent while the link still looked clean, may almost never get through a lossy one)."""
        return 0 < self._chunk_size() < n

    def _chunk_size(self) -> int:
        assert self.info_result is not None
        room = self.info_result.rx_capacity - OFFSET_BYTES
        loss = self.loss.per_byte
        best = room if loss <= 0 else max(self.MIN_CHUNK, min(room, int(self.CHUNK_SCALE / loss)))
        chunks = -(-room // best)               # as many chunks as that size needs, all of one size
        return -(-room // chunks)

    def _check_infer(self, frame: Frame) -> str | None:
        """An INFER answer that breaks its own rules was corrupted on the way (CRC-16 misses
        about one random corruption in 65536): the logit count INFO announced, and class =
        first largest logit (PROTOCOL.md)."""
        assert self.info_result is not None
        try:
            r = InferResult.decode(frame.payload)
        except ProtocolError as e:
            return str(e)
        if len(r.logits) != self.info_result.num_classes:
            return f"{len(r.logits)} logits, the board has {self.info_result.num_classes} classes"
        if r.logits and r.cls != r.logits.index(max(r.logits)):
            return f"class {r.cls} is not the first largest logit"
        return None

    # ------------------------------------------------------------------ one request, retried
    def _exchange(self, request_type: int, payload: bytes, response_type: int, limit: float,
                  check: Callable[[Frame], str | None] | None = None, no_room_ok: bool = False,
                  answers: Callable[[Frame], bool] | None = None,
                  smaller: Callable[[], bool] | None = None) -> Any:
        """Send one request until its answer comes (class doc for the rules) and return it.

        ``check(frame) -> problem or None`` rejects an answer as corrupted (then it is retried).
        ``answers(frame)`` is False for an answer of the awaited type to another request (a late
        one, come after its attempt was given up): it is skipped and the wait goes on.
        ``no_room_ok``: a TOO_LONG NAK for a request longer than the room it names is returned
        (for a LOAD it says how much of the image the board holds) instead of raised.
        ``smaller()``: True after a failed attempt when the request should be sent smaller instead
        (a LOAD chunk the measured loss no longer allows); None is returned, any filler sent first.
        """
        wire = encode_frame(request_type, payload)
        exposed = len(wire) + OVERHEAD + self._answer_payload(response_type)
        self.stats.requests += 1
        start = time.monotonic()
        attempt = silent = filler = 0
        refusal: bytes | None = None
        while True:
            wait = min(limit, self._typical_wait(request_type) * 2 ** silent)
            if self.budget_s is not None:
                wait = max(min(wait, start + self.budget_s - time.monotonic()), self.MIN_WAIT_S)
            if filler:                      # end a frame the board may hold half received; it NAKs that
                self._fill(filler, min(wait, self._typical_wait(request_type)))  # within the budget too
                filler = 0
            sent_at = time.monotonic()
            self.port.write(wire + bytes(self.TRAIL))      # one write: one USB or TCP packet
            self.stats.attempts += 1
            out = self._await(response_type, wait, answers)
            if out.frame is not None and check is not None and (bad := check(out.frame)):
                out = _Outcome(problem=f"corrupted answer ({bad})", heard=True, corrupt=True)
                self.stats.corrupt_answers += 1
            self.loss.add(exposed, failed=out.frame is None)
            if out.frame is not None:
                self._learn(request_type, time.monotonic() - sent_at)
                self.stats.recovered += attempt > 0
                return out.frame
            nak = out.nak
            if nak is not None:
                mine = nak.request_type == request_type
                if mine and nak.reason == NakReason.TOO_LONG and len(payload) > nak.detail:
                    if no_room_ok:
                        return nak
                    raise nak
                if mine and not unverified(nak.reason):
                    if refusal == nak.payload:
                        raise nak                  # refused twice in a row, intact both times
                    refusal = nak.payload
                else:
                    refusal = None
                self.stats.naks_retried += 1
            else:
                refusal = None
                if not out.corrupt:
                    self.stats.no_answer += 1
            silent = 0 if out.heard else silent + 1
            if silent >= 2:         # twice nothing: the board may hold a frame half received
                filler = self._filler_bytes(len(wire))
            if smaller is not None and smaller():
                if filler:
                    self._fill(filler, self._typical_wait(request_type))
                self.stats.requests -= 1    # the request goes on, smaller: its attempts count as retries
                return None
            attempt += 1
            out_of_tries = self.retries is not None and attempt > self.retries
            out_of_time = self.budget_s is not None and time.monotonic() - start >= self.budget_s
            if out_of_tries or out_of_time:
                spent = time.monotonic() - start
                raise BenchTimeout(f"board stopped answering ({out.problem} to request {request_type:#04x}, "
                                   f"{attempt} attempts in {spent:.1f} s)")

    def _fill(self, n: int, wait: float) -> None:
        """Send `n` zeros, which end a frame the board may hold half received, and skip its NAK."""
        self.port.write(bytes(n))
        self.stats.filler_bytes += n
        self._await(None, wait)

    def _filler_bytes(self, sent: int) -> int:
        """Zeros that complete any frame the board may hold half received: the longest frame it
        accepts (its room is at most ``rx_capacity``; a corrupted length can ask for all of it),
        or before INFO has told that, the frame just sent."""
        longest = OVERHEAD + self.info_result.rx_capacity if self.info_result else sent
        return longest + self.FILLER_MARGIN

    def _answer_payload(self, response_type: int | None, longest: bool = False) -> int:
        """Payload bytes of the answer expected: typical (what an attempt exposes to the link
        besides the request), or the ``longest`` that answer can be."""
        if response_type == FrameType.LOAD_RESP:
            return LOAD_RESP_BYTES
        if response_type == FrameType.INFER_RESP:
            return 10 + 4 * (self.info_result.num_classes if self.info_result else 0xFFFF if longest else 10)
        return INFO_FIXED_BYTES + (255 if longest else 8)

    def _typical_wait(self, request_type: int) -> float:
        """``PATIENCE`` x the median recent answer time of this type, or ``UNKNOWN_WAIT_S`` before any."""
        recent = sorted(self._recent.get(request_type, ()))
        if not recent:
            return self.UNKNOWN_WAIT_S
        return max(self.MIN_WAIT_S, self.PATIENCE * recent[len(recent) // 2])

    def _learn(self, request_type: int, latency: float) -> None:
        """Remember an answer time. After a retry the answer may belong to an earlier attempt and
        the time is then too short; the median of 32 shrugs that off."""
        self._recent.setdefault(request_type, deque(maxlen=32)).append(latency)

    def _await(self, response_type: int | None, wait: float,
               answers: Callable[[Frame], bool] | None = None) -> _Outcome:
        """Read until an answer of ``response_type`` (None: none awaited) or a NAK comes, or
        ``wait`` seconds pass.

        Frames of other types, and those ``answers`` says are for another request, are late
        answers to earlier requests and are skipped. Bytes that stop short of a frame (a cut
        answer, or one whose sync bytes were lost) end the wait once the line has been quiet for
        ``STALL_S``; zeros between frames are the board's padding, not a sign of loss.
        """
        now = time.monotonic()
        deadline, last = now + wait, now
        self.decoder.reset()
        # A longer length field than any answer awaited here has was corrupted: reject it at the header.
        self.decoder.max_payload = max(4, self._answer_payload(response_type, longest=True))
        heard = stray = False
        while now < deadline:
            chunk = self.port.read(max(1, int(getattr(self.port, "in_waiting", 0) or 0)))
            now = time.monotonic()
            if chunk:
                last = now
            elif (self.decoder.busy or stray) and now - last > self.STALL_S:
                break
            for byte in chunk:
                hunting = not self.decoder.busy
                event = self.decoder.feed_byte(byte)
                heard = heard or byte != 0
                if event is None:
                    stray = stray or (hunting and byte not in (0, SYNC[0]))
                    continue
                stray = False
                out = self._classify(event, response_type, answers)
                if out is not None:
                    return out
        return _Outcome(problem="answer cut short" if self.decoder.busy or stray else "no answer", heard=heard)

    def _classify(self, event: Frame | BadFrame, response_type: int | None,
                  answers: Callable[[Frame], bool] | None = None) -> _Outcome | None:
        """What a frame that arrived means for the request awaited (None: a late answer, skip it)."""
        if isinstance(event, BadFrame):
            self.stats.corrupt_answers += 1
            return _Outcome(problem=f"corrupted answer ({event.reason.name.lower()})", heard=True, corrupt=True)
        if event.type == FrameType.NAK:
            try:
                nak = decode_nak(event.payload)
            except ProtocolError as e:
                self.stats.corrupt_answers += 1
                return _Outcome(problem=f"corrupted answer ({e})", heard=True, corrupt=True)
            return _Outcome(nak=nak, problem=str(nak), heard=True)
        if event.type != response_type:
            return None
        if answers is not None and not answers(event):
            self.stats.late_answers += 1
            return None
        if event.version != VERSION:
            raise ProtocolError(f"board answered with protocol version {event.version}, this bench speaks {VERSION}")
        return _Outcome(frame=event, heard=True)


def _check_info(frame: Frame) -> str | None:
    try:
        InfoResult.decode(frame.payload)
    except ProtocolError as e:
        return str(e)
    return None


def _answers_load(frame: Frame, end: int) -> bool:
    """Whether a LOAD answer is for the LOAD whose chunk ends at ``end`` (one of another length is
    left to the corruption check)."""
    return len(frame.payload) != LOAD_RESP_BYTES or LoadResult.decode(frame.payload).end == end & 0xFFFF


def _check_held(frame: Frame, size: int) -> str | None:
    try:
        held = LoadResult.decode(frame.payload).held
    except ProtocolError as e:
        return str(e)
    return None if held <= size else f"the board says it holds {held} bytes of a {size}-byte image"
