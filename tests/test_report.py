"""The report: plots embedded and decodable, regression gate, corrupt input as one clear line."""

from __future__ import annotations

import argparse
import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest

from bench import report as rep
from bench import results as R
from bench.report.regression import Thresholds

K = 10
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def make_run(base: Path, *, n: int = 40, wrong: int = 2, mismatch: int = 0, cycles: int = 480_000,
             flash: int = 12_000, finished: str = "2024-01-01T00:00:00Z", board: str = "ch32v003",
             model: str = "fc", backend: str = "unicorn", commit: str = "c0", complete: bool = True,
             seed: int = 0, toolchain: str = "zig cc 0.17.1 -Os", dataset: str = "mnist16") -> Path:
    rng = np.random.default_rng(seed)
    meta = dict(run_id=f"{finished.replace('-', '').replace(':', '')[:15]}Z-{board}-{model}-{rng.integers(1 << 24):06x}",
                board=board, model=model, model_hash="h", backend=backend, n=n, flash_bytes=flash, dataset=dataset,
                ram_bytes=900, stack_bytes=300, toolchain=toolchain, git_commit=commit,
                started=finished, flash_budget=16384, ram_budget=2048, clock_hz=48_000_000)
    d = R.create_run(base, meta)
    with R.RowWriter(d / R.ROWS_CSV, K) as w:
        for i in range(n):
            label = i % K
            pred = (label + 1) % K if i < wrong else label
            is_mism = wrong <= i < wrong + mismatch
            w.append(R.Row(i, label, pred, label if i >= wrong else pred, not is_mism,
                           cycles + int(rng.integers(0, 500)), cycles // 2, rng.integers(-50, 50, K)))
    if not complete:
        return d
    rows = R.read_rows(d / R.ROWS_CSV)
    bad = [int(i) for i in rows[(rows["pred"] != rows["label"]) | (rows["match"] == 0)]["index"]]
    R.write_failures(d, bad, rng.integers(0, 256, (len(bad), 1, 16, 16)).astype(np.uint8))
    R.write_json_atomic(d / R.SUMMARY_JSON, R.summarize(rows, meta, finished=finished))
    return d


def _args(results: Path, out: Path | None = None, **kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    rep.add_parser(sub)
    argv = ["report", "--results", str(results)] + (["--out", str(out)] if out else [])
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return p.parse_args(argv)


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_embeds_all_plots_as_decodable_pngs(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    make_run(tmp_path, finished="2024-01-01T00:00:00Z", commit="aaa")
    make_run(tmp_path, finished="2024-01-02T00:00:00Z", commit="bbb")
    make_run(tmp_path, board="py32f003", backend="unicorn", finished="2024-01-02T00:00:00Z")
    make_run(tmp_path, complete=False, finished="2024-01-03T00:00:00Z")
    res = rep.make_report(tmp_path, tmp_path / "out" / "r.html")
    html = res.html.read_text()
    pngs = _pngs(html)
    # accuracy, trend, cycles, sizes, frontier, 2 confusion matrices, 2 failure grids
    assert len(pngs) == 9
    for png in pngs:
        assert png.startswith(PNG_SIG)
        img = mpimg.imread(io.BytesIO(png), format="png")
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert html.count("<img") == len(pngs)
    for needle in ("Accuracy", "Trend", "Cycles per inference", "budget", "Confusion", "wrong", "Incomplete runs",
                   "aaa", "bbb"):
        assert needle.lower() in html.lower(), needle
    md = res.markdown.read_text()
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(refs) == 9
    for ref in refs:
        assert (res.markdown.parent / ref).read_bytes().startswith(PNG_SIG)
    assert res.regressions == []


def test_a_report_of_a_users_own_data_draws_no_mnist_frontier(tmp_path: Path) -> None:
    """The frontier compares MNIST models with published MNIST peers; a gesture model's report has no place for it."""
    make_run(tmp_path, model="gestures", dataset="gestures.npz")
    md = rep.make_report(tmp_path, tmp_path / "out" / "r.html").markdown.read_text()
    assert "frontier" not in md.lower() and "## Cycles per inference" in md
    make_run(tmp_path, dataset="mnist16", finished="2024-01-02T00:00:00Z")
    md = rep.make_report(tmp_path, tmp_path / "out" / "r.html").markdown.read_text()
    assert "![frontier](r_files/frontier.png)" in md


def test_regression_gate_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path, wrong=2, finished="2024-01-01T00:00:00Z")
    make_run(tmp_path, wrong=3, finished="2024-01-02T00:00:00Z")  # accuracy 95 % -> 92.5 %
    assert rep.main(_args(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "accuracy 95.00% -> 92.50%" in out
    assert rep.main(_args(tmp_path, max_accuracy_drop=3)) == 0


def test_cycles_size_and_mismatch_regressions(tmp_path: Path) -> None:
    make_run(tmp_path, finished="2024-01-01T00:00:00Z", cycles=100_000, flash=10_000)
    make_run(tmp_path, finished="2024-01-02T00:00:00Z", cycles=103_000, flash=10_000)
    r = rep.make_report(tmp_path)
    assert [f.metric for f in r.regressions] == ["cycles_mean"]
    assert rep.make_report(tmp_path, th=Thresholds(cycles_increase_pct=5)).regressions == []

    make_run(tmp_path, finished="2024-01-03T00:00:00Z", cycles=103_000, flash=10_040)
    r = rep.make_report(tmp_path, th=Thresholds(cycles_increase_pct=5))
    assert [f.metric for f in r.regressions] == ["flash_bytes"]
    assert rep.make_report(tmp_path, th=Thresholds(5, 5, 64)).regressions == []

    make_run(tmp_path, finished="2024-01-04T00:00:00Z", cycles=103_000, flash=10_040, mismatch=1)
    r = rep.make_report(tmp_path, th=Thresholds(cycles_increase_pct=5, size_increase_bytes=64))
    assert [f.metric for f in r.regressions] == ["mismatches"]
    th = Thresholds(cycles_increase_pct=5, size_increase_bytes=64, allow_mismatches=True)
    assert rep.make_report(tmp_path, th=th).regressions == []


def test_only_comparable_runs_are_compared_and_improvements_pass(tmp_path: Path) -> None:
    make_run(tmp_path, n=40, wrong=0, finished="2024-01-01T00:00:00Z")
    make_run(tmp_path, n=20, wrong=5, finished="2024-01-02T00:00:00Z")          # other n
    make_run(tmp_path, n=40, wrong=5, backend="renode", finished="2024-01-03T00:00:00Z")  # other backend
    make_run(tmp_path, n=40, wrong=0, cycles=400_000, finished="2024-01-04T00:00:00Z")  # faster: fine
    make_run(tmp_path, n=40, wrong=5, cycles=900_000, toolchain="riscv64-unknown-elf-gcc 12.2.0 -Os",
             finished="2024-01-05T00:00:00Z")                                           # other toolchain
    r = rep.make_report(tmp_path)
    assert r.regressions == []
    assert "ch32v003 / fc / unicorn / riscv64-unknown-elf-gcc -Os" in r.markdown.read_text()
    assert "cycles/inference" in r.html.read_text()


def test_old_regression_fixed_later_does_not_fail(tmp_path: Path) -> None:
    make_run(tmp_path, wrong=0, finished="2024-01-01T00:00:00Z")
    make_run(tmp_path, wrong=4, finished="2024-01-02T00:00:00Z")
    make_run(tmp_path, wrong=4, finished="2024-01-03T00:00:00Z")
    r = rep.make_report(tmp_path)
    assert r.regressions == []
    assert "Older changes" in r.html.read_text()


@pytest.mark.parametrize("damage", ["summary", "rows", "run", "failures", "rows_of_complete_run_missing"])
def test_damaged_run_is_reported_as_damaged_and_the_others_still_are(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     damage: str) -> None:
    good = make_run(tmp_path, wrong=0, finished="2024-01-01T00:00:00Z", model="good")
    d = make_run(tmp_path, wrong=3, finished="2024-01-02T00:00:00Z")
    target = {"summary": d / R.SUMMARY_JSON, "rows": d / R.ROWS_CSV, "run": d / R.RUN_JSON,
              "failures": d / R.FAILURES_NPZ, "rows_of_complete_run_missing": d / R.ROWS_CSV}[damage]
    if damage == "rows_of_complete_run_missing":
        target.unlink()
    elif damage == "rows":
        with open(target, "a") as f:
            f.write("1,2,three\n")
    else:
        target.write_bytes(b"\x00garbage{")
    assert rep.main(_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(target) in err and f"run {d.name} is damaged" in err
    page = (tmp_path / "report.html").read_text()
    assert "Damaged runs" in page and d.name in page
    assert good.name in page                      # the other run is still in the report


def test_states_a_crash_leaves_are_reported_not_damaged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lost_run_json = make_run(tmp_path, wrong=1, finished="2024-01-01T00:00:00Z")
    (lost_run_json / R.RUN_JSON).unlink()         # summary.json holds the same keys
    empty_rows = make_run(tmp_path, n=0, wrong=0, complete=False, finished="2024-01-02T00:00:00Z")
    (empty_rows / R.ROWS_CSV).write_bytes(b"")   # killed between run.json and rows.csv's header line
    torn = make_run(tmp_path, n=5, wrong=0, complete=False, finished="2024-01-03T00:00:00Z")
    with open(torn / R.ROWS_CSV, "a") as f:
        f.write("5,1,1,1,1,4")                    # killed in the middle of a row
    assert rep.main(_args(tmp_path)) == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""
    page = (tmp_path / "report.html").read_text()
    assert "Damaged runs" not in page
    assert lost_run_json.name in page and empty_rows.name in page and torn.name in page


def test_mistyped_results_directory_is_one_line_and_not_created(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "resluts"
    assert rep.main(_args(missing)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "no such results directory" in err
    assert not missing.exists()


def test_empty_results_directory_gives_a_report(tmp_path: Path) -> None:
    r = rep.make_report(tmp_path, tmp_path / "r.html")
    assert "No run found" in r.html.read_text()
    assert r.regressions == [] and r.damaged == []


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (4, 6, 6), (6, 100), (100,)])
def test_any_input_shape_is_drawn(shape: tuple[int, ...]) -> None:
    """Grey, colour, other channel counts (side by side) and 1-D signals (one line per channel)."""
    from bench.report.plots import _figure, _png, draw_input

    fig = _figure(2, 2)
    ax = fig.add_subplot()
    draw_input(ax, np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8))
    if len(shape) == 3:
        (image,) = ax.get_images()
        expected = (shape[1], shape[2], 3) if shape[0] == 3 else (shape[1], shape[0] * shape[2] + shape[0] - 1)
        assert image.get_array().shape == expected
    else:
        assert len(ax.get_lines()) == (shape[0] if len(shape) == 2 else 1)
    assert _png(fig).startswith(PNG_SIG)


def test_confusion_of_any_class_count_with_names_and_unlabeled_runs(tmp_path: Path) -> None:
    from bench.report.plots import class_names, confusion, labeled

    k = 13
    meta = dict(run_id="20240101T000000Z-ch32v003-m-000001", board="ch32v003", model="m", backend="unicorn",
                class_names=[f"c{i}" for i in range(k)])
    d = R.create_run(tmp_path, meta)
    with R.RowWriter(d / R.ROWS_CSV, k) as w:
        for i in range(30):
            w.append(R.Row(i, i % k, (i * 7) % k, (i * 7) % k, True, 100, None, [0] * k))
    run = R.load_run(d)
    m = confusion(run)
    assert m.shape == (k, k) and m.sum() == 30 and m[1, 7] == 3 and labeled(run)
    assert class_names(run, k)[12] == "c12"
    d2 = R.create_run(tmp_path, dict(meta, run_id="20240101T000000Z-ch32v003-m-000002", class_names=None))
    with R.RowWriter(d2 / R.ROWS_CSV, k) as w:
        w.append(R.Row(0, None, 3, 3, True, 100, None, [0] * k))
    unlabeled = R.load_run(d2)
    assert not labeled(unlabeled) and confusion(unlabeled).sum() == 0 and class_names(unlabeled, k)[3] == "3"
    assert R.summarize(unlabeled.rows, meta)["accuracy"] is None
