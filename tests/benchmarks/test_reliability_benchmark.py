"""Benchmark: the bench's reliability (fuzzing, link faults, libFuzzer) at counts too large for CI.

Run: ``pytest -m benchmark -s tests/benchmarks/test_reliability_benchmark.py``. Prints

- the protocol fuzzer's counts per board (``POTNN_FUZZ_FRAMES`` malformed frames, default
  20 000, on the Unicorn emulator, every answer checked against the protocol model);
- runs through the fault-injecting link at 0, 1, 2 and 5 % per byte (``POTNN_FAULT_IMAGES``
  images each, default 100), as a table: images/s (and the share of the clean run's), retries,
  attempts, image chunks, late answers skipped, faults injected, rows logged, each exactly once
  and equal to ``potnn.simulate``, mismatches; at 1 % a run must keep a quarter of its clean
  throughput. The injector paces the link at the board's 115200 baud, as the board's UART would
  (``bench.transport`` says why); the emulator's own, unpaced link is printed beside it;
- the coverage-guided libFuzzer campaign on the host build of app.c + protocol.c under
  ASan/UBSan (``POTNN_LIBFUZZER_SECONDS``, default 60): executions, edges covered, corpus.
  Needs clang with libFuzzer (``apt-get install clang``); skipped with that reason otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bench import fuzz
from bench import results as R
from bench import run as run_mod
from bench.board import list_boards
from bench.build import build
from bench.fuzz.cases import write_seed_corpus
from bench.fuzz.coverage import build_libfuzzer
from firmware_models import export_tiny

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    n = int(os.environ.get("POTNN_FAULT_IMAGES", "100"))
    return export_tiny(tmp_path_factory.mktemp("model"), n_images=max(n, 16))


@pytest.mark.parametrize("board", list_boards())
def test_fuzz_counts_per_board(tiny, tmp_path: Path, board: str) -> None:
    frames = int(os.environ.get("POTNN_FUZZ_FRAMES", "20000"))
    fw = build(board, tiny.header, tmp_path / board)
    refs = {tiny.images[i].tobytes(): [int(v) for v in tiny.reference[i]] for i in range(16)}
    stats = fuzz.fuzz_emulated(board, fw.elf, refs, frames, seed=2024, expected_hash=fw.model_hash, timeouts=5)
    print(f"\nfuzz {board}, {frames} malformed frames, seed 2024: passed")
    print("\n".join(stats.lines()))
    assert stats.malformed == frames


#: Fault rates per byte (both directions) of the link benchmark; the first is the clean run.
FAULT_RATES = (0.0, 0.01, 0.02, 0.05)
#: At 1 % per byte a run keeps at least this share of its clean throughput (issue 18).
KEEP_AT_ONE_PERCENT = 0.25


def _timed_run(opts: run_mod.RunOptions) -> tuple[run_mod.RunOutcome, float]:
    """A run and its streaming time: from the line that says how many inputs are to go (after
    the build, the boot and INFO) to the end of the run."""
    marks: list[float] = []

    def say(line: str) -> None:
        if "to go" in line:
            marks.append(time.monotonic())

    out = run_mod.execute(opts, say=say)
    return out, time.monotonic() - marks[0]


def test_runs_through_a_lossy_link(tiny, tmp_path: Path) -> None:
    """The real firmware on the emulator through ``--fault-rate`` 0, 1, 2 and 5 % per byte: every
    image logged exactly once and equal to potnn.simulate, and at 1 % at least a quarter of the
    clean throughput."""
    n = len(tiny.images)
    labels = np.argmax(tiny.reference, axis=1)
    base = run_mod.RunOptions(board="ch32v003", header=tiny.header, emulator="unicorn", build_dir=tmp_path / "b",
                              results=tmp_path / "r", show_progress=False, data=(tiny.images, labels), fault_seed=7)
    direct, direct_wall = _timed_run(dataclasses.replace(base, results=tmp_path / "direct"))
    assert direct.summary is not None and direct.summary["mismatches"] == 0
    table = []
    for rate in FAULT_RATES:
        out, wall = _timed_run(dataclasses.replace(base, fault_rate=rate, results=tmp_path / f"r{rate}"))
        s = out.summary
        assert s is not None
        rows = R.read_rows(out.run_dir / R.ROWS_CSV)
        once = rows["index"].tolist() == list(range(n))
        correct = bool((R.logits_of(rows) == tiny.reference).all())
        link = s["link"]
        faults = sum(v for k, v in link.items() if k.endswith(("_in", "_out")) and not k.startswith("bytes"))
        table.append((rate, n / wall, link, faults, len(rows), once, correct, s["mismatches"]))
    clean = table[0][1]
    print(f"\nch32v003 on unicorn, {n} images per run, fault seed 7 (drop, corrupt, delay; both directions), "
          f"link paced at 115200 baud; the emulator's unpaced link: {n / direct_wall:.2f} images/s")
    print(f"{'fault rate':>10} {'images/s':>9} {'of clean':>9} {'retries':>8} {'attempts':>9} {'chunks':>7} "
          f"{'late':>5} {'faults':>7} {'logged':>7} {'once':>5} {'equal':>6} {'mismatches':>10}")
    for rate, speed, link, faults, logged, once, correct, mismatches in table:
        print(f"{rate:>10.2%} {speed:>9.2f} {speed / clean:>9.0%} {link['retries']:>8} {link['attempts']:>9} "
              f"{link['chunks']:>7} {link['late_answers']:>5} {faults:>7} {logged:>7} {str(once):>5} "
              f"{str(correct):>6} {mismatches:>10}")
    for rate, speed, link, faults, logged, once, correct, mismatches in table:
        assert once and correct and mismatches == 0, f"fault rate {rate}: a row lost, doubled or wrong"
    one_percent = next(speed for rate, speed, *_ in table if rate == 0.01)
    assert one_percent >= KEEP_AT_ONE_PERCENT * clean, \
        f"at 1 % faults {one_percent:.2f} images/s, below {KEEP_AT_ONE_PERCENT:.0%} of the clean {clean:.2f}"


def test_libfuzzer_coverage_campaign(tmp_path: Path) -> None:
    if not shutil.which("clang"):
        pytest.skip("clang not installed (apt-get install clang): the coverage fuzzer needs libFuzzer")
    seconds = int(os.environ.get("POTNN_LIBFUZZER_SECONDS", "60"))
    exe = build_libfuzzer(tmp_path / "lf")
    seeds = write_seed_corpus(tmp_path / "seeds")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    r = subprocess.run([str(exe), f"-max_total_time={seconds}", "-max_len=4096", "-print_final_stats=1",
                        str(corpus), str(seeds)], capture_output=True, text=True, timeout=seconds + 300)
    assert r.returncode == 0, r.stderr[-4000:]
    done = re.findall(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", r.stderr)
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", r.stderr)
    speed = re.search(r"stat::average_exec_per_sec:\s+(\d+)", r.stderr)
    execs, cov, ft, corp, size = done[-1] if done else ("?",) * 5
    print(f"\nlibFuzzer (clang -fsanitize=fuzzer,address,undefined) on app.c + protocol.c, {seconds} s: "
          f"{runs.group(1) if runs else execs} inputs ({speed.group(1) if speed else '?'}/s), "
          f"{cov} edges, {ft} features, corpus {corp} inputs ({size}); no crash, no sanitizer report")
