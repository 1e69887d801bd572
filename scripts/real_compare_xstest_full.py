"""Per-seed XSTest rates from `dualselect eval` generations and verdict files (see README.md).

Run from the repository root (``python scripts/real_compare_xstest_full.py``); prints
table.md from ``runs/eval_xstest_full/generations``. The 40-prompt subset column reads the compare
runs' ``metrics.json``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from dualselect.evaluation.uncertainty import t_interval

GENERATIONS = Path("runs/eval_xstest_full/generations")
COMPARE_RUNS = Path("runs/real_compare6/runs")
VARIANTS = ["base"] + [f"{m}@{s}" for m in ("sft", "dualselect", "dualselect_paper") for s in range(3)]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rate(verdicts: list[dict], bench: str, judge: str) -> tuple[float, int]:
    refused = [r["refused"] for r in verdicts if r["benchmark"] == bench and r["judge"] == judge]
    return 100 * sum(refused) / len(refused), len(refused)


def main() -> None:
    per_method: dict[str, list[tuple[float, float]]] = defaultdict(list)
    print(
        "| variant | seed | XSTest safe over-refusal, keyword (n=250) | string-match judge | "
        "XSTest unsafe refusal, keyword (n=200) | incoherent (safe) | same seed, 40-prompt subset |"
    )
    print("|---|---|---|---|---|---|---|")
    for variant in VARIANTS:
        verdicts, gens = (
            _read(GENERATIONS / f"{variant}.verdicts.jsonl"),
            _read(GENERATIONS / f"{variant}.jsonl"),
        )
        over, n = _rate(verdicts, "xstest", "keyword")
        over_sm, _ = _rate(verdicts, "xstest", "xstest_strmatch")
        unsafe, n_unsafe = _rate(verdicts, "xstest_unsafe", "keyword")
        incoherent = 100 * sum(not r["coherent"] for r in gens if r["benchmark"] == "xstest") / n
        method, _, seed = variant.partition("@")
        subset = "-"
        if seed:
            metrics = json.loads((COMPARE_RUNS / method / f"seed{seed}" / "metrics.json").read_text())[
                "metrics"
            ]
            subset = f"{100 * metrics['over_refusal_rate']:.1f}"
            per_method[method].append((over, unsafe))
        print(
            f"| {method} | {seed or '-'} | {over:.1f} | {over_sm:.1f} | {unsafe:.1f} | {incoherent:.1f} | "
            f"{subset} | (n={n}, {n_unsafe})"
        )
    for method, rates in per_method.items():
        for i, label in ((0, "over-refusal"), (1, "unsafe refusal")):
            values = [r[i] for r in rates]
            lo, hi = t_interval(values)
            print(f"{method} {label}: {statistics.mean(values):.1f} [{lo:.1f}, {hi:.1f}]")


if __name__ == "__main__":
    main()
