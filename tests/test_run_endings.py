"""How a run ends, as a user sees it: exit status, SIGTERM, a full disk, a second writer, the resume line.

A real potnn model's firmware runs on the unicorn emulator through the real command line where
the ending is the user's to see (exit status, stderr). What cannot happen here for real (a disk
that fills up in the middle of a run) is simulated, and the test name says so.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from bench import cli
from bench import results as R
from bench import run as run_mod
from bench.protocol import BenchClient
from firmware_models import SHARED_MNIST

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The environment of a user's shell: POTNN_DATA names the MNIST copy when the machine has one."""
    out = dict(os.environ)
    if not out.get("POTNN_DATA") and SHARED_MNIST.is_dir():
        out["POTNN_DATA"] = str(SHARED_MNIST)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    from firmware_models import export_tiny

    if "POTNN_DATA" not in env:
        pytest.skip("MNIST not available (set POTNN_DATA)")
    return export_tiny(tmp_path_factory.mktemp("model")).header


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(autouse=True)
def _data(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    if "POTNN_DATA" in env:
        monkeypatch.setenv("POTNN_DATA", env["POTNN_DATA"])


def _opts(header: Path, results: Path, build_dir: Path, **kw: object) -> run_mod.RunOptions:
    base: dict[str, object] = dict(board="ch32v003", header=header, emulator="unicorn", limit=24, results=results,
                                   build_dir=build_dir, show_progress=False)
    base.update(kw)
    return run_mod.RunOptions(**base)  # type: ignore[arg-type]


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, call: int) -> Callable[[], None]:
    """Ctrl-C in the middle of the ``call``-th INFER request (``call`` - 1 rows are logged); returns the undo."""
    real = BenchClient.infer
    calls = {"n": 0}

    def infer(self: BenchClient, image: bytes):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(self, image)

    monkeypatch.setattr(BenchClient, "infer", infer)
    return lambda: monkeypatch.setattr(BenchClient, "infer", real)


def test_sigterm_keeps_rows_and_prints_a_resume_command_that_is_safe_to_paste(tmp_path: Path, exported: Path,
                                                                             build_dir: Path,
                                                                             env: dict[str, str]) -> None:
    # Paths a shell would split or run: spaces, ';', '$(...)'. Pasting the line must run nothing else.
    odd = tmp_path / "my models; $(touch PWNED)"
    odd.mkdir()
    header = odd / "x$(touch P) y.h"
    header.write_bytes(exported.read_bytes())
    header.with_suffix(".potnn").write_bytes(exported.with_suffix(".potnn").read_bytes())
    results = tmp_path / "res ults;touch PWNED2"
    argv = ["run", "--board", "ch32v003", "--header", str(header), "--emulator", "unicorn", "--limit", "400",
            "--results", str(results), "--build-dir", str(build_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(results.glob(f"*/{R.ROWS_CSV}"))
            if found and found[0].read_text().count("\n") > 20:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)          # what a CI timeout or a scheduler sends
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    kept = R.read_rows(next(results.glob(f"*/{R.ROWS_CSV}")), allow_torn_tail=True)
    assert 20 <= len(kept) < 400
    line = next(ln for ln in err.splitlines() if ln.startswith("terminated (SIGTERM)"))
    assert f"{len(kept)} of 400 inputs logged in " in line
    command = line.split("continue with: ", 1)[1]
    words = shlex.split(command)
    assert words[:2] == ["potnn-bench", "run"]
    assert Path(words[words.index("--header") + 1]).resolve() == header.resolve()
    assert words[words.index("--results") + 1] == str(results)
    # paste it into a shell (with this checkout's potnn-bench)
    pasted = f"{shlex.quote(sys.executable)} -m bench.cli " + command[len("potnn-bench "):]
    done = subprocess.run(["bash", "-c", pasted], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("P")) and not list(tmp_path.rglob("PWNED*"))  # nothing ran
    rows = R.read_rows(next(results.glob(f"*/{R.ROWS_CSV}")))
    assert sorted(rows["index"]) == list(range(400)) and rows["index"].is_unique


def _hold_lock(run_dir: Path, ready: "mp.synchronize.Event") -> None:
    from bench.runlock import RunLock

    RunLock(run_dir)
    ready.set()
    time.sleep(120)


def test_resume_while_another_process_writes_the_run_is_one_line_exit_2(tmp_path: Path, exported: Path,
                                                                       build_dir: Path, monkeypatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    undo = _interrupt_at(monkeypatch, 6)
    first = run_mod.execute(_opts(exported, tmp_path, build_dir))
    assert first.interrupted and first.exit_status == 130
    undo()
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(first.run_dir, ready))
    holder.start()
    try:
        assert ready.wait(30)
        capsys.readouterr()
        with pytest.raises(SystemExit) as ex:
            cli.main(["run", "--board", "ch32v003", "--header", str(exported), "--emulator", "unicorn",
                      "--results", str(tmp_path), "--build-dir", str(build_dir), "--resume"])
        assert ex.value.code == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("potnn-bench")]
        assert len(err) == 1
        assert err[0].startswith(f"potnn-bench: error: run {first.run_dir.name} is being written by pid "
                                 f"{holder.pid} on host ")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    assert len(R.read_rows(first.run_dir / R.ROWS_CSV)) == 5     # the refused resume wrote nothing


