"""The host side of the bench wire protocol (firmware/PROTOCOL.md), without any firmware."""

from __future__ import annotations

import random
import time

import pytest

from bench.protocol import (SYNC, BadFrame, BenchClient, BenchTimeout, Frame, FrameDecoder, FrameType,
                            InferResult, InfoResult, NakError, NakReason, crc16, encode_frame)


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1          # the catalogued check value


def _crc16_by_definition(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE bit by bit, as PROTOCOL.md defines it (and protocol.c computes it)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_library_crc_equals_the_definition() -> None:
    """``crc16`` is ``binascii.crc_hqx`` started at 0xFFFF: same values, also when continued."""
    rng = random.Random(16)
    for n in (0, 1, 2, 7, 64, 257, 1000):
        data = rng.randbytes(n)
        assert crc16(data) == _crc16_by_definition(data)
        cut = n // 3
        assert crc16(data[cut:], crc16(data[:cut])) == _crc16_by_definition(data)
    assert crc16(b"") == 0xFFFF


def test_info_request_bytes_match_the_document() -> None:
    assert encode_frame(FrameType.INFO_REQ).hex(" ") == "a5 5a 01 01 00 00 c5 44"


def test_crc_over_a_whole_good_frame_is_zero() -> None:
    frame = encode_frame(FrameType.INFER_REQ, bytes(range(256)))
    assert crc16(frame[2:]) == 0


def test_decoder_round_trip_byte_by_byte() -> None:
    payload = bytes(range(200))
    wire = encode_frame(FrameType.INFER_RESP, payload)
    d = FrameDecoder()
    events = [e for b in wire for e in d.feed(bytes([b]))]
    assert events == [Frame(FrameType.INFER_RESP, payload)]
    assert not d.busy


def test_decoder_resynchronises_on_garbage() -> None:
    good = encode_frame(FrameType.INFO_REQ)
    d = FrameDecoder()
    events = d.feed(b"\x00\xff\xa5\x12" + SYNC[:1] + good + b"junk" + good)
    assert events == [Frame(FrameType.INFO_REQ, b"")] * 2
    assert d.dropped == 2 + 4    # 00 ff and "junk" (a byte right after a lone A5 only ends the sync)


def test_decoder_reports_bad_crc_and_keeps_going() -> None:
    bad = bytearray(encode_frame(FrameType.INFER_REQ, b"abc"))
    bad[7] ^= 0x40
    d = FrameDecoder()
    events = d.feed(bytes(bad) + encode_frame(FrameType.INFO_REQ))
    assert events[0] == BadFrame(NakReason.BAD_CRC, FrameType.INFER_REQ, 3)
    assert events[1] == Frame(FrameType.INFO_REQ, b"")


def test_decoder_rejects_a_length_above_its_limit_at_the_header() -> None:
    d = FrameDecoder(max_payload=16)
    events = d.feed(encode_frame(FrameType.INFER_REQ, bytes(17))[:6])
    assert events == [BadFrame(NakReason.BAD_LENGTH, FrameType.INFER_REQ, 17)]
    assert not d.busy


def test_info_and_infer_payload_layouts() -> None:
    info = (bytes.fromhex("0001") + (0xDEADBEEF).to_bytes(4, "little") + (256).to_bytes(2, "little")
            + (10).to_bytes(2, "little") + (48_000_000).to_bytes(4, "little") + (256).to_bytes(2, "little")
            + (256).to_bytes(2, "little") + bytes([32, 0]) + (96).to_bytes(2, "little")
            + (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + bytes([8]) + b"ch32v003")
    i = InfoResult.decode(info)
    assert (i.firmware_version, i.model_hash_hex, i.input_size, i.num_classes, i.clock_hz) == \
        ("1.0", "deadbeef", 256, 10, 48_000_000)
    assert (i.stack_reserved, i.rx_capacity, i.counter_bits, i.stack_high_water, i.rx_dropped,
            i.naks_sent, i.board) == (256, 256, 32, 96, 3, 1, "ch32v003")
    logits = [-5, 7, 2**31 - 1]
    infer = (1).to_bytes(2, "little") + (3).to_bytes(2, "little") + (123456).to_bytes(4, "little") + \
        b"".join(v.to_bytes(4, "little", signed=True) for v in logits)
    assert InferResult.decode(infer) == InferResult(1, logits, 123456)


class ScriptedPort:
    """A pyserial-like port whose answers are queued by the test (one list per write)."""

    def __init__(self, answers: list[bytes]):
        self.timeout: float | None = 1.0
        self.answers = list(answers)
        self.written: list[bytes] = []
        self.pending = b""

    def write(self, data: bytes) -> int:
        self.written.append(bytes(data))
        if self.answers:
            self.pending += self.answers.pop(0)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if not self.pending:
            time.sleep(self.timeout or 0)
            return b""
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def reset_input_buffer(self) -> None:
        self.pending = b""


def _nak(reason: NakReason, request: int, detail: int = 0) -> bytes:
    return encode_frame(FrameType.NAK, bytes([reason, request]) + detail.to_bytes(2, "little"))


def test_client_retries_a_request_the_board_saw_corrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.protocol.QUIET_S", 0.0)
    answer = (2).to_bytes(2, "little") + (1).to_bytes(2, "little") + (99).to_bytes(4, "little") + (7).to_bytes(4, "little")
    port = ScriptedPort([_nak(NakReason.BAD_CRC, FrameType.INFER_REQ), encode_frame(FrameType.INFER_RESP, answer)])
    result = BenchClient(port, retries=1).infer(b"\x01\x02")
    assert result == InferResult(2, [7], 99)
    assert len(port.written) == 2 and port.written[0] == port.written[1]
    assert port.timeout == 0.05                       # the client reads in short slices


def test_client_skips_stale_frames_and_garbage() -> None:
    info = bytes(26) + b"\x04host"
    port = ScriptedPort([b"\x00garbage" + encode_frame(FrameType.INFER_RESP, bytes(8)) + encode_frame(FrameType.INFO_RESP, info)])
    assert BenchClient(port).info().board == "host"


def test_client_raises_a_refusal_at_once() -> None:
    port = ScriptedPort([_nak(NakReason.BAD_LENGTH, FrameType.INFER_REQ, 256)])
    with pytest.raises(NakError, match="bad length.*256"):
        BenchClient(port, retries=3).infer(b"short")
    assert len(port.written) == 1


def test_client_times_out_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.protocol.QUIET_S", 0.0)
    port = ScriptedPort([])
    start = time.monotonic()
    with pytest.raises(BenchTimeout, match="stopped answering") as err:
        BenchClient(port, timeout=0.2, retries=1).info()
    assert time.monotonic() - start < 2.0
    assert "\n" not in str(err.value)
