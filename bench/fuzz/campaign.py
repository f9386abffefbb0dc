"""One fuzzing campaign: malformed frames in batches, each answer checked against the oracle.

Every byte the fuzzer sends is also fed to the oracle (``bench.fuzz.oracle``), so it knows what
the firmware must answer to each malformed frame, how much of an image each LOAD answer must say
is held, and what INFO must report for ``rx_dropped`` and ``naks_sent`` - not just "some answer
came". INFER answers are compared with the reference logits (``potnn.simulate``) of the images
sent, carry their image's CRC, and repeat the previous answer byte for byte when no new image
was complete.

Why the timing is deterministic: the only time-dependent behaviour of the parser is the
inter-byte timeout that drops a partial frame. The fuzzer never pauses while the oracle says a
frame is half received, except on purpose: before a valid request it either completes the
partial frame with filler bytes (the oracle predicts the outcome) or, now and then, waits out
the firmware's timeout (``partial_timeout_s``) and resets the oracle the same way.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from bench.fuzz.cases import FRAME_KINDS, Generator, upload
from bench.fuzz.oracle import Expect, FirmwareModel
from bench.frames import (LOAD_RESP_BYTES, VERSION, BadFrame, Frame, FrameDecoder, FrameType, InferResult, InfoResult,
                          LoadResult, NakReason, ProtocolError, encode_frame)


class FuzzFailure(Exception):
    """The firmware hung, faulted or answered wrongly; the message says which and where,
    ``stats`` what the campaign had sent and checked until then."""

    def __init__(self, message: str, stats: "FuzzStats | None" = None):
        super().__init__(message)
        self.stats = stats


@dataclass
class FuzzStats:
    """What a campaign sent and what the firmware answered (printed as the counts)."""

    frames: Counter = field(default_factory=Counter)        # malformed frames by kind
    naks: Counter = field(default_factory=Counter)          # NAKs by reason, all checked
    valid: Counter = field(default_factory=Counter)         # valid requests answered correctly
    garbage_bytes: int = 0
    filler_bytes: int = 0
    timeouts: int = 0          # partial frames left for the firmware's inter-byte timeout
    bursts: int = 0
    batches: int = 0
    unknown_infers: int = 0    # inferences of images the fuzzer does not know (stray chunks): structure checked
    wall_s: float = 0.0
    info: dict[str, int] = field(default_factory=dict)

    @property
    def malformed(self) -> int:
        return sum(self.frames[k] for k in FRAME_KINDS)

    def lines(self) -> list[str]:
        kinds = "  ".join(f"{k} {self.frames[k]}" for k in FRAME_KINDS)
        naks = "  ".join(f"{NakReason(r).name.lower()} {self.naks[r]}" for r in sorted(self.naks))
        valid = ", ".join(f"{k} {v}" for k, v in sorted(self.valid.items()))
        return [
            f"  malformed frames {self.malformed} in {self.batches} batches ({self.bursts} bursts): {kinds}",
            f"  garbage {self.garbage_bytes} bytes, filler {self.filler_bytes} bytes, "
            f"partial frames dropped by the firmware's timeout {self.timeouts}",
            f"  NAKs as predicted {sum(self.naks.values())} ({naks or 'none'}); "
            f"valid requests answered correctly {sum(self.valid.values())} ({valid or 'none'})",
            "  firmware counters at the end: " + ", ".join(f"{k} {v}" for k, v in self.info.items())
            + f"; {self.wall_s:.1f} s",
        ]


@dataclass
class FuzzTarget:
    """Where the firmware runs: a pyserial-like port plus what to ask when it stops answering.

    ``fault()`` returns the emulator's fault description or None; ``partial_timeout_s`` is a
    silence safely longer than the firmware's inter-byte timeout on this target.
    """

    port: Any
    fault: Callable[[], str | None] = lambda: None
    partial_timeout_s: float = 3.0
    name: str = "firmware"


class Fuzzer:
    """One campaign: ``run(frames)`` returns stats or raises :class:`FuzzFailure`."""

    def __init__(self, target: FuzzTarget, references: dict[bytes, Sequence[int]], seed: int,
                 answer_timeout_s: float = 10.0, timeouts: int | None = None, burst_every: int = 25,
                 expected_hash: int | None = None):
        self.t = target
        self.refs = {bytes(k): tuple(int(x) for x in v) for k, v in references.items()}
        self.seed = seed
        self.rng = random.Random(seed)
        self.answer_timeout_s = answer_timeout_s
        self.timeouts = timeouts       # partial frames left to the firmware's timeout (None: 1 + frames // 1500)
        self._timeout_at: list[int] = []
        self.burst_every = burst_every
        self.expected_hash = expected_hash
        self.decoder = FrameDecoder()
        self.stats = FuzzStats()
        self.sent = 0            # malformed frames so far (for the failure message)
        self.info0: InfoResult | None = None
        self.stack_hw = 0
        self.model: FirmwareModel | None = None
        self._last_infer: bytes | None = None   # the payload of the last INFER answer that ran the model
        self._last_batch = b""
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ I/O
    def _fail(self, what: str) -> FuzzFailure:
        self.stats.wall_s = time.monotonic() - self._t0
        fault = self.t.fault()
        where = f"after {self.sent} malformed frames (seed {self.seed})"
        if fault:
            return FuzzFailure(f"the firmware faulted {where}: {fault}", self.stats)
        return FuzzFailure(f"{what} {where}; last batch {len(self._last_batch)} bytes: "
                           f"{self._last_batch[:48].hex()}{'...' if len(self._last_batch) > 48 else ''}",
                           self.stats)

    def _send(self, data: bytes) -> None:
        try:
            self.t.port.write(data)
        except Exception as e:  # a dead emulator closes the socket: say why
            raise self._fail(f"the port failed on write ({type(e).__name__}: {e})") from None

    def _receive(self, count: int) -> list[Frame]:
        """The next ``count`` frames the firmware sends (a corrupt one is a wrong answer)."""
        frames: list[Frame] = []
        deadline = time.monotonic() + self.answer_timeout_s
        pending: list[Frame | BadFrame] = []
        while len(frames) < count:
            if time.monotonic() > deadline:
                raise self._fail(f"the firmware hung: {len(frames)} of {count} expected answers "
                                 f"within {self.answer_timeout_s:g} s")
            try:
                chunk = self.t.port.read(max(1, int(getattr(self.t.port, "in_waiting", 0) or 0)))
            except Exception as e:
                raise self._fail(f"the port failed on read ({type(e).__name__}: {e})") from None
            pending += self.decoder.feed(chunk)
            while pending and len(frames) < count:
                ev = pending.pop(0)
                if isinstance(ev, BadFrame):
                    raise self._fail(f"the firmware sent a corrupt frame ({ev.reason.name}, type {ev.type:#04x})")
                frames.append(ev)
        if pending:
            raise self._fail(f"the firmware sent {len(pending)} frame(s) more than expected")
        return frames

    # ------------------------------------------------------------------ checks
    def _check(self, got: Frame, want: Expect) -> None:
        if got.version != VERSION:
            raise self._fail(f"answer with protocol version {got.version} (expected {want.describe()})")
        if want.kind == "nak":
            if got.type != FrameType.NAK or got.payload != want.payload:
                raise self._fail(f"wrong answer: expected {want.describe()}, got {_show(got)}")
            self.stats.naks[want.payload[0]] += 1
            return
        if want.kind == "info":
            if got.type != FrameType.INFO_RESP:
                raise self._fail(f"wrong answer: expected {want.describe()}, got {_show(got)}")
            info = InfoResult.decode(got.payload)
            assert self.info0 is not None
            fixed = got.payload[:20] == self._info_fixed and got.payload[26:] == self._info_tail
            if not fixed:
                raise self._fail("INFO's fixed fields changed during the campaign")
            if (info.rx_dropped, info.naks_sent) != (want.dropped, want.naks):
                raise self._fail(f"INFO counts rx_dropped {info.rx_dropped}, naks_sent {info.naks_sent}; "
                                 f"the protocol says {want.dropped} and {want.naks}")
            if info.stack_high_water < self.stack_hw:
                raise self._fail(f"stack high-water mark went down ({self.stack_hw} -> {info.stack_high_water})")
            self.stack_hw = info.stack_high_water
            self.stats.valid["INFO"] += 1
            self.stats.info = {"rx_dropped": info.rx_dropped, "naks_sent": info.naks_sent,
                               "stack_high_water": info.stack_high_water}
            return
        if want.kind == "load":
            if got.type != FrameType.LOAD_RESP or len(got.payload) != LOAD_RESP_BYTES or \
                    LoadResult.decode(got.payload) != LoadResult(want.held, want.end):
                raise self._fail(f"wrong answer: expected {want.describe()}, got {_show(got)}")
            self.stats.valid["LOAD"] += 1
            return
        if got.type != FrameType.INFER_RESP:
            raise self._fail(f"wrong answer: expected {want.describe()}, got {_show(got)}")
        self._check_infer(got.payload, want)

    def _check_infer(self, payload: bytes, want: Expect) -> None:
        assert self.info0 is not None
        k = self.info0.num_classes
        if want.fresh or want.repeat:
            same = InferResult(0, [0] * k, 0, 0).encode() if want.fresh else self._last_infer
            if payload != same:
                raise self._fail(f"INFER answer is not {want.describe()}")
            self.stats.valid["INFER repeated"] += 1
            return
        try:
            ans = InferResult.decode(payload)
        except ProtocolError as e:
            raise self._fail(f"malformed INFER answer: {e}") from None
        if len(ans.logits) != k or not ans.logits or ans.cls != int(np.argmax(ans.logits)):
            raise self._fail(f"INFER answer breaks its own rules: class {ans.cls}, {len(ans.logits)} logits")
        if ans.image_crc != want.image_crc:
            raise self._fail(f"INFER answer for image CRC {ans.image_crc:#06x}, expected {want.describe()}")
        self._last_infer = payload
        if want.logits is None:
            self.stats.unknown_infers += 1
            return
        if tuple(ans.logits) != want.logits:
            raise self._fail(f"INFER answer differs from the reference: {list(ans.logits)} != {list(want.logits)}")
        self.stats.valid["INFER"] += 1

    @property
    def _info_fixed(self) -> bytes:
        return self._info0_payload[:20]

    @property
    def _info_tail(self) -> bytes:
        return self._info0_payload[26:]

    # ------------------------------------------------------------------ campaign
    def start(self) -> None:
        """First INFO: the build facts and the counters the model starts from."""
        self._send(encode_frame(FrameType.INFO_REQ, b""))
        got = self._receive(1)[0]
        if got.type != FrameType.INFO_RESP:
            raise self._fail(f"no INFO answer at start (got {_show(got)})")
        self._info0_payload = got.payload
        self.info0 = InfoResult.decode(got.payload)
        if self.expected_hash is not None and self.info0.model_hash != self.expected_hash:
            raise FuzzFailure(f"the firmware runs model {self.info0.model_hash:08x}, not {self.expected_hash:08x}")
        self.stack_hw = self.info0.stack_high_water
        self.model = FirmwareModel(self.info0.rx_capacity, self.info0.input_size, self.refs,
                                   self.info0.rx_dropped, self.info0.naks_sent)
        self.gen = Generator(self.rng, self.info0.rx_capacity, self.info0.input_size, list(self.refs))

    def _valid_request(self) -> bytes:
        """INFO, or a known image sent in chunks of random sizes and its INFER."""
        if self.refs and self.rng.random() < 0.4:
            sizes = [self.rng.randrange(1, len(next(iter(self.refs))) + 1) for _ in range(3)]
            return upload(self.rng.choice(list(self.refs)), sizes)
        return encode_frame(FrameType.INFO_REQ, b"")

    def _exchange(self, wire: bytes, expects: list[Expect]) -> None:
        self._last_batch = wire
        self._send(wire)
        for got, want in zip(self._receive(len(expects)), expects):
            self._check(got, want)

    def batch(self, budget: int) -> int:
        """One batch: malformed frames (a burst now and then), then a valid request; returns frames sent."""
        assert self.model is not None
        r = self.rng
        # Now and then (at the positions planned in run()) the batch ends with a frame cut short
        # that is left to the firmware's inter-byte timeout instead of being completed.
        wait_partial = bool(self._timeout_at) and self.sent >= self._timeout_at[0]
        burst = not wait_partial and r.randrange(self.burst_every) == 0
        n = min(budget, r.randrange(16, 65) if burst else r.randrange(1, 5))
        wire = bytearray()
        expects: list[Expect] = []
        for i in range(n):
            kind = "truncated" if wait_partial and i == n - 1 else r.choice(FRAME_KINDS)
            frame = self.gen.make(kind)
            self.stats.frames[kind] += 1
            if kind == "garbage":
                self.stats.garbage_bytes += len(frame)
            if burst and r.random() < 0.2:             # valid requests inside a burst too
                frame += self._valid_request()
            wire += frame
            expects += self.model.feed(frame)
        self.sent += n
        if burst:
            self.stats.bursts += 1
            self.stats.frames["burst"] += 1
        if self.model.busy:
            if wait_partial:
                # Leave the partial frame to the firmware's inter-byte timeout. (When the cut
                # frame only completed an earlier one, the next batch tries again.)
                self._exchange(bytes(wire), expects)
                time.sleep(self.t.partial_timeout_s)
                self.model.reset()
                self.stats.timeouts += 1
                self._timeout_at.pop(0)
                wire, expects = bytearray(), []
            else:
                filler, more = self.model.complete()
                self.stats.filler_bytes += len(filler)
                wire += filler
                expects += more
        request = self._valid_request()
        wire += request
        expects += self.model.feed(request)
        self._exchange(bytes(wire), expects)
        self.stats.batches += 1
        return n

    def run(self, frames: int) -> FuzzStats:
        self._t0 = time.monotonic()
        if self.model is None:
            self.start()
        k = self.timeouts if self.timeouts is not None else 1 + frames // 1500
        self._timeout_at = [frames * (i + 1) // (k + 1) for i in range(k)]
        while self.sent < frames:
            self.batch(frames - self.sent)
        # Nothing may follow the last answer.
        time.sleep(0.2)
        extra = self.decoder.feed(self.t.port.read(65536) if hasattr(self.t.port, "read") else b"")
        if extra:
            raise self._fail(f"the firmware sent {len(extra)} unexpected frame(s) after the last request")
        assert self.model is not None
        self._exchange(encode_frame(FrameType.INFO_REQ, b""), self.model.feed(encode_frame(FrameType.INFO_REQ, b"")))
        self.stats.wall_s = time.monotonic() - self._t0
        return self.stats


def _show(frame: Frame) -> str:
    if frame.type == FrameType.NAK and len(frame.payload) == 4:
        return (f"NAK reason {frame.payload[0]} type {frame.payload[1]:#04x} "
                f"detail {int.from_bytes(frame.payload[2:4], 'little')}")
    if frame.type == FrameType.LOAD_RESP and len(frame.payload) == LOAD_RESP_BYTES:
        load = LoadResult.decode(frame.payload)
        return f"LOAD answer (holds {load.held} bytes, for the chunk ending at {load.end})"
    return f"frame type {frame.type:#04x} with {len(frame.payload)} payload bytes"
