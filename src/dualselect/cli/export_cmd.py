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
    p.add_argument("--force", action="store_true", help="Replace a non-empty --out.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dualselect.training.export import export_run

    out = export_run(args.run_dir, args.out, merge=args.merge, base=args.base, force=args.force)
    what = "merged model" if args.merge else "adapter"
    print(f"export: wrote the {what}, tokenizer and model card to {out}")
    return 0
