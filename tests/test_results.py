"""The results store: rows survive interruption, files are validated, summaries carry every SUMMARY_KEYS key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import results as R

K = 10


def _row(i: int, *, match: bool | None = True, instr: int | None = 100) -> R.Row:
    return R.Row(i, i % K, i % K, i % K, match, 1000 + i, instr, list(range(-5, 5)))


def _meta(**kw) -> dict:
    m = dict(run_id=R.make_run_id("ch32v003", "m"), board="ch32v003", model="m", model_hash="h1",
             backend="unicorn", n=5, flash_bytes=100, ram_bytes=50, stack_bytes=20, toolchain="tc",
             git_commit="abc", started=R.utc_now())
    m.update(kw)
    return m


def test_run_id_sorts_by_time_names_the_run_and_is_unique() -> None:
    a = R.make_run_id("ch32v003", "fc 12k/v1")
    b = R.make_run_id("ch32v003", "fc 12k/v1")
    assert re.fullmatch(r"\d{8}T\d{6}Z-ch32v003-fc_12k_v1-[0-9a-f]{6}", a)
    assert a != b


def test_rows_are_readable_by_pandas_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with R.RowWriter(path, K) as w:
        for i in range(3):
            w.append(_row(i))
        w.append(_row(3, match=None, instr=None))
    df = pd.read_csv(path)
    assert list(df.columns[:7]) == list(R.BASE_COLUMNS)
    assert list(df.columns[7:]) == [f"logit{k}" for k in range(K)]
    assert df["index"].tolist() == [0, 1, 2, 3]
    assert np.isnan(df.loc[3, "instructions"]) and np.isnan(df.loc[3, "match"])
    checked = R.read_rows(path)
    assert checked["cycles"].dtype == np.int64
    assert R.logits_of(checked).shape == (4, K)


def test_each_row_is_on_disk_before_the_next_is_written(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    w = R.RowWriter(path, K)
    w.append(_row(0))
    # Another reader sees the row while the writer is still open (flushed, not buffered).
    assert len(R.read_rows(path)) == 1
    w.close()


def test_torn_last_line_is_dropped_for_incomplete_runs_and_cut_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with R.RowWriter(path, K) as w:
        w.append(_row(0))
        w.append(_row(1))
    with open(path, "a") as f:
        f.write("2,2,2,2,1,10")  # killed mid-write
    with pytest.raises(R.ResultsError, match="incomplete"):
        R.read_rows(path)
    assert len(R.read_rows(path, allow_torn_tail=True)) == 2
    with R.RowWriter(path, K) as w:  # resume: the torn line is cut, then rows continue
        w.append(_row(2))
    df = R.read_rows(path)
    assert df["index"].tolist() == [0, 1, 2]


def test_a_signal_between_a_rows_write_and_its_fsync_still_counts_the_row(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM may land after a row's bytes are written: the count must be what the file holds."""
    path = tmp_path / "rows.csv"
    real_fsync = R.os.fsync
    with R.RowWriter(path, K) as w:
        w.append(_row(0))

        def fsync(fd: int) -> None:
            raise KeyboardInterrupt      # delivered between os.write and the bookkeeping after it

        monkeypatch.setattr(R.os, "fsync", fsync)
        with pytest.raises(KeyboardInterrupt):
            w.append(_row(1))
        monkeypatch.setattr(R.os, "fsync", real_fsync)
        assert w.rows_written == len(R.read_rows(path)) == 2
    with R.RowWriter(path, K) as w:    # a resumed file's rows are not this writer's
        w.append(_row(2))
        assert w.rows_written == 1


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("a,b,c\n", "header must start"),
    ("index,label,pred,ref_pred,match,cycles,instructions\n", "logit0"),
    ("index,label,pred,ref_pred,match,cycles,instructions,logit0\n1,2,3\n", "line 2: 3 fields"),
    ("index,label,pred,ref_pred,match,cycles,instructions,logit0\n1,2,x,1,1,5,,0\n", "line 2: pred='x'"),
    ("index,label,pred,ref_pred,match,cycles,instructions,logit0\n1,2,2,1,1,,,0\n", "line 2: empty cycles"),
    ("index,label,pred,ref_pred,match,cycles,instructions,logit0\n1,2,2,1,1,5,,0\n1,2,2,1,1,5,,0\n",
     "index 1 appears twice"),
])
def test_malformed_rows_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(content)
    with pytest.raises(R.ResultsError) as e:
        R.read_rows(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_json_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    R.write_json_atomic(path, {"a": np.int64(3), "b": np.float32(0.5), "p": Path("x")})
    assert json.loads(path.read_text()) == {"a": 3, "b": 0.5, "p": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left


def test_corrupt_json_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text("{not json")
    with pytest.raises(R.ResultsError) as e:
        R.read_json(path)
    assert str(path) in str(e.value) and "not valid JSON" in str(e.value)


def test_summary_has_design_keys_and_figures(tmp_path: Path) -> None:
    meta = _meta()
    d = R.create_run(tmp_path, meta)
    with R.RowWriter(d / R.ROWS_CSV, K) as w:
        for i in range(4):
            w.append(_row(i))
        w.append(R.Row(4, 4, 5, 4, False, 3000, 300, list(range(K))))
    rows = R.read_rows(d / R.ROWS_CSV)
    s = R.summarize(rows, meta)
    assert set(R.SUMMARY_KEYS) <= set(s)
    assert s["n"] == 5 and s["accuracy"] == pytest.approx(0.8) and s["ref_accuracy"] == 1.0
    assert s["mismatches"] == 1 and s["cycles_max"] == 3000
    assert s["cycles_mean"] == pytest.approx((1000 + 1001 + 1002 + 1003 + 3000) / 5)
    assert s["instructions_mean"] == pytest.approx((400 + 300) / 5)
    R.write_json_atomic(d / R.SUMMARY_JSON, s)
    rec = R.load_run(d)
    assert rec.complete and rec.key() == ("ch32v003", "m", "unicorn")


def test_summary_without_reference_has_no_mismatch_figure() -> None:
    rows = pd.DataFrame([[0, 1, 1, -1, np.nan, 10, np.nan] + [0] * K],
                        columns=[*R.BASE_COLUMNS, *R.logit_columns(K)])
    s = R.summarize(rows, _meta())
    assert s["ref_accuracy"] is None and s["mismatches"] is None and s["instructions_mean"] is None


def test_load_run_rejects_inconsistent_summary(tmp_path: Path) -> None:
    meta = _meta()
    d = R.create_run(tmp_path, meta)
    with R.RowWriter(d / R.ROWS_CSV, K) as w:
        w.append(_row(0))
    s = R.summarize(R.read_rows(d / R.ROWS_CSV), meta)
    s["n"] = 7
    R.write_json_atomic(d / R.SUMMARY_JSON, s)
    with pytest.raises(R.ResultsError, match="n=7 but rows.csv has 1 rows"):
        R.load_run(d)
    del s["cycles_mean"]
    R.write_json_atomic(d / R.SUMMARY_JSON, s)
    with pytest.raises(R.ResultsError, match="missing keys: cycles_mean"):
        R.load_run(d)


def test_find_resumable_picks_newest_incomplete_run_of_same_model(tmp_path: Path) -> None:
    old = R.create_run(tmp_path, _meta(run_id="20240101T000000Z-ch32v003-m-aaaaaa"))
    new = R.create_run(tmp_path, _meta(run_id="20240102T000000Z-ch32v003-m-bbbbbb"))
    R.create_run(tmp_path, _meta(run_id="20240103T000000Z-ch32v003-m-cccccc", model_hash="other"))
    done = R.create_run(tmp_path, _meta(run_id="20240104T000000Z-ch32v003-m-dddddd"))
    (done / R.SUMMARY_JSON).write_text("{}")
    assert R.find_resumable(tmp_path, "ch32v003", "h1") == new
    assert old in list(R.run_dirs(tmp_path))
    assert R.find_resumable(tmp_path, "py32f003", "h1") is None
