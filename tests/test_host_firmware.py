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
from bench.protocol import (BenchClient, FrameDecoder, FrameType, NakError, NakReason, crc16, encode_frame)
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
    assert (info.input_size, info.num_classes, info.rx_capacity) == (256, 10, 256)
    assert (info.firmware_version, info.board, info.counter_bits, info.clock_hz) == ("1.0", "host", 32, 10**9)


def test_inference_equals_potnn_simulate(fw: HostFirmware, tiny: ExportedModel) -> None:
    client = BenchClient(fw.port)
    for image, ref in zip(tiny.images, tiny.reference):
        r = client.infer(image.tobytes())
        assert r.logits == [int(v) for v in ref]
        assert r.cls == int(np.argmax(ref))            # first largest, like potnn_predict
        assert r.cycles > 0                             # host: nanoseconds


def test_bad_crc_is_naked(fw: HostFirmware) -> None:
    wire = bytearray(encode_frame(FrameType.INFER_REQ, bytes(256)))
    wire[100] ^= 0x01
    assert _nak(fw.exchange(bytes(wire))) == (NakReason.BAD_CRC, FrameType.INFER_REQ, 0)


def test_unknown_type_is_naked(fw: HostFirmware) -> None:
    assert _nak(fw.exchange(encode_frame(0x42, b"xyz"))) == (NakReason.UNKNOWN_TYPE, 0x42, 0)


def test_wrong_image_size_is_naked_with_the_expected_size(fw: HostFirmware) -> None:
    assert _nak(fw.exchange(encode_frame(FrameType.INFER_REQ, bytes(100)))) == (NakReason.BAD_LENGTH, 2, 256)
    assert _nak(fw.exchange(encode_frame(FrameType.INFO_REQ, b"x"))) == (NakReason.BAD_LENGTH, 1, 0)
    with pytest.raises(NakError, match="bad length.*256"):
        BenchClient(fw.port).infer(bytes(10))


def test_length_above_capacity_is_naked_at_the_header(fw: HostFirmware) -> None:
    header = bytes([0xA5, 0x5A, 1, 2]) + (5000).to_bytes(2, "little")   # no payload follows
    assert _nak(fw.exchange(header)) == (NakReason.BAD_LENGTH, 2, 256)
    assert BenchClient(fw.port).info().input_size == 256                # and it is hunting again


def test_other_protocol_version_is_naked(fw: HostFirmware) -> None:
    assert _nak(fw.exchange(encode_frame(FrameType.INFO_REQ, version=7))) == (NakReason.BAD_VERSION, 1, 1)


def test_garbage_then_requests_still_work(fw: HostFirmware, tiny: ExportedModel) -> None:
    client = BenchClient(fw.port)
    before = client.info().rx_dropped
    garbage = bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)).replace(b"\xa5", b"\x00")
    fw.port.write(garbage)
    r = client.infer(tiny.images[3].tobytes())
    assert r.logits == [int(v) for v in tiny.reference[3]]
    assert client.info().rx_dropped == min(before + len(garbage), 0xFFFF)


def test_a_cut_off_frame_is_dropped_after_a_quiet_gap(fw: HostFirmware, tiny: ExportedModel) -> None:
    fw.port.write(encode_frame(FrameType.INFER_REQ, bytes(256))[:100])
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
                chunk += bytes([0xA5, 0x5A, 1, int(rng.integers(0, 4))]) + bytes(rng.integers(0, 256, 2, dtype=np.uint8))
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
