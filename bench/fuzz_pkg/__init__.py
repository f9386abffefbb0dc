"""``potnn-bench fuzz``: malformed frames against the real firmware, with an exact oracle.

What it does: builds the bench firmware for a board, boots it on the emulator, and sends N
malformed frames - truncated, wrong CRC, oversize and "negative" (>= 0x8000) lengths, unknown
types, wrong protocol version, wrong length for the type, random garbage between frames, and
bursts of many frames at once - each batch followed by a valid INFO or INFER request whose
answer is checked. It stops at the first hang, fault or wrong answer and exits non-zero.

Why the oracle is exact: ``FirmwareModel`` is a byte-for-byte mirror of firmware/protocol.c and
the request dispatch of firmware/app.c (PROTOCOL.md is the contract both follow). Every byte the
fuzzer sends is also fed to the model, so it knows what the firmware must answer to each
malformed frame (which NAK, with which type and detail), and what INFO must report for
``rx_dropped`` and ``naks_sent`` - not just "some answer came". INFER answers are compared with
the reference logits (``potnn.simulate``) of the images sent.

Why the timing is deterministic: the only time-dependent behaviour of the parser is the
inter-byte timeout that drops a partial frame. The fuzzer never pauses while the model says a
frame is half received, except on purpose: before a valid request it either completes the
partial frame with filler bytes (the model predicts the outcome) or, now and then, waits out the
firmware's timeout (``partial_timeout_s``) and resets the model the same way.

The coverage-guided fuzzer of the parser itself (libFuzzer + ASan/UBSan on the host build of
protocol.c and app.c) is ``firmware/fuzz/fuzz_protocol.c``, built by :func:`build_libfuzzer`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench.protocol import (SYNC, VERSION, BadFrame, Frame, FrameDecoder, FrameType, InferResult, InfoResult,
                            NakReason, ProtocolError, crc16, encode_frame)

#: Malformed-frame kinds, in the order the counts are printed.
KINDS = ("truncated", "bad_crc", "oversize", "negative_length", "unknown_type", "bad_version",
         "bad_length", "garbage", "burst")


class FuzzFailure(Exception):
    """The firmware hung, faulted or answered wrongly; the message says which and where,
    ``stats`` what the campaign had sent and checked until then."""

    def __init__(self, message: str, stats: "FuzzStats | None" = None):
        super().__init__(message)
        self.stats = stats


# ============================================================================ the model
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

    HUNT, SYNC1, BODY = 0, 1, 2

    def __init__(self, capacity: int, input_size: int, references: dict[bytes, Sequence[int]] | None = None,
                 dropped: int = 0, naks: int = 0):
        self.capacity = capacity
        self.input_size = input_size
        self.references = references or {}
        self.dropped = dropped
        self.naks = naks
        self.state = self.HUNT
        self.received = 0
        self.crc = 0xFFFF
        self.version = 0
        self.type = 0
        self.length = 0
        self.payload = bytearray()

    @property
    def busy(self) -> bool:
        return self.state != self.HUNT

    def reset(self) -> None:
        """The firmware's inter-byte timeout: drop a partial frame."""
        self.state = self.HUNT

    def feed(self, data: bytes) -> list[Expect]:
        out: list[Expect] = []
        for byte in data:
            e = self._byte(byte)
            if e is not None:
                out.append(e)
        return out

    def complete(self) -> tuple[bytes, list[Expect]]:
        """Zero bytes that finish a partial frame (at most capacity + 6), and what they cause."""
        filler = bytearray()
        out: list[Expect] = []
        while self.busy:
            filler.append(0)
            e = self._byte(0)
            if e is not None:
                out.append(e)
        return bytes(filler), out

    def _nak(self, reason: int, ftype: int, detail: int) -> Expect:
        if self.naks != 0xFFFF:
            self.naks += 1
        return Expect("nak", bytes([reason, ftype]) + detail.to_bytes(2, "little"))

    def _byte(self, byte: int) -> Expect | None:
        if self.state == self.HUNT:
            if byte == SYNC[0]:
                self.state = self.SYNC1
            elif self.dropped != 0xFFFF:
                self.dropped += 1
            return None
        if self.state == self.SYNC1:
            if byte == SYNC[1]:
                self.state, self.received, self.crc = self.BODY, 0, 0xFFFF
                self.payload = bytearray()
            elif byte != SYNC[0]:
                self.state = self.HUNT
            return None
        at = self.received
        self.received += 1
        self.crc = crc16(bytes([byte]), self.crc)
        if at < 4:
            if at == 0:
                self.version = byte
            elif at == 1:
                self.type = byte
            elif at == 2:
                self.length = byte
            else:
                self.length |= byte << 8
                if self.length > self.capacity:
                    self.state = self.HUNT
                    return self._nak(NakReason.BAD_LENGTH, self.type, self.capacity)
            return None
        at -= 4
        if at < self.length:
            self.payload.append(byte)
            return None
        if at == self.length:
            return None
        self.state = self.HUNT
        if self.crc != 0:
            return self._nak(NakReason.BAD_CRC, self.type, 0)
        return self._frame()

    def _frame(self) -> Expect:
        """``handle_frame`` in app.c."""
        if self.version != VERSION:
            return self._nak(NakReason.BAD_VERSION, self.type, VERSION)
        if self.type == FrameType.INFO_REQ:
            if self.length != 0:
                return self._nak(NakReason.BAD_LENGTH, self.type, 0)
            return Expect("info", dropped=self.dropped, naks=self.naks)
        if self.type == FrameType.INFER_REQ:
            if self.length != self.input_size:
                return self._nak(NakReason.BAD_LENGTH, self.type, self.input_size)
            image = bytes(self.payload)
            ref = self.references.get(image)
            return Expect("infer", logits=None if ref is None else tuple(int(v) for v in ref), image=image)
        return self._nak(NakReason.UNKNOWN_TYPE, self.type, 0)


