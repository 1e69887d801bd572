"""Committed result tables that a script recomputes from committed files: the script's output
must equal the committed table, so a judge or interval change cannot leave a stale number."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_full_xstest_table_of_the_v6_runs_recomputes_from_its_generations():
    table = ROOT / "results" / "real_compare_v6" / "xstest_full" / "table.md"
    out = _run("scripts/real_compare_xstest_full.py")
    assert out == table.read_text(encoding="utf-8")
    # what the runs' own verdict files gave with the keyword judge (base over-refusal, unsafe)
    assert "| base | - | 12.4 | 12.0 | 13.6 | 67.0 |" in out
    assert "105.0" not in out and "[-" not in out  # rates stay in [0, 100]
