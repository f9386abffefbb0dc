"""Bad inputs: each gives one line that says what is wrong and what to do, no traceback.

The bench's errors go through the real command line (a subprocess where that is possible, so
"no traceback" is checked on the real stderr); the library's (unsupported layer, unknown
encoding, over budget) through the calls a user's script makes. Where the real condition cannot
be created here (no cross compiler, no network) the test says so in its name (``_mocked``).
Every message is printed with ``BAD INPUT`` in front, for the record (``pytest -s``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import potnn
from bench import cli
from firmware_models import SHARED_MNIST, export_tiny, synthetic_header

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run potnn-bench; it must fail with exit status 2 and exactly one line on stderr."""
    r = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, r.stderr
    print(f"\nBAD INPUT {' '.join(args[:1])}: {errors[0]}")
    return errors[0]


def _cli_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The same check in this process (for the mocked cases)."""
    with pytest.raises(SystemExit) as ex:
        cli.main(list(args))
    assert ex.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    with capsys.disabled():
        print(f"\nBAD INPUT {args[0]}: {lines[0]}")
    return lines[0]


def _one_line(e: BaseException, what: str) -> str:
    msg = str(e)
    assert msg and "\n" not in msg
    print(f"\nBAD INPUT {what}: {type(e).__name__}: {msg}")
    return msg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return export_tiny(tmp_path_factory.mktemp("model"), n_images=2)


CONFIG = dict(mean=0.13, std=0.31, input_h=16, input_w=16, input_channels=1)


# ----------------------------------------------------------------------------- 1. unknown board
def test_unknown_board() -> None:
    line = _cli("run", "--board", "ch32v0003")
    assert line == ("potnn-bench: error: unknown board 'ch32v0003'; known boards: "
                    "ch32v003, py32f003, py32f003x6, py32f003x8")


# ----------------------------------------------------------------------------- 2. unsupported layer
class SigmoidNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = potnn.PoTConv2d(1, 4, 3, padding=1)
        self.act = nn.Sigmoid()
        self.fc = potnn.PoTLinear(4 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).view(x.size(0), -1))


def test_unsupported_layer_names_its_path_and_type() -> None:
    with pytest.raises(potnn.GraphError) as e:
        potnn.prepare_qat(SigmoidNet(), potnn.Config(**CONFIG))
    msg = _one_line(e.value, "unsupported layer")
    assert msg.startswith("act (Sigmoid): unsupported module; potnn supports PoTConv2d")


# ----------------------------------------------------------------------------- 3. unknown encoding
def test_unknown_encoding_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as e:
        potnn.Config(**CONFIG, layer_encodings={"fc": "4bit"})
    msg = _one_line(e.value, "unknown encoding")
    assert msg == "unknown weight encoding '4bit'; valid encodings: unroll, fp130, 5level, 2bit, ternary, indexed"


# ----------------------------------------------------------------------------- 4. over budget
def test_model_over_the_flash_budget_at_export(tmp_path: Path) -> None:
    from firmware_models import TinyNet

    torch.manual_seed(0)
    model = TinyNet().eval()
    config = potnn.Config(**CONFIG, flash=1024, layer_encodings={"fc": "fp130"})
    # calibrate's own dry run would refuse first (test_validation); this checks export's refusal
    potnn.calibrate(model, [(torch.rand(4, 1, 16, 16),)], config, dry_run=False)
    potnn.prepare_qat(model, config)
    with pytest.raises(Exception) as e:
        potnn.export(model, tmp_path / "model.h", config)
    msg = _one_line(e.value, "over budget (export)")
    assert "Config.flash is 1024" in msg and "raise the budget" in msg and "budgets the model alone" in msg
    assert not (tmp_path / "model.h").exists()


def test_model_over_the_flash_budget_at_build(tmp_path: Path) -> None:
    header = synthetic_header(tmp_path / "big.h", weight_bytes=20000)
    line = _cli("build", "--board", "ch32v003", "--header", str(header), "--out", str(tmp_path / "o"))
    assert line.startswith("potnn-bench: error: model does not fit ch32v003: flash needs ")
    assert "of 16384 B" in line and "too big" in line and "pick a board with more memory" in line
    assert not (tmp_path / "o" / "firmware.elf").exists()


# ----------------------------------------------------------------------------- 5. not a potnn export
def test_a_header_that_is_not_a_potnn_export(tmp_path: Path) -> None:
    """A header alone (hand-written, or copied without its bundle): the bench knows nothing about it."""
    header = tmp_path / "model.h"
    header.write_text("#include <stdint.h>\nint potnn_predict(const uint8_t *i, int32_t *l) { return 0; }\n")
    line = _cli("build", "--board", "ch32v003", "--header", str(header), "--out", str(tmp_path / "o"))
    assert line == ("potnn-bench: error: model.h has no bundle model.potnn beside it: re-export it with "
                    "potnn.export(model, 'model.h', config), which writes both")


@pytest.mark.parametrize("toolchain", ["gnu", "zig"])
def test_a_header_that_asks_for_gigabytes_stops_the_build_at_once(tmp_path: Path, toolchain: str) -> None:
    """A header is code: one line of it can ask the assembler for 16 GiB (GNU as wrote them, for 40 s)."""
    from firmware_models import rewrite_header

    header = synthetic_header(tmp_path / "huge.h")
    rewrite_header(header, header.read_text()
                   + '__asm__(".pushsection .rodata.pad\\n.space 1<<34\\n.popsection");\n')
    out = tmp_path / "o"
    t0 = time.monotonic()
    line = _cli("build", "--board", "ch32v003", "--header", str(header), "--out", str(out),
                "--toolchain", toolchain)
    if toolchain == "gnu":
        assert time.monotonic() - t0 < 60        # 16 GiB took 40 s to write before; zig's clang computes the
                                                 # whole object first (~30 s here), then stops at the bound
    why = ("the header or board file asks for more memory than any microcontroller has, e.g. a huge array or "
           f".space); full log: {out / 'build.log'}")
    said = "potnn-bench: error: build stopped: the compiler wrote a file past 64 MiB (" + why
    # zig with none of the firmware's objects cached yet (a fresh machine) dies by SIGABRT without a word
    aborted = ("potnn-bench: error: build stopped: the compiler was killed by SIGABRT without a message, as zig is "
               "when a file it writes passes 64 MiB (most likely " + why)
    assert line == said or (toolchain == "zig" and line == aborted), line
    assert all(p.stat().st_size <= 64 << 20 for p in out.iterdir())


# ----------------------------------------------------------------------------- 6. no cross toolchain
def test_missing_cross_toolchain_no_toolchain_mocked(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """PATH without any cross compiler, and the ziglang wheel made unavailable (mocked)."""
    import bench.toolchain as toolchain

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(toolchain, "zig_available", lambda: False)
    line = _cli_in_process(capsys, "build", "--board", "ch32v003", "--header", str(tiny.header),
                           "--out", str(tmp_path / "o"))
    assert line == ("potnn-bench: error: no compiler for ch32v003 (rv32ec): apt install "
                    "gcc-riscv64-unknown-elf (or an xPack riscv-none-elf-gcc), or pip install ziglang")


# ----------------------------------------------------------------------------- 7. no dataset, offline
def test_missing_dataset_offline_mocked_network(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """POTNN_DATA empty, an empty home and cache, and every download refused (network mocked)."""
    for name in ("data", "home", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("POTNN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tried: list[str] = []

    def offline(url, *a, **kw):
        tried.append(str(url))
        raise urllib.error.URLError("network unreachable (test: offline)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    line = _cli_in_process(capsys, "run", "--board", "ch32v003", "--header", str(tiny.header),
                           "--results", str(tmp_path / "r"))
    assert line.startswith("potnn-bench: error: MNIST file t10k-images-idx3-ubyte.gz not found in ")
    assert line.endswith("set POTNN_DATA to a folder holding the four MNIST IDX .gz files")
    assert tried and "network unreachable (test: offline)" in line


# ----------------------------------------------------------------------------- 8. no probe, --emulator none
def test_no_probe_with_emulator_none(tiny, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "wlink"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(0)\n")  # `wlink list`: no probe attached
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    line = _cli("flash", "--board", "ch32v003", "--header", str(tiny.header), "--emulator", "none",
                "--build-dir", str(tmp_path / "b"), env=env)
    assert line == ("potnn-bench: error: no WCH-LinkE probe found (`wlink list` shows none); --emulator none "
                    "needs the board attached: connect it, or leave out --emulator none to run on the emulator")


# ----------------------------------------------------------------------------- 9. firmware of another model
def test_firmware_and_model_hash_mismatch(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The board (emulator) runs firmware built from another header than the one given."""
    import bench.build as build_mod

    other = build_mod.build("ch32v003", synthetic_header(tmp_path / "other.h"), tmp_path / "other")
    real_build = build_mod.build
    monkeypatch.setattr(build_mod, "build", lambda *a, **kw: dataclasses.replace(real_build(*a, **kw), elf=other.elf))
    line = _cli_in_process(capsys, "flash", "--board", "ch32v003", "--header", str(tiny.header), "--emulator",
                           "unicorn", "--check", "0", "--build-dir", str(tmp_path / "b"))
    mine = f"{build_mod.model_hash(tiny.header):08x}"
    assert line == (f"potnn-bench: error: the board runs firmware built from model {other.model_hash_hex}, but "
                    f"{tiny.header} is model {mine}: flash it first (potnn-bench flash, or drop --no-flash)")


