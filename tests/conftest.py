"""Shared pytest options: `--stress-full` runs the full bit-exactness stress test (CI runs a reduced count)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stress-full", action="store_true", default=False,
                     help="run the bit-exactness stress test on 120 random architectures instead of 24")
