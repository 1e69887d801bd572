"""Recompute a comparison's tables from its committed ``comparison.json`` with the current interval
method (t over the per-group means, :func:`dualselect.experiments.table.regroup`; one group:
Student-t over seeds, clipped to each metric's range), or a continual benchmark's from its
``summary.json`` (:func:`dualselect.continual.report.reclip`).

    python scripts/retable.py results/compare_organism

rewrites ``comparison.{json,md,csv}`` and ``safety_vs_capability.png`` in that directory. Only the
intervals, ties and the matched-capability choice change; the means are the committed ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dualselect.experiments.table import regroup, write_tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path, help="a compare output directory holding comparison.json")
    args = ap.parse_args()
    path = args.directory / "comparison.json"
    continual = args.directory / "summary.json"
    if not path.is_file() and continual.is_file():  # a `dualselect continual` directory
        from dualselect.continual.report import reclip, write_report
        from dualselect.utils import write_json

        summary = reclip(json.loads(continual.read_text()))
        write_json(continual, summary)
        write_report(summary, args.directory)
        print(f"rewrote {continual} and its report")
        return
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    table = regroup(json.loads(path.read_text()))
    write_tables(table, args.directory, table["safety_metric"], table["capability_metric"])
    print(f"rewrote {args.directory}/comparison.{{json,md,csv}} and safety_vs_capability.png")


if __name__ == "__main__":
    main()
