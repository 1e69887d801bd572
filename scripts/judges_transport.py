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

from dualselect.evaluation.correction import METHOD, transport_check, transport_md


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
    ]
    for i, p in enumerate(paths):
        result = json.loads(Path(p).read_text(encoding="utf-8"))
        rows = transport_md(transport_check(result), result["max_new_tokens"])
        lines += rows if i == 0 else rows[2:]
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