# ============================================================================ frame generators
def _frame(ftype: int, payload: bytes, version: int = VERSION) -> bytes:
    return encode_frame(ftype, payload, version)


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
            return _frame(FrameType.INFO_REQ, b"")
        return _frame(FrameType.INFER_REQ, self._payload(self.input_size))

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
            return _frame(r.choice(self.UNKNOWN_TYPES), r.randbytes(n))
        if kind == "bad_version":
            version = r.choice((0, 2, 3, 0x7F, 0xFF))
            return _frame(r.choice((FrameType.INFO_REQ, FrameType.INFER_REQ, 0x42)),
                          self._payload(r.choice((0, self.input_size))), version)
        if kind == "bad_length":
            if r.random() < 0.5:
                return _frame(FrameType.INFO_REQ, r.randbytes(r.randrange(1, min(self.capacity, 32) + 1)))
            n = r.choice([k for k in (0, 1, self.input_size - 1, r.randrange(0, self.capacity + 1))
                          if k != self.input_size and 0 <= k <= self.capacity] or [0])
            return _frame(FrameType.INFER_REQ, r.randbytes(n))
        if kind == "garbage":
            n = r.randrange(1, 96)
            data = bytearray(r.randbytes(n))
            for _ in range(r.randrange(0, 3)):       # plant sync bytes: lone A5, A5 A5 5A, A5 5A
                pos = r.randrange(0, len(data))
                data[pos:pos] = r.choice((b"\xa5", b"\xa5\xa5\x5a", b"\xa5\x5a", b"\x5a"))
            return bytes(data)
        raise ValueError(f"unknown malformed-frame kind {kind!r}")


