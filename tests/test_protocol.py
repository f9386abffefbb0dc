"""The host side of the bench wire protocol (firmware/PROTOCOL.md), without any firmware."""

from __future__ import annotations

import random
import time

import pytest

from bench.protocol import (SYNC, BadFrame, BenchClient, BenchTimeout, Frame, FrameDecoder, FrameType,
                            InferResult, InfoResult, LoadResult, NakError, NakReason, ProtocolError, crc16,
                            encode_frame, load_payload)


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
    assert encode_frame(FrameType.INFO_REQ).hex(" ") == "a5 5a 02 01 00 00 5e 98"


def test_crc_over_a_whole_good_frame_is_zero() -> None:
    frame = encode_frame(FrameType.LOAD_REQ, bytes(range(256)))
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
    bad = bytearray(encode_frame(FrameType.LOAD_REQ, b"abc"))
    bad[7] ^= 0x40
    d = FrameDecoder()
    events = d.feed(bytes(bad) + encode_frame(FrameType.INFO_REQ))
    assert events[0] == BadFrame(NakReason.BAD_CRC, FrameType.LOAD_REQ, 3)
    assert events[1] == Frame(FrameType.INFO_REQ, b"")


def test_decoder_rejects_a_length_above_its_limit_at_the_header() -> None:
    d = FrameDecoder(max_payload=16)
    events = d.feed(encode_frame(FrameType.LOAD_REQ, bytes(17))[:6])
    assert events == [BadFrame(NakReason.TOO_LONG, FrameType.LOAD_REQ, 17)]
    assert not d.busy
    assert d.feed(encode_frame(FrameType.LOAD_REQ, bytes(16))) == [Frame(FrameType.LOAD_REQ, bytes(16))]


def test_document_examples_are_the_bytes_sent() -> None:
    """PROTOCOL.md's example frames (LOAD, its answer, INFER, a NAK) are what the encoder makes."""
    assert encode_frame(FrameType.LOAD_REQ, load_payload(bytes(4), 0)).hex(" ") == \
        "a5 5a 02 03 06 00 00 00 00 00 00 00 92 3c"
    assert encode_frame(FrameType.LOAD_RESP, LoadResult(4, 4).encode()).hex(" ") == \
        "a5 5a 02 83 04 00 04 00 04 00 cd 77"
    assert encode_frame(FrameType.INFER_REQ).hex(" ") == "a5 5a 02 02 00 00 07 c8"
    assert encode_frame(FrameType.NAK, bytes([3, 0x42, 0, 0])).hex(" ") == "a5 5a 02 ff 04 00 03 42 00 00 f5 59"