def test_disk_full_mid_run_is_one_line_with_file_rows_kept_and_resume_simulated_enospc(
        tmp_path: Path, exported: Path, build_dir: Path, monkeypatch) -> None:
    """The disk fills up after 7 rows (simulated: the 8th row's write fails with ENOSPC)."""
    real = R.RowWriter.append

    def append(self: R.RowWriter, row: R.Row) -> None:
        if self.rows_written == 7:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        real(self, row)

    monkeypatch.setattr(R.RowWriter, "append", append)
    with pytest.raises(run_mod.RunError) as e:
        run_mod.execute(_opts(exported, tmp_path, build_dir))
    msg = str(e.value)
    run_dir = next(tmp_path.glob(f"*/{R.RUN_JSON}")).parent
    assert "\n" not in msg
    assert msg.startswith(f"disk full writing {run_dir / R.ROWS_CSV}: 7 of 24 inputs are logged in {run_dir}; "
                          "free some space, then finish the run with: potnn-bench run --board ch32v003 ")
    assert msg.endswith(f"--resume {run_dir.name}")
    monkeypatch.setattr(R.RowWriter, "append", real)
    done = run_mod.execute(_opts(exported, tmp_path, build_dir, limit=None, resume=run_dir.name))
    assert done.exit_status == 0 and done.summary is not None and done.summary["n"] == 24


def test_link_statistics_after_a_resume_cover_every_part(tmp_path: Path, exported: Path, build_dir: Path,
                                                         monkeypatch) -> None:
    undo = _interrupt_at(monkeypatch, 11)
    first = run_mod.execute(_opts(exported, tmp_path, build_dir))
    part1 = R.read_json(first.run_dir / R.RUN_JSON)["link"]
    assert part1["requests"] >= 10
    undo()
    second = run_mod.execute(_opts(exported, tmp_path, build_dir, limit=None, resume="latest"))
    assert second.summary is not None
    link = second.summary["link"]
    assert link["requests"] >= part1["requests"] + 14       # part 2 sent at least its 14 inputs


def _hand_edited(header: Path, directory: Path) -> Path:
    """``header`` edited by hand after export (class 0's bias + 1000) with its bundle re-sealed to match it:
    it builds and runs, and the firmware's answers differ from what ``potnn.simulate`` of the bundle says."""
    from firmware_models import rewrite_header

    out = directory / header.name
    out.write_bytes(header.read_bytes())
    out.with_suffix(".potnn").write_bytes(header.with_suffix(".potnn").read_bytes())
    text = header.read_text()
    edited = re.sub(r"(_b\[\d+\] = \{\s*)(-?\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 1000}", text, count=1)
    assert edited != text
    rewrite_header(out, edited)
    return out


def test_answers_that_differ_from_the_reference_exit_1(tmp_path: Path, exported: Path, build_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    edited = _hand_edited(exported, tmp_path)
    common = ["--board", "ch32v003", "--header", str(edited), "--emulator", "unicorn",
              "--build-dir", str(tmp_path / "build")]
    assert cli.main(["run", *common, "--limit", "8", "--results", str(tmp_path / "r")]) == 1
    assert "mismatches 8" in capsys.readouterr().out
    assert cli.main(["flash", *common, "--check", "4"]) == 1
    assert "0/4 logits equal to potnn.simulate" in capsys.readouterr().out