# ============================================================================ the campaign
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
    unknown_infers: int = 0    # frames completed by chance into a good INFER: structure checked
    wall_s: float = 0.0
    info: dict[str, int] = field(default_factory=dict)

    @property
    def malformed(self) -> int:
        return sum(self.frames[k] for k in KINDS if k != "burst")

    def lines(self) -> list[str]:
        kinds = "  ".join(f"{k} {self.frames[k]}" for k in KINDS if k != "burst")
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
        if got.type != FrameType.INFER_RESP:
            raise self._fail(f"wrong answer: expected {want.describe()}, got {_show(got)}")
        try:
            ans = InferResult.decode(got.payload)
        except ProtocolError as e:
            raise self._fail(f"malformed INFER answer: {e}") from None
        k = self.info0.num_classes if self.info0 else len(ans.logits)
        if len(ans.logits) != k or not ans.logits or ans.cls != int(np.argmax(ans.logits)):
            raise self._fail(f"INFER answer breaks its own rules: class {ans.cls}, {len(ans.logits)} logits")
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
        self._send(_frame(FrameType.INFO_REQ, b""))
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
        if self.refs and self.rng.random() < 0.4:
            return _frame(FrameType.INFER_REQ, self.rng.choice(list(self.refs)))
        return _frame(FrameType.INFO_REQ, b"")

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
            kind = "truncated" if wait_partial and i == n - 1 else r.choice([k for k in KINDS if k != "burst"])
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
        self._exchange(_frame(FrameType.INFO_REQ, b""), self.model.feed(_frame(FrameType.INFO_REQ, b"")))
        self.stats.wall_s = time.monotonic() - self._t0
        return self.stats


def _show(frame: Frame) -> str:
    if frame.type == FrameType.NAK and len(frame.payload) == 4:
        return (f"NAK reason {frame.payload[0]} type {frame.payload[1]:#04x} "
                f"detail {int.from_bytes(frame.payload[2:4], 'little')}")
    return f"frame type {frame.type:#04x} with {len(frame.payload)} payload bytes"


# ============================================================================ emulator driver
def references_for(header: Path, zoo_name: str | None, n: int = 16,
                   no_reference: bool = False) -> dict[bytes, Sequence[int]]:
    """Images with their reference logits: the first ``n`` MNIST test images.

    Without a reference (``no_reference``) valid INFER requests are not sent: only INFO and
    the NAKs are checked.
    """
    if no_reference:
        return {}
    from bench.reference import reference_path
    from bench.run import RunError, _reference_for, check_reference, load_test_images

    images, _ = load_test_images()
    if reference_path(header).exists() or zoo_name is None:
        ref = _reference_for(header, zoo_name, images)          # the .ref.npz of the whole test set
        check_reference(ref, images)
    else:
        ref = _reference_for(header, zoo_name, images[:n])      # potnn.simulate of the zoo model, now
    if ref.logits.shape[0] < n:
        raise RunError(f"the reference has only {ref.logits.shape[0]} images")
    return {np.ascontiguousarray(images[i], dtype=np.uint8).tobytes(): [int(v) for v in ref.logits[i]]
            for i in range(n)}


def fuzz_emulated(board: Any, elf: Path, references: dict[bytes, Sequence[int]], frames: int, seed: int,
                  backend: str = "unicorn", expected_hash: int | None = None,
                  launch_opts: dict[str, Any] | None = None, **opts: Any) -> FuzzStats:
    """Boot ``elf`` on the emulator (``launch_opts`` for ``bench.emulator.launch``) and run one
    campaign against it (``opts`` for :class:`Fuzzer`)."""
    from bench.emulator import launch

    with launch(board, elf, backend=backend, **(launch_opts or {})) as emu:
        port = emu.open_serial(timeout=0.05)
        try:
            target = FuzzTarget(port, fault=lambda: None if emu.fault is None else str(emu.fault),
                                name=f"{backend} emulator")
            return Fuzzer(target, references, seed, expected_hash=expected_hash, **opts).run(frames)
        finally:
            port.close()


# ============================================================================ coverage fuzzer
FUZZ_DIR = Path(__file__).resolve().parent.parent / "firmware" / "fuzz"


