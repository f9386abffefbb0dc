"""Link faults: a lossy link costs retries, never a lost, doubled or wrong row.

The fault injector (``bench.transport.FaultyPort``) is tested on pyserial's own ``loop://``
port; the client's retry rules on the scripted port of test_protocol; the whole run on the
Unicorn emulator at a fault rate of 1 % per byte, and with its serial port vanishing mid-run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serial
import torch

import potnn
from potnn import PoTConv2d, PoTLinear

from bench import results as R
from bench import run as run_mod
from bench.errors import RunError
from bench.protocol import (BenchClient, BenchTimeout, FrameType, InferResult, LoadResult, NakReason, ProtocolError,
                            crc16, encode_frame, load_payload)
from bench.reference import Reference
from bench.run_plan import plan_run
from bench.stream import Inference, stream
from bench.transport import FaultyPort
from firmware_models import export_tiny, mnist_for_subprocess
from test_protocol import ScriptedPort, info_payload, nak, request

REPO = Path(__file__).resolve().parent.parent


def _loop() -> serial.SerialBase:
    return serial.serial_for_url("loop://", timeout=0.05)


# ----------------------------------------------------------------------------- the injector
def test_rate_zero_carries_every_byte_untouched() -> None:
    port = FaultyPort(_loop(), 0.0, seed=1)
    data = bytes(range(256)) * 8
    port.write(data)
    assert port.read(len(data)) == data
    assert port.stats.bytes_out == port.stats.bytes_in == len(data) and not port.stats.faults


def test_a_paced_link_takes_the_byte_time_both_ways() -> None:
    """On an emulator the injector paces the wire as the board's UART does (10 bits a byte)."""
    port = FaultyPort(_loop(), 0.0, seed=1, byte_time_s=10 / 115200)
    data = bytes(range(256)) * 2
    start = time.monotonic()
    port.write(data)
    got = b""
    while len(got) < len(data):
        got += port.read(len(data))
    assert got == data
    assert time.monotonic() - start >= 2 * len(data) * 10 / 115200      # 89 ms for 2 x 512 bytes


@pytest.mark.parametrize("kind", ["drop", "corrupt", "delay"])
def test_each_fault_kind_does_what_it_says(kind: str) -> None:
    data = bytes(range(1, 200))
    port = FaultyPort(_loop(), 1.0, seed=2, kinds=(kind,), max_delay_s=0.003)
    start = time.monotonic()
    port.write(data)
    got = b""
    while time.monotonic() - start < 2 and len(got) < len(data):
        chunk = port.read(4096)
        got += chunk
        if kind == "drop" and not chunk:
            break
    if kind == "drop":
        assert got == b""                                   # every byte lost (on the way out)
        assert port.stats.faults["out", "drop"] == len(data)
    elif kind == "corrupt":
        # corrupted on the way out and again on the way in: XOR with two non-zero values
        assert len(got) == len(data) and port.stats.faults["out", "corrupt"] == len(data)
        assert port.stats.faults["in", "corrupt"] == len(data)
    else:
        assert got == data                                  # late, but whole and in order
        assert time.monotonic() - start >= 0.001 * len(data)


def test_faults_are_reproducible_and_at_the_asked_rate() -> None:
    def once() -> tuple[bytes, dict[str, int]]:
        port = FaultyPort(_loop(), 0.01, seed=42, kinds=("drop", "corrupt"))
        data = bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8))
        out = b""
        for at in range(0, len(data), 1000):          # loop:// holds at most 4096 bytes
            port.write(data[at:at + 1000])
            while chunk := port.read(65536):
                out += chunk
        return out, port.stats.to_dict()

    a, stats = once()
    b, _ = once()
    assert a == b
    faults = sum(v for k, v in stats.items() if not k.startswith("bytes"))
    assert abs(faults - 400) < 4 * np.sqrt(400)             # 2 x 20 000 bytes at 1 %


def test_a_port_that_disappears_raises_serial_exception() -> None:
    port = FaultyPort(_loop(), 0.0, disconnect_after=10)
    port.write(b"12345")
    with pytest.raises(serial.SerialException, match="port disappeared"):
        port.write(b"678901")
    with pytest.raises(serial.SerialException):
        port.read(1)


