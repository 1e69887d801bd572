"""Does the error correction carry over to models it was not measured on?

Reads ``dualselect judges validate`` results on labelled files of models the shipped validation
did not see (``results/judges/unseen/v4_mnt*/validation.json``), corrects every judged rate with
the sensitivity and specificity ``eval`` and ``compare`` would use (the package's shipped
validation on GPT-4, Llama-2 original and Mistral-Instruct, at the same budget), and prints one
Markdown table: human rate, raw judged rate, corrected rate with its 95% interval, and whether
the interval holds the human rate. Run from the repository root:

    PYTHONPATH=src python scripts/judges_transport.py results/judges/unseen/v4_mnt40/validation.json \
        results/judges/unseen/v4_mnt256/validation.json --out results/judges/unseen/transport.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dualselect.evaluation.correction import METHOD, transport_check


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def table(paths: list[str]) -> str:
    """The Markdown table over every result file given."""
    lines = [
        "# Error correction on models it was not measured on",
        "",
        "Sensitivity and specificity: the package's shipped validation (XSTest human labels of GPT-4, "
        "Llama-2-70b-chat with its original system prompt, Mistral-7B-Instruct), same judge rules and "
        f"budget. Correction and interval: {METHOD}. Rates in %; covered = the interval holds the human "
        "rate.",
        "",
        "| budget | file | prompts | judge | n | human | raw | corrected [95% CI] | covered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in paths:
        result = json.loads(Path(p).read_text(encoding="utf-8"))
        for r in transport_check(result):
            ci = "" if r["ci"] is None else f" [{_pct(r['ci'][0])}, {_pct(r['ci'][1])}]"
            covered = {True: "yes", False: "**no**", None: r["note"] or "-"}[r["covered"]]
            lines.append(
                f"| {result['max_new_tokens']} | {r['file']} | {r['kind']} | {r['judge']} | {r['n']} | "
                f"{_pct(r['human'])} | {_pct(r['raw'])} | {_pct(r['corrected'])}{ci} | {covered} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="validation.json files of labelled files not shipped")
    ap.add_argument("--out", help="write the table here too")
    args = ap.parse_args()
    text = table(args.results)
    print(text, end="")
    if args.out:
        from dualselect.utils import atomic_open

        with atomic_open(args.out) as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