def info_payload(input_size: int, num_classes: int, *, version: int = 0x0200, board: bytes = b"test",
                 rx_capacity: int | None = None) -> bytes:
    """An INFO_RESP payload (PROTOCOL.md layout); rx_capacity defaults to a whole image plus its offset."""
    capacity = input_size + 2 if rx_capacity is None else rx_capacity
    return (version.to_bytes(2, "little") + (0xDEADBEEF).to_bytes(4, "little") + input_size.to_bytes(2, "little")
            + num_classes.to_bytes(2, "little") + (48_000_000).to_bytes(4, "little") + (256).to_bytes(2, "little")
            + capacity.to_bytes(2, "little") + bytes([32, 0]) + (96).to_bytes(2, "little")
            + (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + bytes([len(board)]) + board)


def test_info_and_infer_payload_layouts() -> None:
    i = InfoResult.decode(info_payload(256, 10, board=b"ch32v003"))
    assert (i.firmware_version, i.model_hash_hex, i.input_size, i.num_classes, i.clock_hz) == \
        ("2.0", "deadbeef", 256, 10, 48_000_000)
    assert (i.stack_reserved, i.rx_capacity, i.counter_bits, i.stack_high_water, i.rx_dropped,
            i.naks_sent, i.board) == (256, 258, 32, 96, 3, 1, "ch32v003")
    logits = [-5, 7, 2**31 - 1]
    infer = (1).to_bytes(2, "little") + (3).to_bytes(2, "little") + (123456).to_bytes(4, "little") + \
        b"".join(v.to_bytes(4, "little", signed=True) for v in logits) + (0xBEEF).to_bytes(2, "little")
    assert InferResult.decode(infer) == InferResult(1, logits, 123456, 0xBEEF)
    assert InferResult.decode(infer).encode() == infer
    with pytest.raises(ProtocolError, match="INFER answer of 20 bytes for 3 logits"):
        InferResult.decode(infer[:-2])             # a version-1 answer: no image CRC


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


def nak(reason: NakReason, request: int, detail: int = 0, version: int = 2) -> bytes:
    return encode_frame(FrameType.NAK, bytes([reason, request]) + detail.to_bytes(2, "little"), version=version)


def request(frame_type: int, payload: bytes = b"") -> bytes:
    """A request as the client writes it: the frame and its zero padding."""
    return encode_frame(frame_type, payload) + bytes(BenchClient.TRAIL)


IMAGE = b"\x01\x02"
INFO2 = encode_frame(FrameType.INFO_RESP, info_payload(2, 1))
HELD2 = encode_frame(FrameType.LOAD_RESP, LoadResult(2, 2).encode())
ANSWER = InferResult(0, [7], 99, crc16(IMAGE))


def test_client_sends_an_image_in_one_load_then_infer_on_a_clean_link() -> None:
    port = ScriptedPort([INFO2, HELD2, encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    client = BenchClient(port)
    assert client.infer(IMAGE) == ANSWER
    assert port.written == [request(FrameType.INFO_REQ), request(FrameType.LOAD_REQ, load_payload(IMAGE, 0)),
                            request(FrameType.INFER_REQ)]
    assert port.timeout == 0.01                       # the client reads in short slices
    assert client.stats.to_dict()["chunks"] == 1 and client.stats.retries == 0


def test_a_link_nak_is_retried_and_never_taken_for_a_refusal() -> None:
    """The old failure: two link NAKs within one request ended the run with "board refused request".
    A bad CRC or a TOO_LONG for a request that fits the room is the link's doing, however often."""
    link_naks = [nak(NakReason.BAD_CRC, FrameType.LOAD_REQ)] * 2 + [nak(NakReason.TOO_LONG, FrameType.LOAD_REQ, 4)] * 2
    port = ScriptedPort([INFO2, *link_naks, HELD2, encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    client = BenchClient(port, retries=4)
    assert client.infer(IMAGE) == ANSWER
    load = request(FrameType.LOAD_REQ, load_payload(IMAGE, 0))
    assert port.written[1:6] == [load] * 5
    assert client.stats.naks_retried == 4 and client.stats.recovered == 1


def test_the_padding_ends_a_frame_that_lost_bytes() -> None:
    """The parser's view of a corrupted request, and of one that lost bytes: with the padding that
    follows every request, both end in BAD_CRC at once (tests/test_host_firmware.py shows the
    firmware's NAK), not in a frame left waiting for bytes that never come."""
    wire = bytearray(encode_frame(FrameType.LOAD_REQ, load_payload(bytes(8), 0)) + bytes(BenchClient.TRAIL))
    d = FrameDecoder(max_payload=10)
    corrupted = bytes(wire[:8]) + bytes([wire[8] ^ 0x10]) + bytes(wire[9:])
    assert d.feed(corrupted)[0] == BadFrame(NakReason.BAD_CRC, FrameType.LOAD_REQ, 10)
    lost = bytes(wire[:9] + wire[12:])                # three bytes lost: the padding completes the frame
    assert d.feed(lost) == [BadFrame(NakReason.BAD_CRC, FrameType.LOAD_REQ, 10)] and not d.busy


def test_a_refusal_is_final_only_when_repeated() -> None:
    once = ScriptedPort([INFO2, HELD2, nak(NakReason.BAD_LENGTH, FrameType.INFER_REQ),
                         encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    assert BenchClient(once, retries=3).infer(IMAGE) == ANSWER          # a corruption slipped past the CRC
    twice = ScriptedPort([INFO2, HELD2] + [nak(NakReason.BAD_LENGTH, FrameType.INFER_REQ)] * 2)
    with pytest.raises(NakError, match="board refused request type 0x02: bad length"):
        BenchClient(twice, retries=3).infer(IMAGE)
    assert twice.written[2:] == [request(FrameType.INFER_REQ)] * 2     # two attempts, not four
    other = ScriptedPort([INFO2, HELD2, nak(NakReason.UNKNOWN_TYPE, FrameType.INFER_REQ),
                          nak(NakReason.BAD_LENGTH, FrameType.INFER_REQ), nak(NakReason.UNKNOWN_TYPE, FrameType.INFER_REQ),
                          encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    assert BenchClient(other, retries=3).infer(IMAGE) == ANSWER          # different refusals: not the same twice


def test_a_version_1_firmware_is_one_clear_error() -> None:
    """A version-1 board refuses every version-2 frame with BAD_VERSION (detail 1): one line that says what to do."""
    port = ScriptedPort([nak(NakReason.BAD_VERSION, FrameType.INFO_REQ, 1, version=1)] * 2)
    with pytest.raises(NakError) as err:
        BenchClient(port, retries=5).info()
    assert str(err.value) == ("board refused request type 0x01: bad version (the board speaks protocol version 1, "
                              "this bench 2: flash the board with this bench's firmware)")
    assert len(port.written) == 2
    v1_answer = ScriptedPort([encode_frame(FrameType.INFO_RESP, info_payload(2, 1, version=0x0100), version=1)])
    with pytest.raises(ProtocolError, match=r"^board answered with protocol version 1, this bench speaks 2$"):
        BenchClient(v1_answer, retries=5).info()
    assert len(v1_answer.written) == 1


def test_client_skips_stale_frames_and_garbage() -> None:
    info = info_payload(4, 1, board=b"host")
    port = ScriptedPort([b"\x00garbage" + encode_frame(FrameType.INFER_RESP, bytes(10))
                         + encode_frame(FrameType.INFO_RESP, info)])
    assert BenchClient(port).info().board == "host"


def test_client_times_out_with_one_line() -> None:
    port = ScriptedPort([])
    start = time.monotonic()
    with pytest.raises(BenchTimeout, match="stopped answering") as err:
        BenchClient(port, timeout=0.2, retries=1).info()
    assert time.monotonic() - start < 2.0
    assert "\n" not in str(err.value)
