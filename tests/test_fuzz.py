"""Protocol fuzzing: malformed frames against the real firmware, checked by an exact model.

What is shown here (small counts; ``tests/benchmarks/test_reliability_benchmark.py`` runs the
large ones): a few thousand malformed frames per board on the emulator with every answer as
PROTOCOL.md predicts; the model agrees byte for byte with the host build under ASan/UBSan; the
fuzzer really fails on a hang, a fault and a wrong answer; the CLI prints the counts and exits
non-zero on a failure; and the coverage harness (firmware/fuzz/fuzz_protocol.c) builds, replays
its seeds under sanitizers and finds an overflow planted in a copy of the parser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import serial

from bench.build import build, build_host
from bench.fuzz import fuzz_emulated
from bench.fuzz.campaign import FuzzFailure, Fuzzer, FuzzTarget
from bench.fuzz.cases import FRAME_KINDS, write_seed_corpus
from bench.fuzz.coverage import build_libfuzzer
from bench.fuzz.oracle import FirmwareModel
from bench.protocol import FrameType, NakReason, encode_frame, load_payload
from bench.transport import FaultyPort
from firmware_models import export_tiny, rewrite_header, write_bundle

REPO = Path(__file__).resolve().parent.parent
BOARDS = ["ch32v003", "py32f003"]
FRAMES_PER_BOARD = 3000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return export_tiny(tmp_path_factory.mktemp("model"), n_images=16)


def _refs(tiny) -> dict[bytes, list[int]]:
    return {tiny.images[i].tobytes(): [int(v) for v in tiny.reference[i]] for i in range(len(tiny.images))}


# ----------------------------------------------------------------------------- the model
def test_model_predicts_the_documented_naks() -> None:
    """The PROTOCOL.md table, row by row, on the model alone."""
    m = FirmwareModel(capacity=258, input_size=256)
    too_long = bytes([0xA5, 0x5A, 2, FrameType.LOAD_REQ]) + (5000).to_bytes(2, "little")
    assert [e.payload for e in m.feed(too_long)] == [bytes([NakReason.TOO_LONG, 3]) + (258).to_bytes(2, "little")]
    bad = bytearray(encode_frame(FrameType.INFO_REQ))
    bad[-1] ^= 1
    assert m.feed(bytes(bad))[0].payload == bytes([NakReason.BAD_CRC, 1, 0, 0])
    assert m.feed(encode_frame(FrameType.INFO_REQ, version=7))[0].payload == bytes([NakReason.BAD_VERSION, 1, 2, 0])
    assert m.feed(encode_frame(0x42, b"xyz"))[0].payload == bytes([NakReason.UNKNOWN_TYPE, 0x42, 0, 0])
    assert m.feed(encode_frame(FrameType.INFER_REQ, bytes(10)))[0].payload == bytes([NakReason.BAD_LENGTH, 2, 0, 0])
    assert m.feed(encode_frame(FrameType.LOAD_REQ, b"x"))[0].payload == bytes([NakReason.BAD_LENGTH, 3, 2, 0])
    # the room shrinks behind the bytes held: a LEN above it is refused at the header
    assert [e.held for e in m.feed(encode_frame(FrameType.LOAD_REQ, load_payload(bytes(100), 0)))] == [100]
    too_long = bytes([0xA5, 0x5A, 2, FrameType.LOAD_REQ]) + (159).to_bytes(2, "little")
    assert m.feed(too_long)[0].payload == bytes([NakReason.TOO_LONG, 3]) + (158).to_bytes(2, "little")
    assert [(e.kind, e.fresh) for e in m.feed(encode_frame(FrameType.INFER_REQ))] == [("infer", True)]
    # a cut-off frame swallows the start of the next one; filler ends it with a bad CRC
    assert m.feed(encode_frame(FrameType.LOAD_REQ, load_payload(bytes(156), 100))[:100]) == [] and m.busy
    filler, events = m.complete()
    assert not m.busy and len(filler) == 8 + 158 - 100 and events[0].payload[0] == NakReason.BAD_CRC
    dropped = m.dropped
    m.feed(b"\x00\x01\xa5\x00junk")
    assert m.dropped == dropped + 2 + 4 and m.naks == 8


def test_model_reports_the_counters_as_each_frame_ends() -> None:
    """INFO counts the garbage before it, not the garbage that follows in the same write; the
    counters saturate at 0xFFFF like the firmware's."""
    m = FirmwareModel(capacity=16, input_size=16)
    answers = m.feed(b"xy" + encode_frame(FrameType.INFO_REQ) + b"zzzz")
    assert [(a.kind, a.dropped, a.naks) for a in answers] == [("info", 2, 0)] and m.dropped == 6
    full = FirmwareModel(capacity=16, input_size=16, dropped=0xFFFE, naks=0xFFFF)
    assert full.feed(b"abc" + encode_frame(0x42))[0].payload[0] == NakReason.UNKNOWN_TYPE
    assert (full.dropped, full.naks) == (0xFFFF, 0xFFFF)


