"""The run loop: rows logged as they arrive, interrupt and resume without losing or repeating one."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from bench import results as R
from bench import run as run_mod
from bench.errors import RunError
from bench.progress import Progress
from bench.reference import Reference
from bench.run_plan import finish_run, plan_run
from bench.stream import Inference, stream

K = 10
N = 30


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (N, 1, 16, 16)).astype(np.uint8)
    labels = rng.integers(0, K, N)
    logits = rng.integers(-1000, 1000, (N, K)).astype(np.int32)
    return images, labels, logits


class FakeBoard:
    """Answers like firmware would: the reference logits, except for chosen images."""

    def __init__(self, images: np.ndarray, logits: np.ndarray, wrong: set[int] = frozenset(),
                 stop_at: int | None = None) -> None:
        self.by_image = {images[i].tobytes(): i for i in range(len(images))}
        self.logits = logits
        self.wrong = wrong
        self.stop_at = stop_at
        self.seen: list[int] = []

    def __call__(self, image: bytes) -> Inference:
        i = self.by_image[image]
        if self.stop_at is not None and len(self.seen) == self.stop_at:
            raise KeyboardInterrupt
        self.seen.append(i)
        out = [int(v) for v in self.logits[i]]
        if i in self.wrong:
            out[0] += 1
        return Inference(int(np.argmax(out)), out, 1000 + i, 2000 + i)


META = dict(board="ch32v003", model="m", model_hash="hash-a", backend="unicorn", flash_bytes=1,
            ram_bytes=1, stack_bytes=1, toolchain="t", git_commit="g", started="2024-01-01T00:00:00Z")


def _go(tmp: Path, images, labels, ref, board, resume=None, n=N):
    """Plan and stream like ``bench.run``: an interrupted part lets go of the run's lock, a whole one keeps
    it for ``finish_run``."""
    plan = plan_run(tmp, META, n, resume)
    with R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w:
        res = stream(images, labels, plan.todo, board, w, ref)
    if res.interrupted:
        plan.release()
    return plan, res


def test_stream_logs_rows_and_mismatches(tmp_path: Path, data) -> None:
    images, labels, logits = data
    ref = Reference(logits)
    board = FakeBoard(images, logits, wrong={3, 17})
    plan, res = _go(tmp_path, images, labels, ref, board)
    assert not res.interrupted and res.done == N and res.mismatches == 2
    summary = finish_run(plan, images)
    rows = R.read_rows(plan.run_dir / R.ROWS_CSV)
    assert rows["index"].tolist() == list(range(N))
    assert rows.loc[rows["match"] == 0, "index"].tolist() == [3, 17]
    assert (rows["ref_pred"] == np.argmax(logits, axis=1)).all()
    assert (R.logits_of(rows)[5] == logits[5]).all()
    assert summary["mismatches"] == 2 and summary["n"] == N and summary["cycles_max"] == 1000 + N - 1
    assert summary["instructions_mean"] == pytest.approx(2000 + (N - 1) / 2)
    assert set(R.SUMMARY_KEYS) <= set(summary)
    rec = R.load_run(plan.run_dir)
    wrong = set(int(i) for i in rows[(rows["pred"] != rows["label"]) | (rows["match"] == 0)]["index"])
    assert set(rec.failures) == wrong
    assert all((rec.failures[i] == images[i]).all() for i in wrong)


def test_interrupt_then_resume_loses_and_repeats_nothing(tmp_path: Path, data) -> None:
    images, labels, logits = data
    ref = Reference(logits)
    first = FakeBoard(images, logits, stop_at=11)
    plan, res = _go(tmp_path, images, labels, ref, first)
    assert res.interrupted and res.done == 11
    assert not (plan.run_dir / R.SUMMARY_JSON).exists()
    # A kill in the middle of a write leaves a torn line; resume must cut it and resend that image.
    with open(plan.run_dir / R.ROWS_CSV, "a") as f:
        f.write("11,3,3,3,1,99")
    second = FakeBoard(images, logits)
    plan2, res2 = _go(tmp_path, images, labels, ref, second, resume="latest")
    assert plan2.run_dir == plan.run_dir and plan2.done_rows == 11
    assert second.seen == list(range(11, N))
    finish_run(plan2, images)
    rows = R.read_rows(plan.run_dir / R.ROWS_CSV)
    assert sorted(rows["index"]) == list(range(N)) and rows["index"].is_unique
    meta = R.read_json(plan.run_dir / R.RUN_JSON)
    assert len(meta["resumed"]) == 1


def test_resume_refuses_another_model_or_a_finished_run(tmp_path: Path, data) -> None:
    images, labels, logits = data
    plan, _ = _go(tmp_path, images, labels, None, FakeBoard(images, logits, stop_at=2))
    other = dict(META, model_hash="hash-b")
    with pytest.raises(RunError, match="model_hash=hash-a.*model_hash=hash-b"):
        plan_run(tmp_path, other, N, plan.run_dir.name)
    with pytest.raises(RunError, match="nothing to resume"):
        plan_run(tmp_path, other, N, "latest")
    with pytest.raises(RunError, match="firmware built by t, this run has zig cc 0.17.1 -Os: pass the --toolchain"):
        plan_run(tmp_path, dict(META, toolchain="zig cc 0.17.1 -Os"), N, plan.run_dir.name)
    plan2, _ = _go(tmp_path, images, labels, None, FakeBoard(images, logits), resume=plan.run_dir)
    finish_run(plan2, images)
    with pytest.raises(RunError, match="already complete"):
        plan_run(tmp_path, META, N, str(plan.run_dir))


def test_run_without_reference_records_no_match(tmp_path: Path, data) -> None:
    images, labels, logits = data
    plan, res = _go(tmp_path, images, labels, None, FakeBoard(images, logits), n=5)
    s = finish_run(plan, images)
    assert s["mismatches"] is None and s["ref_accuracy"] is None and s["n"] == 5
    rows = R.read_rows(plan.run_dir / R.ROWS_CSV)
    assert (rows["ref_pred"] == -1).all() and rows["match"].isna().all()


def test_wrong_number_of_logits_stops_with_one_line(tmp_path: Path, data) -> None:
    images, labels, logits = data
    def short(_: bytes) -> Inference:
        return Inference(0, [1, 2, 3], 5)

    with plan_run(tmp_path, META, N, None) as plan, R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w, \
            pytest.raises(RunError, match="3 logits"):
        stream(images, labels, [0], short, w, None)


def test_reference_logits_come_from_the_bundle_and_are_cached_per_data(tmp_path: Path, monkeypatch) -> None:
    import potnn
    from bench.dataset import load_data
    from bench.exported import read_model
    from bench.reference import cache_dir, reference_logits
    from firmware_models import export_tiny

    monkeypatch.setenv("POTNN_CACHE", str(tmp_path / "cache"))
    m = export_tiny(tmp_path, n_images=12)
    model = read_model(m.header)
    data = load_data((m.images, None), model)
    ref = reference_logits(model, data, 8)
    assert ref.logits.shape == (8, K) and (ref.logits == m.reference[:8]).all()
    assert len(list(cache_dir().glob("*.npz"))) == 1 and cache_dir() == tmp_path / "cache" / "reference"

    def no_simulate(*_a, **_k):
        raise AssertionError("the cached logits must be used")

    monkeypatch.setattr(potnn, "simulate", no_simulate)
    assert (reference_logits(model, data, 5).logits[:5] == m.reference[:5]).all()    # from the cache
    other = m.images.copy()
    other[0, 0, 0, 0] ^= 1                                  # other data: another cache entry, computed anew
    with pytest.raises(AssertionError, match="cached logits must be used"):
        reference_logits(model, load_data((other, None), model), 5)


def test_progress_bar_shows_accuracy_and_rate() -> None:
    buf = io.StringIO()
    p = Progress(4, stream=buf, log_every_s=0)
    for ok in (True, True, False, True):
        p.update(ok)
    p.close()
    last = buf.getvalue().strip().splitlines()[-1]
    assert "4/4" in last and "acc 75.00%" in last and "img/s" in last


# ----------------------------------------------------------------------------- the whole flow
# Build a real potnn model's firmware, run it in the emulator on MNIST, interrupt, resume.

import dataclasses
import os
import signal
import subprocess
import sys
import time

from firmware_models import SHARED_MNIST

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mnist():
    """The MNIST test set; POTNN_DATA points at shared/ (CI's copy) for this module only."""
    from potnn.data import DatasetError, load_mnist

    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("POTNN_DATA") and SHARED_MNIST.is_dir():
            mp.setenv("POTNN_DATA", str(SHARED_MNIST))
        try:
            data = load_mnist("test", 16)
        except DatasetError as e:
            pytest.skip(f"MNIST not available: {e}")
        yield data


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:
    """A small real potnn model for mnist16, exported: header and bundle."""
    from firmware_models import export_tiny

    return export_tiny(tmp_path_factory.mktemp("model")).header


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


def _opts(header: Path, results: Path, build_dir: Path, **kw) -> run_mod.RunOptions:
    base = dict(board="ch32v003", header=header, emulator="unicorn", limit=24, results=results,
                build_dir=build_dir, show_progress=False)
    base.update(kw)
    return run_mod.RunOptions(**base)


def test_whole_flow_on_the_emulator_matches_potnn_simulate(tmp_path: Path, exported: Path, build_dir: Path,
                                                           mnist) -> None:
    out = run_mod.execute(_opts(exported, tmp_path, build_dir))
    s = out.summary
    assert s is not None and not out.interrupted
    assert set(R.SUMMARY_KEYS) <= set(s)
    assert s["backend"] == "unicorn" and s["board"] == "ch32v003" and s["model"] == "tiny" and s["n"] == 24
    assert s["mismatches"] == 0 and s["accuracy"] == s["ref_accuracy"]
    assert s["cycles_mean"] > 0 and s["instructions_mean"] > 0 and s["flash_bytes"] > 0
    assert s["stack_bytes"] > 0 and s["toolchain"]
    rows = R.read_rows(out.run_dir / R.ROWS_CSV)
    images, labels = mnist
    assert rows["index"].tolist() == list(range(24))
    assert (rows["label"] == labels[:24]).all()
    import potnn

    assert (R.logits_of(rows) == potnn.simulate(exported.with_suffix(".potnn"), images[:24])).all()
    assert s["dataset"] == "mnist16" and s["input_shape"] == [1, 16, 16] and len(s["data_sha256"]) == 64


def test_interrupted_run_resumes_without_losing_or_repeating_rows(tmp_path: Path, exported: Path,
                                                                 build_dir: Path, monkeypatch) -> None:
    from bench.protocol import BenchClient

    real_infer = BenchClient.infer
    calls = {"n": 0}

    def flaky(self, image: bytes):
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of the 14th request
        return real_infer(self, image)

    monkeypatch.setattr(BenchClient, "infer", flaky)
    first = run_mod.execute(_opts(exported, tmp_path, build_dir, limit=30))
    assert first.interrupted and first.summary is None
    assert len(R.read_rows(first.run_dir / R.ROWS_CSV, allow_torn_tail=True)) == 13
    monkeypatch.setattr(BenchClient, "infer", real_infer)
    second = run_mod.execute(_opts(exported, tmp_path, build_dir, limit=None, resume="latest"))
    assert second.run_dir == first.run_dir and second.summary is not None
    rows = R.read_rows(second.run_dir / R.ROWS_CSV)
    assert rows["index"].tolist() == list(range(30))
    assert second.summary["n"] == 30 and second.summary["mismatches"] == 0


def test_killed_cli_run_resumes_from_its_rows(tmp_path: Path, exported: Path, build_dir: Path) -> None:
    env = dict(os.environ)
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.cli", "run", "--board", "ch32v003", "--header", str(exported),
           "--emulator", "unicorn", "--results", str(results), "--build-dir", str(build_dir)]
    proc = subprocess.Popen(cmd + ["--limit", "400"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    rows_file = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(results.glob(f"*/{R.ROWS_CSV}"))
            if found and found[0].read_text().count("\n") > 20:
                rows_file = found[0]
                break
            time.sleep(0.02)
        assert rows_file is not None, proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: only fsynced rows survive
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    before = R.read_rows(rows_file, allow_torn_tail=True)
    assert 20 <= len(before) < 400
    done = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{400 - len(before)} of 400 inputs of mnist16 to go" in done.stderr
    rows = R.read_rows(rows_file)
    assert rows["index"].tolist()[: len(before)] == before["index"].tolist()
    assert sorted(rows["index"]) == list(range(400)) and rows["index"].is_unique
    assert "accuracy" in done.stdout and "mismatches 0" in done.stdout
    # and the report of these results holds its plots
    rep = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--results", str(results)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    assert (results / "report.html").read_text().count('src="data:image/png;base64,') >= 5


def test_run_refuses_firmware_of_another_model(tmp_path: Path, exported: Path, build_dir: Path,
                                               monkeypatch) -> None:
    import bench.build as build_mod
    from firmware_models import synthetic_header

    other = build_mod.build("ch32v003", synthetic_header(tmp_path / "other.h"), tmp_path / "other-build")
    real_build = build_mod.build

    def build_but_board_has_other(*a, **kw):
        return dataclasses.replace(real_build(*a, **kw), elf=other.elf)

    monkeypatch.setattr(build_mod, "build", build_but_board_has_other)
    with pytest.raises(RunError) as e:
        run_mod.execute(_opts(exported, tmp_path, build_dir))
    msg = str(e.value)
    assert other.model_hash_hex in msg and f"{build_mod.model_hash(exported):08x}" in msg
    assert "flash it first" in msg
    assert not list(tmp_path.glob(f"*/{R.RUN_JSON}"))  # no run directory for a refused run


def test_no_probe_falls_back_to_the_emulator_in_one_line(tmp_path: Path, exported: Path, build_dir: Path,
                                                         monkeypatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "wlink"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(0)\n")  # `wlink list`: no probe attached
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    said: list[str] = []
    out = run_mod.execute(_opts(exported, tmp_path, build_dir, emulator="auto", limit=3), say=said.append)
    assert said[0] == "no WCH-LinkE probe found (`wlink list` shows none): running on the unicorn emulator"
    assert out.summary is not None and out.summary["backend"] == "unicorn"
    from bench.flashers import FlashError

    with pytest.raises(FlashError, match="--emulator none needs the board attached"):
        run_mod.execute(_opts(exported, tmp_path, build_dir, emulator="none", limit=3))


def test_missing_bundle_and_missing_model_are_one_line_errors(tmp_path: Path, exported: Path,
                                                              monkeypatch) -> None:
    import bench.models as models
    from bench.models import ModelNotFound

    monkeypatch.setattr(models, "_load_zoo", lambda: None)
    monkeypatch.setattr(models, "_REGISTRY", {})  # an empty zoo, whatever ships by now

    bare = tmp_path / "bare.h"
    bare.write_bytes(exported.read_bytes())
    with pytest.raises(RunError, match=r"^bare.h has no bundle bare.potnn beside it: re-export it with "
                                       r"potnn.export\(model, 'bare.h', config\), which writes both$"):
        run_mod.execute(run_mod.RunOptions(board="ch32v003", header=bare, results=tmp_path))
    assert not list(tmp_path.glob(f"*/{R.RUN_JSON}"))
    with pytest.raises(ModelNotFound, match="model zoo has no model for ch32v003 yet: pass --header"):
        run_mod.execute(run_mod.RunOptions(board="ch32v003", results=tmp_path))


def test_bare_board_runs_the_zoo_default_with_simulate_as_reference(tmp_path: Path, mnist, build_dir: Path,
                                                                  monkeypatch) -> None:
    import bench.models as models
    from firmware_models import export_tiny

    m = export_tiny(tmp_path, seed=3)  # its bundle names mnist16: no --data needed
    monkeypatch.setattr(models, "_load_zoo", lambda: None)  # only the entry registered here,
    monkeypatch.setattr(models, "_REGISTRY", {})             # even when an earlier test loaded the zoo
    models.register(models.ModelEntry("tiny-zoo", m.header, "test entry", default_for=("ch32v003",)))
    try:
        out = run_mod.execute(run_mod.RunOptions(board="ch32v003", emulator="unicorn", limit=8,
                                                 results=tmp_path / "r", build_dir=build_dir,
                                                 show_progress=False))
    finally:
        models.unregister("tiny-zoo")
    assert out.summary is not None
    assert out.summary["model"] == "tiny-zoo" and out.summary["reference"] == "potnn.simulate"
    assert out.summary["mismatches"] == 0


def test_flash_command_on_the_emulator_checks_info_and_first_images(tmp_path: Path, exported: Path,
                                                                    build_dir: Path, capsys) -> None:
    from bench import cli

    argv = ["flash", "--board", "ch32v003", "--header", str(exported), "--emulator", "unicorn",
            "--build-dir", str(build_dir), "--check", "5"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "runs on the unicorn emulator (nothing written to a chip)" in out
    assert "check: first 5 test inputs of mnist16" in out and "5/5 logits equal to potnn.simulate" in out


def test_models_command_lists_registered_models(tmp_path: Path, exported: Path, capsys, monkeypatch) -> None:
    import bench.models as models
    from bench import cli

    monkeypatch.setattr(models, "_load_zoo", lambda: None)
    monkeypatch.setattr(models, "_REGISTRY", {})
    assert cli.main(["models"]) == 0
    assert "no trained model yet" in capsys.readouterr().out
    figures = {"name": "tiny", "integer_accuracy": 0.5, "test_images": 10000, "train_seconds": 7, "threads": 1,
               "on_board": {"ch32v003": {"gnu": {"accuracy": 0.5, "images": 10000, "mismatches": 0,
                                                 "instructions": 1234, "cycles": 2345, "ms": 0.05,
                                                 "flash_bytes": 4096, "ram_bytes": 512, "stack_bytes": 128}}}}
    models.register(models.ModelEntry("tiny", exported, "a test model", figures, ("ch32v003",), ("ch32v003",)))
    assert cli.main(["models", "--board", "ch32v003"]) == 0
    out = capsys.readouterr().out
    assert "tiny  (ch32v003)  [default on ch32v003]  a test model" in out
    assert "integer reference 50.00 % on 10000 MNIST test inputs; trained in 7 s" in out
    assert ("ch32v003  gnu 50.00 % of 10,000, 0 mismatches, 1,234 instructions, 2,345 cycles (0.1 ms), "
            "flash 4,096 B, RAM 512 + 128 B stack") in out
    assert models.get_model("tiny").header_path == exported
    with pytest.raises(models.ModelNotFound, match="no model named 'nope' in the zoo \\(known: tiny\\)"):
        models.get_model("nope")
    assert models.list_models("py32f003") == []


def test_nightly_runs_every_pair_then_reports(tmp_path: Path, exported: Path, capsys) -> None:
    from bench import cli

    argv = ["nightly", "--boards", "ch32v003", "--models", str(exported), "--limit", "6",
            "--emulator", "unicorn", "--results", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "tiny.h on ch32v003" in out and "report:" in out
    assert cli.main(argv) == 0  # the same firmware again: identical figures, no regression
    html = (tmp_path / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 5
    assert len(list(tmp_path.glob(f"*/{R.SUMMARY_JSON}"))) == 2


def test_nightly_with_an_empty_zoo_says_so(capsys, monkeypatch) -> None:
    import bench.models
    from bench import cli

    monkeypatch.setattr(bench.models, "list_models", lambda board=None: [])
    assert cli.main(["nightly", "--boards", "ch32v003"]) == 2
    assert "zoo has no model" in capsys.readouterr().err


@pytest.mark.hardware
def test_run_on_a_real_board(tmp_path: Path, exported: Path) -> None:
    """Streams 50 images through an attached board (POTNN_HW_BOARD=ch32v003|py32f003)."""
    board = os.environ.get("POTNN_HW_BOARD")
    if not board:
        pytest.skip("no board attached: set POTNN_HW_BOARD to run on a real chip")
    out = run_mod.execute(run_mod.RunOptions(board=board, header=exported, emulator="none", limit=50,
                                             results=tmp_path, show_progress=False))
    assert out.summary is not None and out.summary["backend"] == "hardware"
    assert out.summary["mismatches"] == 0
