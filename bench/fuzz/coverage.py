"""The coverage-guided fuzzer of the firmware's parser: libFuzzer + ASan/UBSan on the host.

``firmware/fuzz/fuzz_protocol.c`` drives protocol.c and app.c built for the host; this module
builds it (``build_libfuzzer``). Its seed corpus comes from ``bench.fuzz.cases.write_seed_corpus``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.board import FIRMWARE_DIR
from bench.build import BuildError

FUZZ_DIR = FIRMWARE_DIR / "fuzz"


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
