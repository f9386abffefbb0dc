"""Your model, your data: ``potnn-bench run --data test.npz`` with any exported model, from the command line.

Each model here is tiny (calibrated, not trained: the bench's concern is that the board answers
exactly what ``potnn.simulate`` of the bundle says, whatever the accuracy) and runs on the emulated
2 KB CH32V003: a 1-D signal model ([N, 3, 64], Conv1d, 4 classes), a 3-channel 16×16 image model
and a 5-class 8×8 model with class names. Then the refusals, each one line with exit status 2
and no run folder: data of the wrong shape or type, bad labels, a header without its bundle, and
a header edited after export.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from bench import results as R
from bench.dataset import data_sha256
from potnn import PoTConv1d, PoTConv2d, PoTLinear

REPO = Path(__file__).resolve().parent.parent


class SignalNet(nn.Module):
    """A 1-D model written the natural way: forward takes [N, 3, 64]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv1d(3, 4, 5, stride=2, padding=2)
        self.fc = PoTLinear(4 * 32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class ColourNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(3, 4, 3, stride=2, padding=1)
        self.fc = PoTLinear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class FiveNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 4, 3, stride=2, padding=1)
        self.fc = PoTLinear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@dataclass
class UserModel:
    header: Path
    data: Path            # test.npz: x and y
    x: np.ndarray
    y: np.ndarray


def _export(directory: Path, net: nn.Module, shape: tuple[int, ...], classes: int, seed: int,
            **config: object) -> UserModel:
    """Calibrate and export ``net`` for inputs of ``shape``; write 24 random inputs and labels as test.npz."""
    torch.manual_seed(seed)
    net = net.eval()
    size = {"input_length": shape[1]} if len(shape) == 2 else {"input_h": shape[1], "input_w": shape[2]}
    cfg = potnn.Config(input_channels=shape[0], mean=0.5, std=0.25, **size, **config)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (24, *shape), dtype=np.uint8)
    potnn.calibrate(net, [(torch.from_numpy(x).float() / 255 * 4 - 2,)], cfg)
    potnn.prepare_qat(net, cfg)
    directory.mkdir(parents=True, exist_ok=True)
    header = directory / "model.h"
    potnn.export(net, header, cfg)
    y = rng.integers(0, classes, 24)
    np.savez(directory / "test.npz", x=x, y=y)
    return UserModel(header, directory / "test.npz", x, y)


@pytest.fixture(scope="module")
def signal(tmp_path_factory: pytest.TempPathFactory) -> UserModel:
    return _export(tmp_path_factory.mktemp("signal"), SignalNet(), (3, 64), 4, seed=1)


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory) -> UserModel:
    return _export(tmp_path_factory.mktemp("colour"), ColourNet(), (3, 16, 16), 10, seed=2)


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> UserModel:
    return _export(tmp_path_factory.mktemp("five"), FiveNet(), (1, 8, 8), 5, seed=3,
                   class_names=("ant", "bee", "cat", "dog", "eel"))


