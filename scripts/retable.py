"""Recompute a comparison's tables from its committed ``comparison.json`` with the current interval
method (t over the per-group means, :func:`dualselect.experiments.table.regroup`).

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
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    table = regroup(json.loads(path.read_text()))
    write_tables(table, args.directory, table["safety_metric"], table["capability_metric"])
    print(f"rewrote {args.directory}/comparison.{{json,md,csv}} and safety_vs_capability.png")


if __name__ == "__main__":
    main()
