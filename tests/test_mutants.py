"""The mutation script (`make mutants`): every mutant applies to the current source, a missing
pattern fails loudly, and (slow) a mutant run end to end is reported killed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _mutants():
    return load_script("scripts/mutants.py", register=True)  # dataclasses look their module up


def test_every_mutant_applies_and_changes_the_source(tmp_path):
    mod = _mutants()
    names = {m.name for m in mod.MUTANTS}
    assert names == {
        "task_direction_flipped",
        "reference_direction_flipped",
        "correction_sign_flipped",
        "refresh_skipped",
        "u_frozen",
        "soft_weights_uniform",
        "token_budget_ignored",
        "prefilter_keeps_lowest_losses",
        "helpful_direction_flipped",
        "refusal_penalty_sign_dropped",
        "unlikelihood_slope_ignored",
    }
    for m in mod.MUTANTS:
        copy = tmp_path / m.name
        shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
        before = {e.path: (copy / e.path).read_text() for e in m.edits}
        mod.apply(m, copy)
        for path, text in before.items():
            after = (copy / path).read_text()
            assert after != text, m.name
            compile(after, path, "exec")  # still valid Python


def test_missing_pattern_fails_loudly(tmp_path):
    mod = _mutants()
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    m = mod.Mutant("moved", "code moved", [mod.Edit(mod.CORRECTION, r"^this line does not exist$", "x")])
    with pytest.raises(mod.PatternNotFound, match="pattern not found"):
        mod.apply(m, tmp_path)


@pytest.mark.slow
def test_mutation_script_reports_a_killed_mutant(organism_dir, tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "mutants.py"),
            "--only",
            "correction_sign_flipped",
            "--tests",
            "tests/test_algorithm_pins.py",
            "--json",
            str(tmp_path / "m.json"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "correction_sign_flipped      killed" in p.stdout and "1/1 mutants killed" in p.stdout