# ----------------------------------------------------------------------------- 10. results not writable
def test_results_directory_not_writable(tiny, tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results directory should be\n")
    line = _cli("run", "--board", "ch32v003", "--header", str(tiny.header), "--results", str(blocker))
    assert line == (f"potnn-bench: error: {blocker}: results directory is not writable (a file is in the way); "
                    "pass --results DIR with a directory you can write to")
    below = blocker / "nightly"
    line = _cli("run", "--board", "ch32v003", "--header", str(tiny.header), "--results", str(below))
    assert line == (f"potnn-bench: error: {below}: results directory is not writable (Not a directory); "
                    "pass --results DIR with a directory you can write to")


def test_results_directory_without_write_permission(tiny, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories; the file case above covers the message")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    line = _cli("run", "--board", "ch32v003", "--header", str(tiny.header), "--results", str(ro))
    assert "results directory is not writable (Permission denied)" in line


# ----------------------------------------------------------------------------- 11. corrupt results
def test_a_corrupt_results_file_when_reporting(tmp_path: Path) -> None:
    run = tmp_path / "20240101T000000Z-ch32v003-m-abcdef"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"board": "ch32v003", "model": "m"}))
    (run / "rows.csv").write_text("index,label,pred,ref_pred,match,cycles,instructions,logit0\n0,1,1,1,1,5,,3\n")
    (run / "summary.json").write_text('{"board": "ch32v003", "n": 1, "accur')      # killed mid-write
    r = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--results", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    print(f"\nBAD INPUT report: {lines[0]}")
    assert lines[0] == (f"potnn-bench report: error: run {run.name} is damaged: {run / 'summary.json'}: not valid "
                        f"JSON (line 1: Unterminated string starting at); repair it or move it out of {tmp_path} "
                        "(the other runs are reported)")


