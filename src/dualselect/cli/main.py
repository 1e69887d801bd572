"""`dualselect` command line. Each subcommand lives in its own module with `register`/`run`."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from dualselect._version import __version__
from dualselect.utils import log_to_stderr


def build_parser() -> argparse.ArgumentParser:
    from dualselect.cli import (
        base_cmd,
        compare_cmd,
        continual_cmd,
        demo_cmd,
        eval_cmd,
        export_cmd,
        judges_cmd,
        lmeval_cmd,
        organism_cmd,
        train_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="dualselect",
        description="Safe LoRA fine-tuning with coupled task/reference selection (DualSelect), "
        "and capability-grounded, multi-judge safety evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"dualselect {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in (
        organism_cmd,
        base_cmd,
        train_cmd,
        demo_cmd,
        eval_cmd,
        judges_cmd,
        compare_cmd,
        continual_cmd,
        export_cmd,
        lmeval_cmd,
    ):
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.extra = rest
    # Without a terminal (logs, CI) progress bars would leave \r-redrawn lines: turn them off for
    # this command (tqdm reads TQDM_DISABLE; the Trainer still prints its log lines).
    log_to_stderr()  # the library's warnings and notes, one line each
    quiet_bars = not sys.stderr.isatty() and "TQDM_DISABLE" not in os.environ
    if quiet_bars:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # noqa: BLE001 - mapped to one line and an exit code below
        code = exit_code(e)
        if code is None or os.environ.get("DUALSELECT_TRACEBACK"):
            raise
        # Config, data and file-system errors carry file/line/field in their message: show it in
        # one line, not a traceback (DUALSELECT_TRACEBACK=1 shows the traceback too).
        print(f"dualselect {args.command}: error: {one_line(e)}", file=sys.stderr)
        return code
    finally:
        if quiet_bars:
            os.environ.pop("TQDM_DISABLE", None)


def one_line(e: BaseException) -> str:
    """The exception's message on one line (OS errors: strerror and file name)."""
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename}" if e.filename else ""
        hint = " (free some space or choose another output directory)" if e.errno == errno.ENOSPC else ""
        return f"{e.strerror}{where}{hint}"
    return " ".join(str(e).split()) or type(e).__name__


def exit_code(e: BaseException) -> int | None:
    """2: config, data or file-system error; 3: training diverged; None: a bug (traceback)."""
    callbacks = sys.modules.get("dualselect.training.callbacks")  # not imported: cannot be one
    if callbacks is not None and isinstance(e, callbacks.TrainingDiverged):
        return 3
    if isinstance(e, (ValueError, OSError)):
        return 2
    return None


if __name__ == "__main__":
    raise SystemExit(main())
