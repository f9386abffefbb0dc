"""The README's quick start runs as written (on real MNIST; skipped with the reason when it is absent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from potnn.data import DatasetError, load_mnist

README = Path(__file__).resolve().parent.parent / "README.md"


def _quick_start() -> str:
    text = README.read_text()
    section = text[text.index("## Quick start"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


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
