"""`dualselect train`: one method, config from YAML and/or flags."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        add_help=False,
        allow_abbrev=False,
        help="Fine-tune with a method (sft, dualselect, ...). Any config field is a --flag; "
        "`dualselect train --method M --help` lists them.",
    )
    p.add_argument("--config", default=None, help="YAML file of config fields (flags override it).")
    p.add_argument(
        "--method",
        default=None,
        help="Training method or named preset, any name `compare` and `demo` accept (see "
        "`dualselect compare --list-methods`); default: the YAML's `method`, else sft.",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace a previous run in output_dir: only the entries its run_manifest.json lists "
        "are removed (and named); a file no run wrote is never written over (refused). Without it a "
        "non-empty output_dir is refused.",
    )
    p.add_argument(
        "--resume-with-changes",
        action="store_true",
        help="With resume_from_checkpoint: allow training settings that differ from the checkpoint's "
        "config (both are recorded in config.yaml); without it they are refused. Another method "
        "is always refused.",
    )
    p.add_argument("-h", "--help", action="store_true", help="Show the chosen method's config fields.")
    p.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    from dualselect.training.fieldspec import field_spec, precheck
    from dualselect.training.run import resolve_method
    from dualselect.utils import load_yaml_config

    method = args.method
    if method is None and args.config:
        method = load_yaml_config(args.config)[0].get("method")
    method = method or "sft"
    trainer_method, preset = resolve_method(method)  # unknown names fail here, before any work
    if args.help:
        from dualselect.cli.config_help import format_config_help
        from dualselect.training.presets import PRESETS

        intro = None
        if method != trainer_method or preset:
            intro = f"{method}: {PRESETS[method][2]}. The {trainer_method} trainer with {preset}."
        spec = field_spec(trainer_method)
        print(format_config_help(spec, f"dualselect train --method {method}", preset, intro), end="")
        return 0
    # Config errors without importing torch (fast); load_config re-checks everything.
    precheck(method, args.config, args.extra, overwrite=args.overwrite)
    from dualselect.experiments.helpful_pool import ensure_helpful_pool
    from dualselect.training.run import load_config, run_training

    cfg = load_config(method, args.config, args.extra)
    ensure_helpful_pool(cfg)  # two-sided runs on the organism: its pool, built once
    trainer = run_training(
        method, cfg, overwrite=args.overwrite, allow_resume_changes=args.resume_with_changes
    )
    print(
        f"{method}: saved adapter, config.yaml and log.json to {cfg.output_dir} "
        f"({trainer.state.global_step} optimiser steps)"
    )
    return 0