def test_report_on_a_mistyped_results_directory(tmp_path: Path) -> None:
    missing = tmp_path / "resluts"
    r = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--results", str(missing)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    print(f"\nBAD INPUT report: {r.stderr.strip()}")
    assert r.stderr.strip() == (f"potnn-bench report: error: {missing}: no such results directory; pass --results "
                                "with the directory your runs wrote to")
    assert not missing.exists()


# ----------------------------------------------------------------------------- 12. numbers no run can use
@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "--limit must be at least 1, not 0 (leave it out to stream every input)"),
    (["--limit", "-5"], "--limit must be at least 1, not -5 (leave it out to stream every input)"),
    (["--retries", "-1"], "--retries must be 0 or more, not -1"),
    (["--timeout", "-1"], "--timeout must be a positive number of seconds, not -1.0"),
    (["--timeout", "nan"], "--timeout must be a positive number of seconds, not nan"),
    (["--fault-rate", "1"], "--fault-rate must be in [0, 1), not 1.0"),
    (["--port", "/dev/ttyNOPE9"], "--port /dev/ttyNOPE9: no such device; list the serial ports with "
                                  "`python -m serial.tools.list_ports`, or leave out --port to find the board's "
                                  "UART by USB id"),
    (["--port", "loop://", "--emulator", "unicorn"], "--port loop:// is a board's UART, but --emulator unicorn "
                                                     "runs no board: leave out one of them"),
])
def test_run_arguments_are_checked_before_any_work(tiny, tmp_path: Path, args: list[str], message: str) -> None:
    results, build = tmp_path / "results", tmp_path / "build"
    line = _cli("run", "--board", "ch32v003", "--header", str(tiny.header), "--results", str(results),
                "--build-dir", str(build), *args)
    assert line == f"potnn-bench: error: {message}"
    assert not build.exists() and not list(results.glob("*/run.json"))   # nothing built, no run folder


@pytest.mark.parametrize("args, message", [
    (["--check", "-1"], "--check must be 0 or more, not -1"),
    (["--port", "/dev/ttyNOPE9"], "--port /dev/ttyNOPE9: no such device; list the serial ports with "
                                  "`python -m serial.tools.list_ports`, or leave out --port to find the board's "
                                  "UART by USB id"),
])
def test_flash_arguments_are_checked_before_any_work(tiny, tmp_path: Path, args: list[str], message: str) -> None:
    build = tmp_path / "build"
    line = _cli("flash", "--board", "ch32v003", "--header", str(tiny.header), "--build-dir", str(build), *args)
    assert line == f"potnn-bench: error: {message}"
    assert not build.exists()


def test_port_without_a_probe_is_an_error_not_an_emulator_run(tiny, tmp_path: Path) -> None:
    """``--port`` names a board; with no probe found, auto must not quietly run the emulator."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "wlink"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(0)\n")  # `wlink list`: no probe attached
    fake.chmod(0o755)
    env = {"POTNN_DATA": str(SHARED_MNIST), **os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    build = tmp_path / "build"
    line = _cli("run", "--board", "ch32v003", "--header", str(tiny.header), "--port", "loop://",
                "--results", str(tmp_path / "r"), "--build-dir", str(build), env=env)
    assert line == ("potnn-bench: error: --port loop:// names a board's UART, but no WCH-LinkE probe found "
                    "(`wlink list` shows none): running on the unicorn emulator: connect the probe, or leave out "
                    "--port to run on the emulator")
    assert not build.exists()
