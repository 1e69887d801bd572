"""`dualselect export`: a run's adapter with its model card, or the merged model."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="Export a training run: the adapter and its model card, or with --merge the base "
        "model with the adapter merged in (loads with plain transformers).",
    )
    p.add_argument("run_dir", help="Run directory (holds adapter_config.json).")
    p.add_argument("--out", required=True, help="Output directory (refused if not empty, unless --force).")
    p.add_argument("--merge", action="store_true", help="Merge the adapter into the base model.")
    p.add_argument(
        "--base", default=None, help="Base model (default: the run's config.yaml, else the adapter's)."
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Write into a non-empty --out: the previous export's files (its run_manifest.json) are "
        "replaced, other files kept; a file no export wrote is never written over (refused).",
    )
    p.add_argument(
        "--eval-results",
        default=None,
        help="A `dualselect eval` output (results.json or its directory): its metrics for this run "
        "go into the model card.",
    )
    p.add_argument(
        "--eval-name",
        default=None,
        help="The run's variant name in --eval-results (default: RUN_DIR's name).",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dualselect.training.export import evaluation_from_results, export_run

    evaluation = None
    if args.eval_results:
        name = args.eval_name or Path(args.run_dir).resolve().name
        evaluation = evaluation_from_results(args.eval_results, name)
    out = export_run(
        args.run_dir, args.out, merge=args.merge, base=args.base, force=args.force, evaluation=evaluation
    )
    what = "merged model" if args.merge else "adapter"
    print(f"export: wrote the {what}, tokenizer and model card to {out}")
    return 0