# ----------------------------------------------------------------------------- client rules
IMAGE = b"abcd"
INFO = encode_frame(FrameType.INFO_RESP, info_payload(len(IMAGE), 1))
HELD = encode_frame(FrameType.LOAD_RESP, LoadResult(len(IMAGE), len(IMAGE)).encode())
ANSWER = InferResult(0, [5], 9, crc16(IMAGE))
LOAD = request(FrameType.LOAD_REQ, load_payload(IMAGE, 0))


def test_a_retry_after_two_silences_first_ends_any_partial_frame_with_filler() -> None:
    # INFO, then a LOAD that gets no answer twice: filler (the longest frame the board takes, plus
    # a margin), whose NAK is awaited and skipped, then the LOAD again and the INFER
    filler = 8 + len(IMAGE) + 2 + BenchClient.FILLER_MARGIN
    port = ScriptedPort([INFO, b"", b"", nak(NakReason.BAD_CRC, FrameType.LOAD_REQ), HELD,
                         encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    client = BenchClient(port, timeout=0.2, infer_timeout=0.2, retries=2)
    assert client.info().rx_capacity == len(IMAGE) + 2
    assert client.infer(IMAGE) == ANSWER
    assert port.written[1:] == [LOAD, LOAD, bytes(filler), LOAD, request(FrameType.INFER_REQ)]
    assert client.stats.to_dict() == {"requests": 3, "attempts": 5, "retries": 2, "recovered": 1,
                                      "no_answer": 2, "corrupt_answers": 0, "naks_retried": 0,
                                      "filler_bytes": filler, "chunks": 1, "reuploads": 0, "late_answers": 0,
                                      "resized": 0}


def test_a_late_answer_to_another_load_is_skipped_not_taken_for_this_ones() -> None:
    """The old failure: after one LOAD answer came late, every later LOAD read the answer to the
    LOAD before it, and the client chased the board's position until it gave up. A LOAD answer
    names the chunk it answers (offset + n), so a late one is skipped."""
    image = bytes(range(8))
    info = encode_frame(FrameType.INFO_RESP, info_payload(len(image), 1))
    late = encode_frame(FrameType.LOAD_RESP, LoadResult(4, 4).encode())        # for the first chunk's retry
    port = ScriptedPort([info, encode_frame(FrameType.LOAD_RESP, LoadResult(4, 4).encode()),
                         late + encode_frame(FrameType.LOAD_RESP, LoadResult(8, 8).encode()),
                         encode_frame(FrameType.INFER_RESP, InferResult(0, [3], 9, crc16(image)).encode())])
    client = BenchClient(port, retries=0)
    client.info()
    client.loss.add(1000, failed=True)          # a lossy link: the image goes in chunks (two of 4 here)
    client.loss.add(1000, failed=False)
    client.MIN_CHUNK = 4
    client.CHUNK_SCALE = 4 * client.loss.per_byte
    assert client.infer(image).logits == [3]
    assert port.written[1:] == [request(FrameType.LOAD_REQ, load_payload(image[:4], 0)),
                                request(FrameType.LOAD_REQ, load_payload(image[4:], 4)), request(FrameType.INFER_REQ)]
    assert client.stats.late_answers == 1 and client.stats.retries == 0


def _eight_byte_client(answers: list[bytes]) -> tuple[BenchClient, ScriptedPort, bytes]:
    """A client for an 8-byte image whose chunks shrink to 4 bytes after one failed attempt."""
    image = bytes(range(8))
    port = ScriptedPort([encode_frame(FrameType.INFO_RESP, info_payload(len(image), 1))] + answers)
    client = BenchClient(port, timeout=0.2, retries=3)
    client.info()
    client.MIN_CHUNK = 4
    client.CHUNK_SCALE = 0.0       # any loss measured at all: chunks of MIN_CHUNK
    return client, port, image


def _load(image: bytes, start: int, end: int) -> bytes:
    return request(FrameType.LOAD_REQ, load_payload(image[start:end], start))


def _held(held: int, end: int) -> bytes:
    return encode_frame(FrameType.LOAD_RESP, LoadResult(held, end).encode())


def test_a_chunk_that_fails_is_sent_again_smaller() -> None:
    """The old failure: the first chunk is the whole image (the link looked clean) and its retries
    repeated it as it was, so a large image on a lossy link almost never got through. The failed
    attempt measures the loss, and the chunk goes again at the size that loss asks for."""
    answer = InferResult(0, [3], 9, crc16(bytes(range(8))))
    client, port, image = _eight_byte_client([nak(NakReason.BAD_CRC, FrameType.LOAD_REQ), _held(4, 4), _held(8, 8),
                                              encode_frame(FrameType.INFER_RESP, answer.encode())])
    assert client.infer(image).logits == [3]
    assert port.written[1:] == [_load(image, 0, 8), _load(image, 0, 4), _load(image, 4, 8),
                                request(FrameType.INFER_REQ)]
    assert client.stats.resized == 1 and client.stats.chunks == 2
    assert client.stats.requests == 4 and client.stats.retries == 1   # the smaller resend is the retry


def test_a_chunk_given_up_but_taken_after_all_is_not_sent_again() -> None:
    """Chunk 4..8 reached the board but its answer was lost, and the loss measured then asks for
    2-byte chunks: the board ignores the smaller 4..6 (not at what it holds, not at 0) and answers that
    it holds all 8 bytes. That is no further than this upload has sent, so the client goes on from
    there (before, it took the board for holding another image's bytes and started over). The chunk
    sizes the loss estimate gives are scripted here: 4, 4, then 2."""
    answer = InferResult(0, [3], 9, crc16(bytes(range(8))))
    client, port, image = _eight_byte_client([_held(4, 4), b"", _held(8, 6),
                                              encode_frame(FrameType.INFER_RESP, answer.encode())])
    sizes = iter([4, 4])
    client._chunk_size = lambda: next(sizes, 2)  # type: ignore[method-assign]
    assert client.infer(image).logits == [3]
    assert port.written[1:] == [_load(image, 0, 4), _load(image, 4, 8), _load(image, 4, 6),
                                request(FrameType.INFER_REQ)]
    assert client.stats.resized == 1


def test_an_answer_for_another_image_sends_the_image_again() -> None:
    """A late INFER answer (to an earlier attempt, for the previous image) names its image: it is not taken."""
    stale = InferResult(0, [8], 9, crc16(b"efgh"))
    port = ScriptedPort([INFO, HELD, encode_frame(FrameType.INFER_RESP, stale.encode()), HELD,
                         encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    client = BenchClient(port, retries=1)
    assert client.infer(IMAGE) == ANSWER                                 # not the stale [8]
    assert port.written[1:] == [LOAD, request(FrameType.INFER_REQ)] * 2
    assert client.stats.reuploads == 1 and client.stats.chunks == 2


def test_answers_for_other_images_only_end_in_one_line() -> None:
    stale = encode_frame(FrameType.INFER_RESP, InferResult(0, [8], 9, crc16(b"efgh")).encode())
    port = ScriptedPort([INFO] + [HELD, stale] * BenchClient.MAX_UPLOADS)
    with pytest.raises(ProtocolError, match=f"answered {BenchClient.MAX_UPLOADS} times for an image other than "
                                            f"the one sent \\(image CRC {crc16(b'efgh'):#06x}"):
        BenchClient(port, retries=1).infer(IMAGE)


def test_a_nak_for_another_type_is_the_link_s_doing() -> None:
    """The board saw the request's TYPE corrupted: however often, that is no refusal of this request."""
    other = ScriptedPort([INFO, HELD] + [nak(NakReason.UNKNOWN_TYPE, 0x42)] * 2
                         + [encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    client = BenchClient(other, retries=2)
    assert client.infer(IMAGE) == ANSWER and client.stats.naks_retried == 2


def test_unlimited_retries_stop_at_the_time_budget() -> None:
    port = ScriptedPort([])
    start = time.monotonic()
    with pytest.raises(BenchTimeout, match=r"board stopped answering \(no answer to request 0x01, \d+ attempts in 0\.\d s\)"):
        BenchClient(port, timeout=0.15, retries=None, budget_s=0.6).info()
    assert 0.6 <= time.monotonic() - start < 2.0 and len(port.written) >= 2


def test_an_answer_that_breaks_its_own_rules_is_asked_again() -> None:
    lying = InferResult(3, [5], 0, crc16(IMAGE))            # class 3 of one logit: corrupted past the CRC
    port = ScriptedPort([INFO, HELD, encode_frame(FrameType.INFER_RESP, lying.encode()),
                         encode_frame(FrameType.INFER_RESP, ANSWER.encode())])
    client = BenchClient(port, retries=2)
    assert client.infer(IMAGE).cls == 0 and client.stats.corrupt_answers == 1


# ----------------------------------------------------------------------------- the run loop
K, N = 10, 12


def _data():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (N, 1, 16, 16)).astype(np.uint8)
    logits = rng.integers(-100, 100, (N, K)).astype(np.int32)
    return images, rng.integers(0, K, N), logits


class LinkBoard:
    """Answers with the reference logits, except for scripted deviations per request number."""

    def __init__(self, images, logits, wrong_at: set[int] = frozenset(), always_wrong: set[int] = frozenset(),
                 noise: bool = False):
        self.by_image = {images[i].tobytes(): i for i in range(len(images))}
        self.logits, self.wrong_at, self.always_wrong, self.noise = logits, wrong_at, always_wrong, noise
        self.calls = 0

    def __call__(self, image: bytes) -> Inference:
        i = self.by_image[image]
        self.calls += 1
        out = [int(v) for v in self.logits[i]]
        if self.calls in self.wrong_at or i in self.always_wrong:
            out[0] += 7
        if self.noise:
            out[1] += self.calls                        # never the same answer twice
        return Inference(int(np.argmax(out)), out, 100)


def test_a_one_off_wrong_answer_is_asked_again_and_not_logged(tmp_path: Path) -> None:
    images, labels, logits = _data()
    ref = Reference(logits)
    plan = plan_run(tmp_path, dict(board="b", model="m", model_hash="h", backend="unicorn"), N, None)
    board = LinkBoard(images, logits, wrong_at={3}, always_wrong={7})
    with R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w:
        res = stream(images, labels, range(N), board, w, ref)
    rows = R.read_rows(plan.run_dir / R.ROWS_CSV)
    assert rows["index"].tolist() == list(range(N))
    assert rows.loc[rows["match"] == 0, "index"].tolist() == [7]      # the firmware's mismatch, confirmed
    assert (R.logits_of(rows)[2] == logits[2]).all()                  # request 3 was image 2: re-asked
    assert res.mismatches == 1 and res.reasked == 2 + 1


def test_answers_that_never_repeat_stop_the_run_without_logging(tmp_path: Path) -> None:
    images, labels, logits = _data()
    ref = Reference(logits)
    plan = plan_run(tmp_path, dict(board="b", model="m", model_hash="h", backend="unicorn"), N, None)
    with R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w, \
            pytest.raises(RunError, match="no two in a row agree; the link corrupts answers"):
        stream(images, labels, range(N), LinkBoard(images, logits, noise=True), w, ref)
    assert len(R.read_rows(plan.run_dir / R.ROWS_CSV)) == 0


# ----------------------------------------------------------------------------- on the emulator
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return export_tiny(tmp_path_factory.mktemp("model"), n_images=160)


def _opts(tiny, tmp_path: Path, build_dir: Path, **kw) -> run_mod.RunOptions:
    labels = np.argmax(tiny.reference, axis=1)
    base = dict(board="ch32v003", header=tiny.header, emulator="unicorn", results=tmp_path / "results",
                build_dir=build_dir, show_progress=False, data=(tiny.images, labels))
    base.update(kw)
    return run_mod.RunOptions(**base)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


def test_a_run_at_fault_rate_one_percent_logs_every_image_once_and_correctly(tiny, tmp_path: Path,
                                                                             build_dir: Path) -> None:
    start = time.monotonic()
    out = run_mod.execute(_opts(tiny, tmp_path, build_dir, limit=20, fault_rate=0.01, fault_seed=1))
    wall = time.monotonic() - start
    s = out.summary
    assert s is not None and s["n"] == 20 and s["mismatches"] == 0 and s["fault_rate"] == 0.01
    rows = R.read_rows(out.run_dir / R.ROWS_CSV)
    assert rows["index"].tolist() == list(range(20))                  # each image exactly once
    assert (R.logits_of(rows) == tiny.reference[:20]).all()           # and every result correct
    link = s["link"]
    assert link["retries"] > 10 and link["drop_out"] + link["corrupt_out"] + link["drop_in"] > 20
    print(f"\nfault rate 0.01, 20 images in {wall:.1f} s: {link}")
    assert f"link: {link['requests']} requests ({link['chunks']} image chunks), {link['retries']} retries" \
        in run_mod.format_summary(s, out.run_dir)
    assert link["chunks"] > 20                                        # the loss it measured split images
    infers = 20 + link["reasked"] + link["reuploads"]                 # each image asked, again, or sent again
    assert link["requests"] == 2 + link["chunks"] + infers            # and INFO before and after


class _Colour(torch.nn.Module):
    """3 x 16 x 16 inputs: a 768-byte image, three times the MNIST models' (one frame of it crosses a
    link losing 1 % of its bytes about once in 2,500 tries)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(3, 4, 3, stride=2, padding=1)
        self.fc = PoTLinear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_a_large_image_at_fault_rate_one_percent_gets_through_in_smaller_chunks(tmp_path: Path,
                                                                                 build_dir: Path) -> None:
    """Seed 3 once stopped this run at its first image: the first chunk, the whole image, was retried as
    it was for 30 s. Now the failed attempts shrink it, and every image is logged once and correctly."""
    torch.manual_seed(3)
    model = _Colour().eval()
    config = potnn.Config(mean=0.4, std=0.3, input_h=16, input_w=16, input_channels=3, layer_encodings={"fc": "fp130"})
    images = np.random.default_rng(3).integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    potnn.calibrate(model, [((torch.from_numpy(images).float() / 255 - 0.4) / 0.3,)], config)
    potnn.prepare_qat(model, config)
    potnn.export(model, tmp_path / "colour.h", config)
    reference = potnn.simulate(model, images)
    out = run_mod.execute(run_mod.RunOptions(board="ch32v003", header=tmp_path / "colour.h", emulator="unicorn",
                                             results=tmp_path / "results", build_dir=build_dir / "colour",
                                             show_progress=False, data=(images, reference.argmax(1)),
                                             fault_rate=0.01, fault_seed=3))
    s = out.summary
    assert s is not None and s["n"] == 6 and s["mismatches"] == 0
    rows = R.read_rows(out.run_dir / R.ROWS_CSV)
    assert rows["index"].tolist() == list(range(6)) and (R.logits_of(rows) == reference).all()
    assert s["link"]["resized"] > 0


def test_a_port_that_disappears_mid_run_keeps_its_rows_and_resume_finishes(tiny, tmp_path: Path, build_dir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.emulator as emulator_pkg

    real_launch = emulator_pkg.launch
    launched: list = []

    def launch_and_remember(*a, **kw):
        emu = real_launch(*a, **kw)
        launched.append(emu)
        return emu

    monkeypatch.setattr(emulator_pkg, "launch", launch_and_remember)
    results = tmp_path / "results"

    def pull_the_plug() -> None:                      # the emulator's serial port goes away
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = list(results.glob(f"*/{R.ROWS_CSV}"))
            if launched and rows and rows[0].read_text().count("\n") > 10:
                launched[0].bridge.close()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=pull_the_plug, daemon=True)
    watcher.start()
    with pytest.raises(RunError) as e:
        run_mod.execute(_opts(tiny, tmp_path, build_dir, limit=160))
    watcher.join(5)
    msg = str(e.value)
    assert msg.startswith("lost the serial port socket://127.0.0.1:") and "\n" not in msg
    run_dir = next(results.iterdir())
    kept = R.read_rows(run_dir / R.ROWS_CSV, allow_torn_tail=True)
    assert f"{len(kept)} of 160 inputs are logged in {run_dir}" in msg
    assert f"finish the run with: potnn-bench run --board ch32v003 --header {tiny.header} --emulator unicorn " \
           f"--build-dir {build_dir} " in msg                       # the resume runs where the first part ran
    assert msg.endswith(f" --results {results} --resume {run_dir.name}")
    assert 10 <= len(kept) < 160
    monkeypatch.setattr(emulator_pkg, "launch", real_launch)
    done = run_mod.execute(_opts(tiny, tmp_path, build_dir, resume=run_dir.name))
    assert done.run_dir == run_dir and done.summary is not None and done.summary["n"] == 160
    rows = R.read_rows(run_dir / R.ROWS_CSV)
    assert rows["index"].tolist()[: len(kept)] == kept["index"].tolist()
    assert sorted(rows["index"]) == list(range(160)) and rows["index"].is_unique
    assert (R.logits_of(rows.sort_values("index")) == tiny.reference).all()


def test_fault_rate_from_the_command_line(tmp_path: Path, build_dir: Path) -> None:
    """``potnn-bench run --fault-rate``: the real CLI path with MNIST (the data the bundle names)."""
    _, env = mnist_for_subprocess()
    m = export_tiny(tmp_path, n_images=2)
    r = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--board", "ch32v003", "--header", str(m.header),
                        "--emulator", "unicorn", "--limit", "8", "--fault-rate", "0.01", "--fault-seed", "3",
                        "--results", str(tmp_path / "r"), "--build-dir", str(build_dir)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "mismatches 0" in r.stdout and "fault rate 0.01: drop_out" in r.stdout