def test_model_agrees_with_the_host_build_under_sanitizers(tiny, tmp_path: Path) -> None:
    """2000 frames into the pty of the ASan/UBSan host build: same NAKs, counters and logits."""
    if os.environ.get("POTNN_SKIP_ASAN"):
        pytest.skip("POTNN_SKIP_ASAN set")
    exe = build_host(tiny.header, tmp_path, sanitize=True).exe
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pty = proc.stdout.readline().split()[1]
        port = serial.Serial(pty, 115200, timeout=0.05)
        stats = Fuzzer(FuzzTarget(port, partial_timeout_s=0.3, name="host"), _refs(tiny), seed=11,
                       timeouts=3).run(2000)
        port.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "AddressSanitizer" not in err and "runtime error" not in err, err
    assert stats.malformed == 2000 and stats.timeouts == 3
    assert stats.valid["INFO"] > 100 and stats.valid["INFER"] > 50


# ----------------------------------------------------------------------------- the emulator
@pytest.mark.parametrize("board", BOARDS)
def test_a_few_thousand_malformed_frames_per_board(tiny, tmp_path: Path, board: str) -> None:
    fw = build(board, tiny.header, tmp_path / board)
    stats = fuzz_emulated(board, fw.elf, _refs(tiny), FRAMES_PER_BOARD, seed=7, expected_hash=fw.model_hash)
    print(f"\nfuzz {board}: " + "\n".join(stats.lines()))
    assert stats.malformed == FRAMES_PER_BOARD
    assert all(stats.frames[k] > 100 for k in FRAME_KINDS) and stats.bursts > 10
    assert set(stats.naks) == {r.value for r in NakReason}            # every NAK reason, each as predicted
    assert stats.valid["INFO"] > 300 and stats.valid["INFER"] > 200
    assert stats.timeouts >= 2                                         # partial frames left to the firmware
    assert stats.info["naks_sent"] == sum(stats.naks.values())         # the firmware's own count agrees


HAZARD_HEADER = """/* potnn export v2: synthetic header for the fuzzer's failure tests */
#include <stdint.h>
#define POTNN_EXPORT_VERSION 2
#define POTNN_INPUT_C 1
#define POTNN_INPUT_H 16
#define POTNN_INPUT_W 16
#define POTNN_INPUT_SIZE 256
#define POTNN_NUM_CLASSES 10
#define POTNN_RAM_BYTES 0
#define POTNN_WEIGHT_BYTES 0
int potnn_predict(const uint8_t *input, int32_t *logits);
uint8_t *potnn_input_buffer(void);
static uint8_t potnn_in[POTNN_INPUT_SIZE + 2];
uint8_t *potnn_input_buffer(void)
{
    return potnn_in;
}
int potnn_predict(const uint8_t *input, int32_t *logits)
{
    volatile uint32_t spin = 0;
    int k, best = 0;
    if (input[0] == 0x42u)                 /* hang */
        for (;;)
            spin++;
    if (input[0] == 0x43u)                 /* store to an address the chip does not have */
        *(volatile uint32_t *)0x30000000u = spin;
    for (k = 0; k < POTNN_NUM_CLASSES; k++) {
        int32_t v = (int32_t)input[k] - k;
        if (logits)
            logits[k] = v;
        if (v > (int32_t)input[best] - best)
            best = k;
    }
    return best;
}
"""


def _hazard_logits(image: bytes) -> list[int]:
    return [image[k] - k for k in range(10)]


