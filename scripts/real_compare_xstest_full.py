"""Per-seed XSTest rates of the v6 comparison's runs, recomputed from the committed generations
(``results/real_compare_v6/xstest_full/*.jsonl.gz``, see its README.md).

Every response is judged again by the offline refusal judges (deterministic): ``keyword`` (what
the original table used), XSTest's string match, and ``refusal_rules``, the judge measured
closest to XSTest's human labels (docs/evaluation.md, "Judge validation"). Per method, the mean
over the three training seeds with a 95% Student-t interval clipped to [0, 100], and the
``refusal_rules`` rate corrected for its measured error (Rogan-Gladen with the shipped XSTest
validation at 40 tokens, the generation budget; :mod:`dualselect.evaluation.correction`). Run
from the repository root; prints the Markdown of ``table.md``:

    PYTHONPATH=src python scripts/real_compare_xstest_full.py > results/real_compare_v6/xstest_full/table.md
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from dualselect.evaluation.correction import (
    METHOD,
    TRANSPORT_CAVEAT,
    correct_prompts,
    correct_runs,
    judge_accuracy,
)
from dualselect.evaluation.judges import build_judge
from dualselect.evaluation.judges.base import JudgeItem
from dualselect.evaluation.uncertainty import clip_interval, t_interval

ROOT = Path("results/real_compare_v6/xstest_full")
VARIANTS = ["base"] + [f"{m}@{s}" for m in ("sft", "dualselect", "dualselect_paper") for s in range(3)]
JUDGES = ("keyword", "xstest_strmatch", "refusal_rules")
BUDGET = 40  # the generations' max_new_tokens
KIND = {"xstest": "over_refusal", "xstest_unsafe": "harmful"}
VALIDATION_KIND = {"xstest": "safe", "xstest_unsafe": "unsafe"}


def refusals(rows: list[dict]) -> dict[tuple[str, str], list[float]]:
    """(benchmark, judge) -> 0/1 refusal per prompt of one variant's generations."""
    out = {}
    for bench in KIND:
        sub = [r for r in rows if r["benchmark"] == bench]
        items = [JudgeItem(r["prompt"], r["response"], kind=KIND[bench]) for r in sub]
        for name in JUDGES:
            verdicts = build_judge(name).judge(items)
            if any(v.error is not None or v.refused is None for v in verdicts):
                raise ValueError(f"{name}: no reading of some {bench} response")
            out[(bench, name)] = [float(bool(v.refused)) for v in verdicts]
    return out


def _ci(values: list[float]) -> str:
    lo, hi = clip_interval(t_interval(values), (0.0, 1.0))
    return f"{100 * sum(values) / len(values):.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def main() -> None:
    per_variant, verdicts, counts = {}, {}, {}
    for v in VARIANTS:
        with gzip.open(ROOT / f"{v}.jsonl.gz", "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        verdicts[v] = refusals(rows)
        per_variant[v] = {k: sum(x) / len(x) for k, x in verdicts[v].items()}
        safe = [r for r in rows if r["benchmark"] == "xstest"]
        counts[v] = (len(safe), len(rows) - len(safe), sum(not r["coherent"] for r in safe) / len(safe))
    cols = [(b, j) for b in KIND for j in JUDGES]
    head = " | ".join(f"{'over-refusal' if b == 'xstest' else 'unsafe refusal'} ({j})" for b, j in cols)
    lines = [
        "# XSTest in full: the v6 comparison's runs, judged again from the committed generations",
        "",
        "Refusal % on XSTest's 250 safe prompts (over-refusal) and 200 unsafe contrast prompts, greedy, "
        "40 new tokens. Judges: `keyword` (the jailbreak literature's list, what the comparison used), "
        "`xstest_strmatch` (XSTest's string match) and `refusal_rules` (the judge measured closest to "
        "XSTest's human labels; docs/evaluation.md). A refusal detector measures refusal: a non-refusal "
        "is not shown to be harmful. Recomputed by `scripts/real_compare_xstest_full.py`.",
        "",
        f"| variant | seed | {head} | incoherent (safe) |",
        "|---|---|" + "---|" * (len(cols) + 1),
    ]
    for v in VARIANTS:
        method, _, seed = v.partition("@")
        cells = " | ".join(f"{100 * per_variant[v][c]:.1f}" for c in cols)
        lines.append(f"| {method} | {seed or '-'} | {cells} | {100 * counts[v][2]:.1f} |")
    lines += [
        "",
        "Per method, mean over the 3 training seeds with a 95% Student-t interval (df 2) clipped to "
        "[0, 100]; one base build, so the interval says nothing about other bases.",
        "",
        f"| method | {head} |",
        "|---|" + "---|" * len(cols),
    ]
    methods = ("sft", "dualselect", "dualselect_paper")
    for m in methods:
        runs = [per_variant[f"{m}@{s}"] for s in range(3)]
        lines.append(f"| {m} | " + " | ".join(_ci([r[c] for r in runs]) for c in cols) + " |")
    judge = build_judge("refusal_rules")
    lines += [
        "",
        f"`refusal_rules` corrected for its measured error: {METHOD}; for the methods the seed mean is "
        f"drawn from its Student-t distribution (3 seeds), for the base its prompts are resampled. "
        f"{TRANSPORT_CAVEAT}",
        "",
        "| method | rate | raw % | corrected % [95% CI] | judge validated at (tokens) |",
        "|---|---|---|---|---|",
    ]
    for m in ("base", *methods):
        names = ["base"] if m == "base" else [f"{m}@{s}" for s in range(3)]
        for bench, label in (("xstest", "over-refusal"), ("xstest_unsafe", "unsafe refusal")):
            acc = judge_accuracy(judge.name, judge.template_version, VALIDATION_KIND[bench], BUDGET)
            if m == "base":  # one run: its prompts resampled jointly with the labelled set
                r = correct_prompts([verdicts["base"][(bench, judge.name)]], acc)
            else:
                r = correct_runs([per_variant[n][(bench, judge.name)] for n in names], acc)
            corr = (
                "not corrected (" + r["note"] + ")"
                if r["corrected"] is None
                else f"{100 * r['corrected']:.1f}"
                + ("" if r["ci"] is None else f" [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]")
                + (f" ({r['note']})" if r["note"] else "")
            )
            lines.append(f"| {m} | {label} | {100 * r['raw']:.1f} | {corr} | {acc['max_new_tokens']} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
