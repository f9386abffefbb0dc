"""The bench application built for the host, its UART a pty: the protocol end to end.

The same app.c and protocol.c as on the boards; only the port (chips/host/chip.c) differs.
Results must equal potnn.simulate bit for bit, errors must be NAKed with their reason, and the
parser must shrug off garbage and cut-off frames.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import serial

from bench.build import HostBuild, build_host, model_hash
from bench.frames import LoadResult
from bench.protocol import (BenchClient, FrameDecoder, FrameType, InferResult, NakReason, crc16,
                            encode_frame, load_payload)
from firmware_models import ExportedModel, export_tiny


class HostFirmware:
    """One running bench-host process and a pyserial port on its pty."""

    def __init__(self, exe: Path):
        self.proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split() if self.proc.stdout else []
        assert line[:1] == ["PTY"], f"bench-host did not announce its pty: {line}"
        self.path = line[1]
        self.port = serial.Serial(self.path, 115200, timeout=0.05)

    def exchange(self, wire: bytes, wait: float = 0.3) -> list:
        """Send raw bytes, collect the frames that come back within ``wait`` seconds."""
        self.port.write(wire)
        deadline, decoder, events = time.monotonic() + wait, FrameDecoder(), []
        while time.monotonic() < deadline:
            events += decoder.feed(self.port.read(4096))
            if events and not decoder.busy and not self.port.in_waiting:
                break
        return events

    def close(self) -> str:
        self.port.close()
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=5)
        return err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    return export_tiny(tmp_path_factory.mktemp("model"), n_images=48)


@pytest.fixture(scope="module")
def host_build(tiny: ExportedModel, tmp_path_factory: pytest.TempPathFactory) -> HostBuild:
    return build_host(tiny.header, tmp_path_factory.mktemp("host"))


@pytest.fixture(scope="module")
def fw(host_build: HostBuild) -> Iterator[HostFirmware]:
    f = HostFirmware(host_build.exe)
    yield f
    f.close()


def _nak(events: list) -> tuple[int, int, int]:
    assert len(events) == 1 and events[0].type == FrameType.NAK, events
    p = events[0].payload
    return p[0], p[1], int.from_bytes(p[2:4], "little")


def test_info_describes_the_build(fw: HostFirmware, tiny: ExportedModel) -> None:
    info = BenchClient(fw.port).info()
    assert info.model_hash == model_hash(tiny.header)
    assert (info.input_size, info.num_classes, info.rx_capacity) == (256, 10, 258)
    assert (info.firmware_version, info.board, info.counter_bits, info.clock_hz) == ("2.0", "host", 32, 10**9)


def test_inference_equals_potnn_simulate(fw: HostFirmware, tiny: ExportedModel) -> None:
    client = BenchClient(fw.port)
    for image, ref in zip(tiny.images, tiny.reference):
        r = client.infer(image.tobytes())
        assert r.logits == [int(v) for v in ref]
        assert r.cls == int(np.argmax(ref))            # first largest, like potnn_predict
        assert r.cycles > 0                             # host: nanoseconds
        assert r.image_crc == crc16(image.tobytes())


def _load(fw: HostFirmware, data: bytes, offset: int) -> int:
    """One LOAD chunk; the bytes the board says it holds (its answer names the chunk's end)."""
    events = fw.exchange(encode_frame(FrameType.LOAD_REQ, load_payload(data, offset)))
    assert len(events) == 1 and events[0].type == FrameType.LOAD_RESP, events
    answer = LoadResult.decode(events[0].payload)
    assert answer.end == offset + len(data)
    return answer.held


def test_an_image_in_chunks_is_held_in_order_and_answered_once(fw: HostFirmware, tiny: ExportedModel) -> None:
    image = tiny.images[7].tobytes()
    assert _load(fw, b"", 0) == 0                                       # forget any partial image
    assert _load(fw, image[:100], 0) == 100
    assert _load(fw, image[100:200], 100) == 200
    assert _load(fw, image[150:200], 150) == 200                        # a duplicate changes nothing
    again = encode_frame(FrameType.LOAD_REQ, load_payload(image[100:200], 100))
    assert _nak(fw.exchange(again)) == (NakReason.TOO_LONG, 3, 58)     # longer than the room: 258 - 200
    assert _load(fw, image[250:], 250) == 200                           # nor does a stray chunk
    assert _load(fw, image[200:], 200) == 256
    answer = fw.exchange(encode_frame(FrameType.INFER_REQ))
    r = InferResult.decode(answer[0].payload)
    assert r.logits == [int(v) for v in tiny.reference[7]] and r.image_crc == crc16(image)
    again = fw.exchange(encode_frame(FrameType.INFER_REQ))              # no new image: the same answer
    assert again == answer
    assert _load(fw, image[:100], 0) == 100                             # the next image begins at 0
    assert _load(fw, image[:50], 0) == 0                                # offset 0 again: start over
    assert _load(fw, b"", 0) == 0


def test_bad_crc_is_naked(fw: HostFirmware) -> None:
    wire = bytearray(encode_frame(FrameType.LOAD_REQ, load_payload(bytes(100), 0)))
    wire[50] ^= 0x01
    assert _nak(fw.exchange(bytes(wire))) == (NakReason.BAD_CRC, FrameType.LOAD_REQ, 0)


def test_a_frame_that_lost_bytes_gets_a_nak_not_a_timeout(fw: HostFirmware) -> None:
    """The padding after a request completes a frame that lost bytes on the way: the board NAKs
    it at once (a partial frame dropped at the inter-byte timeout would get no answer at all)."""
    wire = encode_frame(FrameType.LOAD_REQ, load_payload(bytes(100), 0)) + bytes(BenchClient.TRAIL)
    start = time.monotonic()
    events = fw.exchange(wire[:40] + wire[43:], wait=1.0)                 # three bytes lost
    assert _nak(events) == (NakReason.BAD_CRC, FrameType.LOAD_REQ, 0)
    assert time.monotonic() - start < 0.5


def test_unknown_type_is_naked(fw: HostFirmware) -> None:
    assert _nak(fw.exchange(encode_frame(0x42, b"xyz"))) == (NakReason.UNKNOWN_TYPE, 0x42, 0)


def test_wrong_lengths_are_naked_with_the_length_expected(fw: HostFirmware) -> None:
    assert _nak(fw.exchange(encode_frame(FrameType.INFER_REQ, bytes(100)))) == (NakReason.BAD_LENGTH, 2, 0)
    assert _nak(fw.exchange(encode_frame(FrameType.INFO_REQ, b"x"))) == (NakReason.BAD_LENGTH, 1, 0)
    assert _nak(fw.exchange(encode_frame(FrameType.LOAD_REQ, b"x"))) == (NakReason.BAD_LENGTH, 3, 2)
    with pytest.raises(ValueError, match="an image of 10 bytes, but the board's model takes 256"):
        BenchClient(fw.port).infer(bytes(10))


def test_length_above_the_room_is_naked_at_the_header(fw: HostFirmware) -> None:
    header = bytes([0xA5, 0x5A, 2, FrameType.LOAD_REQ]) + (5000).to_bytes(2, "little")   # no payload follows
    assert _nak(fw.exchange(header)) == (NakReason.TOO_LONG, 3, 258)
    assert BenchClient(fw.port).info().input_size == 256                # and it is hunting again
    assert _load(fw, bytes(100), 0) == 100                              # the room shrinks as the image grows
    header = bytes([0xA5, 0x5A, 2, FrameType.LOAD_REQ]) + (159).to_bytes(2, "little")
    assert _nak(fw.exchange(header)) == (NakReason.TOO_LONG, 3, 158)
    assert _load(fw, b"", 0) == 0


def test_other_protocol_version_is_naked(fw: HostFirmware) -> None:
    assert _nak(fw.exchange(encode_frame(FrameType.INFO_REQ, version=7))) == (NakReason.BAD_VERSION, 1, 2)


def test_garbage_then_requests_still_work(fw: HostFirmware, tiny: ExportedModel) -> None:
    client = BenchClient(fw.port)
    before = client.info().rx_dropped
    garbage = bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)).replace(b"\xa5", b"\x00")
    fw.port.write(garbage)
    r = client.infer(tiny.images[3].tobytes())
    assert r.logits == [int(v) for v in tiny.reference[3]]
    assert client.stats.attempts == 3                 # INFO, one LOAD, INFER: the garbage cost no retry
    padding = BenchClient.TRAIL * client.stats.attempts   # each request's zeros, dropped between frames
    assert client.info().rx_dropped == min(before + len(garbage) + padding, 0xFFFF)


