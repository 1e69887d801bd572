#!/usr/bin/env python
"""Mutation check: does the test suite catch a wrong DualSelect algorithm?

Each mutant is one deliberate bug, applied to a COPY of ``src/`` (the working tree is never
touched) by replacing a small, clearly anchored source pattern. If a pattern is not found exactly
the expected number of times, the script fails loudly ("pattern not found") instead of skipping
the mutant: a refactor that moves the code must update the pattern here.

For every mutant the selected tests run against the mutated copy (``PYTHONPATH`` points at it;
checked before each run); a mutant is *killed* when at least one test fails, *survived* when
all pass. The unmutated copy runs first and must pass, or the report would mean nothing.
Exit status 0 only if every mutant is killed.

    python scripts/mutants.py                 # all mutants, report on stdout
    python scripts/mutants.py --only correction_sign_flipped --json runs/mutants.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/test_algorithm_pins.py",
    "tests/test_selection.py",
    "tests/test_selection_scoring.py",
    "tests/test_selection_correction.py",
    "tests/test_selection_prefilter.py",
    "tests/test_dualselect_trainer.py",
    "tests/test_two_sided.py",
]


@dataclass
class Edit:
    """Replace ``pattern`` (a regex, MULTILINE) by ``repl`` in ``path``; it must match ``count`` times."""

    path: str
    pattern: str
    repl: str
    count: int = 1


@dataclass
class Mutant:
    name: str
    what: str
    edits: list[Edit]


SCORING = "src/dualselect/selection/scoring.py"
CORRECTION = "src/dualselect/selection/correction.py"
TRAINER = "src/dualselect/training/dualselect_trainer.py"
PREFILTER = "src/dualselect/selection/prefilter.py"
OBJECTIVES = "src/dualselect/selection/objectives.py"

MUTANTS = [
    Mutant(
        "task_direction_flipped",
        "task selection keeps the HIGHEST t_j (t_j negated)",
        [
            Edit(
                SCORING,
                r"^(\s+)return mu_task \* losses - nu \* cos_r$",
                r"\1return -(mu_task * losses - nu * cos_r)",
            )
        ],
    ),
    Mutant(
        "reference_direction_flipped",
        "reference selection keeps the LOWEST s_i (s_i negated)",
        [
            Edit(
                SCORING,
                r"^(\s+)return mu_ref \* losses \+ nu \* \(-cos_u\)$",
                r"\1return -(mu_ref * losses + nu * (-cos_u))",
            )
        ],
    ),
    Mutant(
        "correction_sign_flipped",
        "update with d - eta r instead of d + eta r",
        [Edit(CORRECTION, r"^(\s+)return d \+ eta \* r$", r"\1return d - eta * r")],
    ),
    Mutant(
        "refresh_skipped",
        "references are selected once and never refreshed",
        [
            Edit(
                TRAINER,
                r"^(\s+)if not cfg\.reference_refresh:$",
                r"\1if True:  # MUTANT: refresh skipped",
            )
        ],
    ),
    Mutant(
        "u_frozen",
        "every refresh scores against the first task direction u",
        [
            Edit(
                TRAINER,
                r"^(\s+)u = (self\._u_sum\b.*)$",
                r"\1u = self._u if self._u is not None else (\2)  # MUTANT: u frozen",
            )
        ],
    ),
    Mutant(
        "soft_weights_uniform",
        "soft selection gives every kept sample the same weight",
        [
            Edit(SCORING, r"^(\s+)w = w_all\[idx\]$", r"\1w = torch.ones_like(w_all[idx])"),
            Edit(
                SCORING,
                r"^(\s+)w = torch\.softmax\(-scores\[idx\]\.double\(\) / tau, dim=0\)\.to\(dtype\)$",
                r"\1w = torch.full((m,), 1.0 / m, dtype=dtype)",
            ),
        ],
    ),
    Mutant(
        "token_budget_ignored",
        "the token-budget rule keeps every sample of the batch",
        [
            Edit(
                SCORING,
                r"^(\s+)m = min\(max\(1, m\), scores\.numel\(\)\)$",
                r"\1m = scores.numel()  # MUTANT: budget ignored",
            )
        ],
    ),
    Mutant(
        "prefilter_keeps_lowest_losses",
        "two-stage refresh: the candidates are the M LOWEST losses",
        [
            Edit(
                PREFILTER,
                r"^(\s+)keep = rank_order\(losses, largest=True\)\[: int\(m\)\]$",
                r"\1keep = rank_order(losses, largest=False)[: int(m)]",
            )
        ],
    ),
    Mutant(
        "helpful_direction_flipped",
        "two-sided: the helpfulness direction r_h enters the filter and the correction negated",
        [
            Edit(
                TRAINER,
                r"^(\s+)cos_r = \(cos_r \+ lam \* cos_h\) / \(1 \+ lam\)$",
                r"\1cos_r = (cos_r - lam * cos_h) / (1 + lam)",
            ),
            Edit(
                TRAINER,
                r"^(\s+)r_corr = \(self\._r \+ lam \* self\._r_help\) / \(1 \+ lam\)$",
                r"\1r_corr = (self._r - lam * self._r_help) / (1 + lam)",
            ),
        ],
    ),
    Mutant(
        "refusal_penalty_sign_dropped",
        "two-sided: the refusal objectives preserve the refusals instead of pushing them down",
        [
            Edit(
                OBJECTIVES,
                r'^(\s+)return 1\.0 if objective == "preserve" else -1\.0$',
                r"\1return 1.0",
            )
        ],
    ),
    Mutant(
        "unlikelihood_slope_ignored",
        "two-sided: the unlikelihood's direction weighs every reference alike (its bound dropped)",
        [
            Edit(
                TRAINER,
                r"^(\s+)wo = wb \* torch\.tensor\(\[slope\[i\] for i in ib\], device=wb\.device\)(.*)$",
                r"\1wo = wb\2",
            )
        ],
    ),
]


class PatternNotFound(RuntimeError):
    pass


def apply(mutant: Mutant, src_root: Path) -> None:
    """Apply every edit of ``mutant`` under ``src_root`` (a copy of the repository's files)."""
    for e in mutant.edits:
        f = src_root / e.path
        text = f.read_text(encoding="utf-8")
        new, n = re.subn(e.pattern, e.repl, text, flags=re.MULTILINE)
        if n != e.count:
            raise PatternNotFound(
                f"mutant {mutant.name}: pattern not found {e.count} time(s) in {e.path} "
                f"(found {n}): {e.pattern!r}. The code moved: update scripts/mutants.py."
            )
        f.write_text(new, encoding="utf-8")


def run_tests(copy: Path, tests: list[str], python: str, timeout: float) -> tuple[bool, str, float]:
    """(all passed, tail of the output, seconds) for ``tests`` against the copy's ``src``."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "HF_HUB_OFFLINE": "1"}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    which = subprocess.run(
        [python, "-c", "import dualselect, sys; sys.stdout.write(dualselect.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if not Path(which).resolve().is_relative_to((copy / "src").resolve()):
        raise RuntimeError(f"the tests would import {which}, not the mutated copy under {copy}")
    t0 = time.time()
    p = subprocess.run(
        [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
    if p.returncode not in (0, 1):
        # 1 = some test failed (the mutant is killed); anything else is an error of the run itself
        # (collection error, usage error, interrupted): still a failing suite, reported as such.
        tail = f"[pytest exit code {p.returncode}]\n" + tail
    return p.returncode == 0, tail, time.time() - t0


def make_copy(dest: Path) -> Path:
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", dest / "configs")  # some tests read the shipped configs
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="Mutant names (default: all).")
    ap.add_argument("--tests", nargs="*", default=TESTS, help="Test files to run per mutant.")
    ap.add_argument("--python", default=sys.executable, help="Interpreter with the dependencies.")
    ap.add_argument("--timeout", type=float, default=1200, help="Seconds per test run.")
    ap.add_argument("--json", default=None, help="Also write the report here.")
    ap.add_argument("--list", action="store_true", help="List the mutants and exit.")
    args = ap.parse_args(argv)
    chosen = MUTANTS if args.only is None else [m for m in MUTANTS if m.name in set(args.only)]
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:<28} {m.what}")
        return 0
    if args.only is not None and len(chosen) != len(set(args.only)):
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        ap.error(f"unknown mutant(s) {unknown}; see --list")

    # Every pattern must match on the current source before anything runs.
    with tempfile.TemporaryDirectory(prefix="mutants-check-") as tmp:
        for m in chosen:
            c = Path(tmp) / m.name
            (c / "src").parent.mkdir(parents=True)
            shutil.copytree(ROOT / "src", c / "src", ignore=shutil.ignore_patterns("__pycache__"))
            apply(m, c)

    report = {"tests": args.tests, "mutants": []}
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        base = make_copy(Path(tmp) / "unmutated")
        ok, tail, secs = run_tests(base, args.tests, args.python, args.timeout)
        print(f"{'unmutated':<28} {'PASS' if ok else 'FAIL'} ({secs:.0f} s)", flush=True)
        if not ok:
            print(tail)
            print("the unmutated tests fail: fix them before judging mutants", file=sys.stderr)
            return 2
        for m in chosen:
            copy = make_copy(Path(tmp) / m.name)
            apply(m, copy)
            passed, tail, secs = run_tests(copy, args.tests, args.python, args.timeout)
            failed = [ln for ln in tail.splitlines() if ln.startswith(("FAILED", "ERROR"))]
            status = "SURVIVED" if passed else "killed"
            report["mutants"].append(
                {
                    "name": m.name,
                    "what": m.what,
                    "status": status,
                    "seconds": round(secs, 1),
                    "failed": failed,
                }
            )
            print(f"{m.name:<28} {status:<9} ({secs:.0f} s)  {m.what}", flush=True)
            for ln in failed[:2]:
                print(f"    {ln[:160]}")
            shutil.rmtree(copy, ignore_errors=True)
    survived = [m["name"] for m in report["mutants"] if m["status"] == "SURVIVED"]
    print(
        f"\n{len(report['mutants']) - len(survived)}/{len(report['mutants'])} mutants killed"
        + (f"; SURVIVED: {', '.join(survived)}" if survived else "")
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