def build_libfuzzer(out_dir: Path, *, cc: str | None = None, input_size: int = 256,
                    num_classes: int = 10, standalone: bool = False, protocol_c: Path | None = None) -> Path:
    """Build firmware/fuzz/fuzz_protocol.c with app.c and protocol.c for the host.

    ``standalone=False``: a libFuzzer binary (clang ``-fsanitize=fuzzer,address,undefined``),
    coverage-guided. ``standalone=True``: the same harness with a small replay ``main`` and
    ASan/UBSan only (any gcc or clang), which runs the seed corpus and random inputs - what the
    test suite builds to keep the harness compiling where clang's libFuzzer is missing.
    ``protocol_c`` replaces firmware/protocol.c (the tests build a broken copy to prove the
    harness finds a bug).
    """
    from bench.board import FIRMWARE_DIR
    from bench.build import BuildError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    compiler = cc or (shutil.which("clang") if not standalone else (shutil.which("cc") or shutil.which("clang")))
    if not compiler:
        raise BuildError("no clang for the coverage fuzzer: apt-get install clang (libFuzzer comes with it)")
    exe = out_dir / ("fuzz_protocol_replay" if standalone else "fuzz_protocol")
    san = "-fsanitize=address,undefined" if standalone else "-fsanitize=fuzzer,address,undefined"
    argv = [compiler, "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all", san, f"-I{FIRMWARE_DIR}", f"-I{FUZZ_DIR}",
            f"-DBENCH_INPUT_SIZE={input_size}", f"-DBENCH_NUM_CLASSES={num_classes}",
            "-DBENCH_MODEL_HASH=0x12345678u", "-DBENCH_BOARD=fuzz",
            *(["-DFUZZ_STANDALONE"] if standalone else []),
            str(FUZZ_DIR / "fuzz_protocol.c"), str(FIRMWARE_DIR / "app.c"),
            str(protocol_c or FIRMWARE_DIR / "protocol.c"),
            "-o", str(exe)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    (out_dir / "build.log").write_text(" ".join(argv) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        first = next((ln for ln in (proc.stderr + proc.stdout).splitlines() if "error" in ln), "see build.log")
        raise BuildError(f"coverage fuzzer build failed ({first.strip()}); log: {out_dir / 'build.log'}")
    return exe


def write_seed_corpus(directory: Path, seed: int = 1, count: int = 64, input_size: int = 256) -> Path:
    """Seed inputs for the coverage fuzzer: the frames of every kind, as the emulator campaign makes them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    images = [rng.randbytes(input_size) for _ in range(4)]
    gen = Generator(rng, input_size, input_size, images)
    kinds = [k for k in KINDS if k != "burst"]
    for i in range(count):
        data = gen.make(kinds[i % len(kinds)])
        data += _frame(FrameType.INFO_REQ, b"") if i % 2 else _frame(FrameType.INFER_REQ, images[i % 4])
        (directory / f"seed-{i:03d}").write_bytes(data)
    return directory


# ============================================================================ CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from bench.run import add_build_options

    p = subparsers.add_parser("fuzz", help="send malformed frames to the firmware on the emulator; fail on any "
                                           "hang, fault or wrong answer",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--board", required=True, help="board name (see `potnn-bench boards`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--header", type=Path, help="model header exported by potnn.export")
    g.add_argument("--model", help="zoo model name (default: the zoo's default model for the board)")
    p.add_argument("--frames", type=int, default=1000, metavar="N", help="malformed frames to send (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed; reproduces a run)")
    p.add_argument("--emulator", choices=("unicorn", "renode"), default="unicorn", help="emulator backend")
    p.add_argument("--no-reference", action="store_true",
                   help="no reference logits (no MNIST): send valid INFO requests only")
    p.add_argument("--build-dir", type=Path, default=None, help="where to build")
    add_build_options(p)
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from bench.board import load_board
    from bench.build import build
    from bench.models import resolve_header

    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    board = load_board(args.board)
    header, model_name = resolve_header(board.name, args.header, args.model)
    refs = references_for(header, None if args.header is not None else model_name, no_reference=args.no_reference)
    fw = build(board, header, args.build_dir, opt=args.opt, toolchain=args.toolchain)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"fuzz {board.name} ({args.emulator}): {model_name} {fw.model_hash_hex}, {args.frames} malformed frames, "
          f"seed {seed}", flush=True)
    try:
        stats = fuzz_emulated(board, fw.elf, refs, args.frames, seed, backend=args.emulator,
                              expected_hash=fw.model_hash)
    except FuzzFailure as e:
        for line in e.stats.lines() if e.stats is not None else []:
            print(line)
        print(f"fuzz FAILED: {e}; reproduce with: potnn-bench fuzz --board {board.name} "
              f"--frames {args.frames} --seed {seed}", file=sys.stderr)
        return 1
    for line in stats.lines():
        print(line)
    print(f"fuzz passed: {stats.malformed} malformed frames, no hang, no fault, no wrong answer")
    return 0