@pytest.fixture(scope="module")
def hazard_fw(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("hazard")
    header = d / "hazard.h"
    header.write_text(HAZARD_HEADER)
    write_bundle(header, (1, 16, 16), 10)
    return header, build("ch32v003", header, d / "build")


@pytest.mark.parametrize("trigger, kind", [(0x42, "hang"), (0x43, "unmapped-write")])
def test_the_fuzzer_fails_on_a_hang_and_on_a_fault(hazard_fw, trigger: int, kind: str) -> None:
    _, fw = hazard_fw
    ok = bytes([1]) + bytes(range(1, 256))
    bad = bytes([trigger]) + ok[1:]
    refs = {ok: _hazard_logits(ok), bad: _hazard_logits(bad)}
    with pytest.raises(FuzzFailure) as e:
        fuzz_emulated("ch32v003", fw.elf, refs, 2000, seed=3, launch_opts={"hang_instructions": 3_000_000})
    msg = str(e.value)
    assert "faulted" in msg and kind in msg and "seed 3" in msg and "\n" not in msg


def test_the_fuzzer_fails_on_a_wrong_answer(hazard_fw) -> None:
    _, fw = hazard_fw
    image = bytes([1]) + bytes(range(1, 256))
    wrong = _hazard_logits(image)
    wrong[3] += 1                                   # the firmware is right; the reference says otherwise
    with pytest.raises(FuzzFailure, match="INFER answer differs from the reference"):
        fuzz_emulated("ch32v003", fw.elf, {image: wrong}, 2000, seed=4)


def test_the_fuzzer_notices_a_single_corrupted_byte(tiny, tmp_path: Path) -> None:
    """Over a link that corrupts about one byte in 400, the exact oracle must object."""
    from bench.emulator import launch

    fw = build("ch32v003", tiny.header, tmp_path / "b")
    with launch("ch32v003", fw.elf) as emu:
        port = FaultyPort(emu.open_serial(timeout=0.05), 0.0025, seed=5, kinds=("corrupt",))
        with pytest.raises(FuzzFailure, match="wrong answer|corrupt frame|INFO counts|differs|hung"):
            Fuzzer(FuzzTarget(port), _refs(tiny), seed=5, answer_timeout_s=3).run(2000)
    assert sum(port.stats.faults.values()) >= 1


# ----------------------------------------------------------------------------- the CLI
def test_cli_prints_the_counts_and_passes(tiny, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "bench.cli", "fuzz", "--board", "ch32v003", "--header",
                        str(tiny.header), "--frames", "400", "--seed", "21", "--no-reference",
                        "--build-dir", str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "seed 21" in r.stdout and "malformed frames 400" in r.stdout
    assert "fuzz passed: 400 malformed frames, no hang, no fault, no wrong answer" in r.stdout


def test_cli_exits_non_zero_on_a_wrong_answer(tmp_path: Path) -> None:
    """The real CLI path: a bundle whose potnn.simulate disagrees with the header's code (as a C bug would)."""
    header = export_tiny(tmp_path, n_images=2).header
    rewrite_header(header, HAZARD_HEADER)      # the tiny model's program, the hazard header's answers
    r = subprocess.run([sys.executable, "-m", "bench.cli", "fuzz", "--board", "ch32v003", "--header", str(header),
                        "--frames", "300", "--seed", "8", "--build-dir", str(tmp_path / "b")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fuzz FAILED: INFER answer differs from the reference")
    assert "reproduce with: potnn-bench fuzz --board ch32v003 --frames 300 --seed 8" in err[0]
    assert "Traceback" not in r.stderr
    assert "malformed frames" in r.stdout and "valid requests answered correctly" in r.stdout   # the counts


# ----------------------------------------------------------------------------- coverage harness
def test_coverage_harness_replays_its_seeds_under_sanitizers(tmp_path: Path) -> None:
    if os.environ.get("POTNN_SKIP_ASAN"):
        pytest.skip("POTNN_SKIP_ASAN set")
    exe = build_libfuzzer(tmp_path / "replay", standalone=True)
    corpus = write_seed_corpus(tmp_path / "corpus")
    r = subprocess.run([str(exe), *map(str, sorted(corpus.iterdir()))], capture_output=True, text=True,
                       env={**os.environ, "FUZZ_RANDOM": "3000"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "replayed 64 files and 3000 random inputs" in r.stdout


def test_coverage_harness_finds_an_overflow_planted_in_the_parser(tmp_path: Path) -> None:
    """A parser that accepts 64 bytes more than its buffer: the sanitizers must stop it."""
    if os.environ.get("POTNN_SKIP_ASAN"):
        pytest.skip("POTNN_SKIP_ASAN set")
    src = (REPO / "firmware" / "protocol.c").read_text()
    assert "if (rx->length > rx->capacity) {" in src
    broken = tmp_path / "protocol.c"
    broken.write_text(src.replace("if (rx->length > rx->capacity) {", "if (rx->length > rx->capacity + 64u) {"))
    exe = build_libfuzzer(tmp_path / "broken", standalone=True, protocol_c=broken)
    crash = tmp_path / "crash"
    crash.write_bytes(b"\x00" + encode_frame(FrameType.INFER_REQ, bytes(300)))
    r = subprocess.run([str(exe), str(crash)], capture_output=True, text=True,
                       env={**os.environ, "FUZZ_RANDOM": "0"}, timeout=120)
    assert r.returncode != 0 and "AddressSanitizer" in r.stderr and "buffer-overflow" in r.stderr


def test_libfuzzer_target_builds_and_runs_where_clang_is_installed(tmp_path: Path) -> None:
    if not shutil.which("clang"):
        pytest.skip("clang not installed (apt-get install clang): the coverage fuzzer needs libFuzzer")
    exe = build_libfuzzer(tmp_path / "lf")
    corpus = write_seed_corpus(tmp_path / "corpus")
    r = subprocess.run([str(exe), "-runs=3000", "-max_len=4096", str(corpus)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 3000 runs" in r.stderr
