"""Benchmark: the bench's reliability (fuzzing, link faults, libFuzzer) at counts too large for CI.

Run: ``pytest -m benchmark -s tests/benchmarks/test_reliability_benchmark.py``. Prints

- the protocol fuzzer's counts per board (``POTNN_FUZZ_FRAMES`` malformed frames, default
  20 000, on the Unicorn emulator, every answer checked against the protocol model);
- a run at link fault rate 1 % per byte (``POTNN_FAULT_IMAGES`` images, default 200): time,
  retries, faults injected, and that every image was logged exactly once and correctly;
- the coverage-guided libFuzzer campaign on the host build of app.c + protocol.c under
  ASan/UBSan (``POTNN_LIBFUZZER_SECONDS``, default 60): executions, edges covered, corpus.
  Needs clang with libFuzzer (``apt-get install clang``); skipped with that reason otherwise.
"""

from __future__ import annotations

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
    n = int(os.environ.get("POTNN_FAULT_IMAGES", "200"))
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


def test_run_at_fault_rate_one_percent(tiny, tmp_path: Path) -> None:
    n = len(tiny.images)
    labels = np.argmax(tiny.reference, axis=1)
    opts = run_mod.RunOptions(board="ch32v003", header=tiny.header, emulator="unicorn", results=tmp_path / "r",
                              build_dir=tmp_path / "b", show_progress=False, data=(tiny.images, labels),
                              fault_rate=0.01, fault_seed=7)
    clean = run_mod.execute(run_mod.RunOptions(**{**opts.__dict__, "fault_rate": 0.0, "limit": 50}))
    t = time.monotonic()
    out = run_mod.execute(opts)
    wall = time.monotonic() - t
    s = out.summary
    assert s is not None and clean.summary is not None
    rows = R.read_rows(out.run_dir / R.ROWS_CSV)
    once = rows["index"].tolist() == list(range(n))
    correct = bool((R.logits_of(rows) == tiny.reference).all())
    link = s["link"]
    faults = {k: v for k, v in link.items() if k.endswith(("_in", "_out")) and not k.startswith("bytes")}
    print(f"\nfault rate 0.01 per byte, ch32v003 on unicorn: {n} images in {wall:.1f} s "
          f"({wall / n:.2f} s/image; fault-free: {clean.summary['link']['requests']} requests, "
          f"{clean.summary['link']['retries']} retries)")
    print(f"  requests {link['requests']} (barriers {link['barriers']}), attempts {link['attempts']}, "
          f"retries {link['retries']} ({link['retries'] / n:.1f}/image): no answer {link['no_answer']}, "
          f"corrupted answers {link['corrupt_answers']}, NAKs {link['naks_retried']}, "
          f"re-asked after a mismatch {link['reasked']}, filler {link['filler_bytes']} B")
    print(f"  bytes out {link['bytes_out']} in {link['bytes_in']}; faults injected {faults}")
    print(f"  rows {len(rows)}, each image exactly once: {once}; all logits equal potnn.simulate: {correct}; "
          f"mismatches {s['mismatches']}")
    assert once and correct and s["mismatches"] == 0


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