def test_a_cut_off_frame_is_dropped_after_a_quiet_gap(fw: HostFirmware, tiny: ExportedModel) -> None:
    fw.port.write(encode_frame(FrameType.LOAD_REQ, load_payload(bytes(256), 0))[:100])
    time.sleep(0.2)                                     # > the 50 ms inter-byte timeout
    r = BenchClient(fw.port, retries=0).infer(tiny.images[5].tobytes())
    assert r.logits == [int(v) for v in tiny.reference[5]]


def test_parser_survives_random_bytes_under_sanitizers(tiny: ExportedModel, tmp_path: Path) -> None:
    """A short fuzz smoke test; the fuzzing issue hammers protocol.c much harder."""
    if os.environ.get("POTNN_SKIP_ASAN"):
        pytest.skip("POTNN_SKIP_ASAN set")
    exe = build_host(tiny.header, tmp_path, sanitize=True).exe
    f = HostFirmware(exe)
    try:
        rng = np.random.default_rng(7)
        for _ in range(40):
            chunk = bytes(rng.integers(0, 256, 1500, dtype=np.uint8))
            if rng.random() < 0.5:                       # plant plausible headers with random lengths
                chunk += bytes([0xA5, 0x5A, 2, int(rng.integers(0, 4))]) + bytes(rng.integers(0, 256, 2, dtype=np.uint8))
            f.port.write(chunk)
            f.port.read(65536)
        time.sleep(0.2)
        f.port.reset_input_buffer()
        assert BenchClient(f.port).info().board == "host"
    finally:
        err = f.close()
    assert "runtime error" not in err and "AddressSanitizer" not in err, err


def test_crc_check_value_matches_firmware_definition() -> None:
    assert crc16(b"123456789") == 0x29B1
