"""`dualselect` command line. Each subcommand lives in its own module with `register`/`run`."""

from __future__ import annotations

import argparse
import sys

from dualselect import __version__


def build_parser() -> argparse.ArgumentParser:
    from dualselect.cli import base_cmd, compare_cmd, demo_cmd, eval_cmd, organism_cmd, train_cmd

    parser = argparse.ArgumentParser(
        prog="dualselect",
        description="Safe LoRA fine-tuning with coupled task/reference selection (DualSelect), "
        "and capability-grounded, multi-judge safety evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"dualselect {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in (organism_cmd, base_cmd, train_cmd, demo_cmd, eval_cmd, compare_cmd):
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.extra = rest
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        # Config and data errors carry file/line/field in their message: show it, not a traceback.
        print(f"dualselect {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
