"""The README's walks run as written: the quick start (on real MNIST; skipped with the reason when it
is absent) and "Your model, your data" (own model and arrays, through potnn-bench run and report)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from potnn.data import DatasetError, load_mnist

README = Path(__file__).resolve().parent.parent / "README.md"


def _block(heading: str, language: str) -> str:
    """The first ``language`` code block of the README section ``heading``."""
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _quick_start() -> str:
    return _block("## Quick start", "python")


def test_readme_quick_start_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        load_mnist("test")
    except DatasetError as exc:
        pytest.skip(str(exc))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(_quick_start(), str(README), "exec"), namespace)
    header = (tmp_path / "model.h").read_text()
    assert header.startswith("/* potnn export") and "potnn_predict" in header
    assert namespace["report"].ram_bytes <= 2048  # type: ignore[attr-defined]


def test_readme_your_model_your_data_walk_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train and export the README's own 1-D model on its own arrays, then its two shell commands."""
    monkeypatch.chdir(tmp_path)
    exec(compile(_block("## Your model, your data", "python"), str(README), "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "gesture.h").exists() and (tmp_path / "gesture.potnn").exists()
    env = {**os.environ, "POTNN_CACHE": str(tmp_path / "cache")}
    commands = [line.split() for line in _block("## Your model, your data", "sh").splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["potnn-bench", "run"], ["potnn-bench", "report"]]
    for argv in commands:
        r = subprocess.run([sys.executable, "-m", "bench.cli", *argv[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
    (summary,) = (tmp_path / "results").glob("*/summary.json")
    s = json.loads(summary.read_text())
    assert s["mismatches"] == 0 and s["n"] == 100 and s["dataset"] == "test.npz" and s["input_shape"] == [3, 64]
    assert s["accuracy"] >= 0.9 and s["class_names"] == ["x burst", "y burst", "z burst", "none"]
    html = (tmp_path / "results" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 5
