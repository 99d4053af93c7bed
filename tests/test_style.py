"""The project is ``ruff`` clean (pyproject.toml's [tool.ruff] rules): checked in the test run,
so that CI — which runs the README's test command — catches a style regression too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (pip install "
                    "-e '.[dev]')")
def test_ruff_clean():
    out = subprocess.run(["ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
