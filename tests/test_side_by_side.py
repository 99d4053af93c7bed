"""tools/side_by_side/run.py skips with a one-line reason (exit 0, nothing written) when the
reference checkout or the optional extras are missing; the rank-one export is exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "side_by_side" / "run.py"


def test_skips_with_a_reason_when_the_reference_is_missing(tmp_path):
    out = tmp_path / "page"
    done = subprocess.run([sys.executable, str(SCRIPT), "--reference", str(tmp_path / "none"),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("side_by_side: skipped — ")
    assert "not installed" in lines[0] or "not a benchopt/benchmark_bilevel checkout" in lines[0]
    assert not out.exists()


def test_rank_one_factors_rebuild_the_dense_per_sample_matrices():
    sys.path.insert(0, str(SCRIPT.parent))
    from run import rank_one

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    p, q = (torch.randn(5, k, generator=gen, dtype=torch.float64) for k in (3, 4))
    sym = rank_one((x[:, :, None] * x[:, None, :]).numpy(), symmetric=True)
    torch.testing.assert_close(sym[:, :, None] * sym[:, None, :], x[:, :, None] * x[:, None, :])
    u, w = rank_one((p[:, :, None] * q[:, None, :]).numpy(), symmetric=False)
    torch.testing.assert_close(u[:, :, None] * w[:, None, :], p[:, :, None] * q[:, None, :])