def _bench(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def _run(m: UserModel, results: Path, build: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _bench("run", "--board", "ch32v003", "--header", str(m.header), "--data", str(m.data), "--limit", "16",
                  "--emulator", "unicorn", "--results", str(results), "--build-dir", str(build), *extra)


def _refused(r: subprocess.CompletedProcess[str], results: Path) -> str:
    """Exit 2, one line, no traceback, no run folder."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not list(results.glob(f"*/{R.RUN_JSON}"))
    print(f"\nBAD INPUT run: {lines[0]}")
    return lines[0]


@pytest.mark.parametrize("which, shape, classes", [("signal", [3, 64], 4), ("colour", [3, 16, 16], 10),
                                                   ("five", [1, 8, 8], 5)])
def test_any_model_on_its_own_data_from_the_cli(which: str, shape: list[int], classes: int, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    m: UserModel = request.getfixturevalue(which)
    r = _run(m, tmp_path / "results", tmp_path / "build")
    assert r.returncode == 0, r.stderr
    assert "mismatches 0" in r.stdout and "16 inputs of test.npz" in r.stdout
    (run_dir,) = R.run_dirs(tmp_path / "results")
    s = R.read_json(run_dir / R.SUMMARY_JSON)
    assert s["mismatches"] == 0 and s["n"] == 16 and s["dataset"] == "test.npz" and s["input_shape"] == shape
    with np.load(m.data) as z:
        assert s["data_sha256"] == data_sha256(z["x"], z["y"])
    rows = R.read_rows(run_dir / R.ROWS_CSV)
    assert len([c for c in rows.columns if c.startswith("logit")]) == classes
    assert (rows["label"] == m.y[:16]).all()
    assert (R.logits_of(rows) == potnn.simulate(m.header.with_suffix(".potnn"), m.x[:16])).all()
    assert s["accuracy"] == pytest.approx(float((rows["pred"] == m.y[:16]).mean()))
    with np.load(run_dir / R.FAILURES_NPZ) as z:        # the wrong ones, stored in the model's own shape
        assert z["images"].shape[1:] == tuple(shape) and len(z["images"]) == int((rows["pred"] != m.y[:16]).sum())
    rep = _bench("report", "--results", str(tmp_path / "results"))
    assert rep.returncode == 0, rep.stderr
    html = (tmp_path / "results" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 6        # confusion and wrong inputs drawn too
    if which == "five":
        assert json.loads((run_dir / R.RUN_JSON).read_text())["class_names"] == ["ant", "bee", "cat", "dog", "eel"]


def test_without_labels_only_the_agreement_is_reported(five: UserModel, tmp_path: Path) -> None:
    data = tmp_path / "unlabeled.npz"
    np.savez(data, x=five.x)
    r = _bench("run", "--board", "ch32v003", "--header", str(five.header), "--data", str(data), "--limit", "6",
               "--emulator", "unicorn", "--results", str(tmp_path / "r"), "--build-dir", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert "accuracy -" in r.stdout and "mismatches 0" in r.stdout and "no labels" in r.stdout
    (run_dir,) = R.run_dirs(tmp_path / "r")
    s = R.read_json(run_dir / R.SUMMARY_JSON)
    assert s["accuracy"] is None and s["ref_accuracy"] is None and s["mismatches"] == 0 and s["labeled"] is False
    assert R.read_rows(run_dir / R.ROWS_CSV)["label"].isna().all()
    assert (run_dir / R.ROWS_CSV).read_text().splitlines()[1].split(",")[1] == ""
    rep = _bench("report", "--results", str(tmp_path / "r"))
    assert rep.returncode == 0, rep.stderr
    assert "No labels, so agreement with potnn.simulate only" in (tmp_path / "r" / "report.md").read_text()


def test_data_of_the_wrong_shape_is_refused_before_anything_is_built(colour: UserModel, signal: UserModel,
                                                                     tmp_path: Path) -> None:
    r = _bench("run", "--board", "ch32v003", "--header", str(colour.header), "--data", str(signal.data),
               "--results", str(tmp_path / "r"), "--build-dir", str(tmp_path / "b"))
    line = _refused(r, tmp_path / "r")
    assert line == ("potnn-bench: error: test.npz: inputs are 3×64, but model.h takes 3×16×16 (its manifest's "
                    "input_shape): pass data of that shape")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("arrays, message", [
    ({"y": np.zeros(4, np.int64)}, "bad.npz has no array 'x' (it holds y): write it with np.savez("),
    ({"x": np.zeros((4, 1, 8, 8), np.float32)}, "bad.npz: x is float32, the board takes uint8 inputs"),
    ({"x": np.zeros((4, 1, 8, 8), np.uint8), "y": np.zeros(3, np.int64)},
     "bad.npz: y must be integer labels [N] = [4], got int64 (3,)"),
    ({"x": np.zeros((4, 1, 8, 8), np.uint8), "y": np.array([0, 1, 5, 2])},
     "bad.npz: label 5 at index 2 is out of range: model.h has 5 classes (0..4)"),
])
def test_bad_npz_is_one_line(five: UserModel, tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    r = _bench("run", "--board", "ch32v003", "--header", str(five.header), "--data", str(tmp_path / "bad.npz"),
               "--results", str(tmp_path / "r"))
    assert message in _refused(r, tmp_path / "r")


def test_a_npy_for_data_or_the_bundle_for_the_header_is_one_line(five: UserModel, tmp_path: Path) -> None:
    np.save(tmp_path / "test.npy", np.zeros((4, 1, 8, 8), np.uint8))
    line = _refused(_bench("run", "--board", "ch32v003", "--header", str(five.header), "--data",
                           str(tmp_path / "test.npy"), "--results", str(tmp_path / "r")), tmp_path / "r")
    assert line == ("potnn-bench: error: test.npy is not a .npz (an archive of named arrays): write it with "
                    "np.savez('test.npz', x=inputs_uint8, y=labels)")
    bundle = five.header.with_suffix(".potnn")
    line = _refused(_bench("run", "--board", "ch32v003", "--header", str(bundle), "--data", str(five.data),
                           "--results", str(tmp_path / "r")), tmp_path / "r")
    assert line == f"potnn-bench: error: model.potnn is the bundle: pass the header beside it, --header {five.header}"


def test_no_data_and_no_dataset_in_the_manifest_says_to_pass_data(five: UserModel, tmp_path: Path) -> None:
    line = _refused(_bench("run", "--board", "ch32v003", "--header", str(five.header),
                           "--results", str(tmp_path / "r")), tmp_path / "r")
    assert line.startswith("potnn-bench: error: model.h names no dataset in its manifest: pass --data test.npz")


def test_a_header_edited_after_export_or_without_its_bundle_is_refused(five: UserModel, tmp_path: Path) -> None:
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "model.h").write_text(five.header.read_text() + "/* tuned by hand */\n")
    (edited / "model.potnn").write_bytes(five.header.with_suffix(".potnn").read_bytes())
    line = _refused(_bench("run", "--board", "ch32v003", "--header", str(edited / "model.h"), "--data",
                           str(five.data), "--results", str(tmp_path / "r")), tmp_path / "r")
    assert line == ("potnn-bench: error: model.h differs from the header its bundle model.potnn was exported with "
                    "(SHA-256 is not the manifest's header_sha256): re-export it with "
                    "potnn.export(model, 'model.h', config), which writes both")
    (edited / "model.potnn").unlink()
    line = _refused(_bench("flash", "--board", "ch32v003", "--header", str(edited / "model.h")), tmp_path / "r")
    assert line.startswith("potnn-bench: error: model.h has no bundle model.potnn beside it: re-export it")


def test_resume_refuses_other_data(five: UserModel, tmp_path: Path) -> None:
    from bench.errors import RunError
    from bench.run_plan import plan_run

    meta = dict(board="ch32v003", model="m", model_hash="h", backend="unicorn", dataset="test.npz",
                data_sha256="a" * 64)
    plan = plan_run(tmp_path, meta, 4, None)
    with pytest.raises(RunError, match=r"it streamed other data \(test.npz, data_sha256 aaaaaaaaaaaa\), this run "
                                       r"has other.npz \(bbbbbbbbbbbb\): pass the --data the run started with"):
        plan_run(tmp_path, dict(meta, dataset="other.npz", data_sha256="b" * 64), 4, plan.run_dir.name)


def test_flash_checks_the_first_inputs_of_the_given_data(five: UserModel, tmp_path: Path) -> None:
    r = _bench("flash", "--board", "ch32v003", "--header", str(five.header), "--data", str(five.data), "--check", "4",
               "--emulator", "unicorn", "--build-dir", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert "5 classes" in r.stdout and "check: first 4 test inputs of test.npz" in r.stdout
    assert "4/4 logits equal to potnn.simulate" in r.stdout


def test_a_run_on_own_data_needs_no_torch(signal: UserModel, tmp_path: Path) -> None:
    """The bench side (bundle, data, reference, build, run) works where ``import torch`` fails."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from bench import cli\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "run", "--board", "ch32v003", "--header", str(signal.header),
                        "--data", str(signal.data), "--limit", "4", "--emulator", "unicorn",
                        "--results", str(tmp_path / "r"), "--build-dir", str(tmp_path / "b")],
                       cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "POTNN_CACHE": str(tmp_path / "cache")})   # no cached logits
    assert r.returncode == 0, r.stderr
    assert "mismatches 0" in r.stdout
    assert list((tmp_path / "cache" / "reference").glob("*.npz"))
