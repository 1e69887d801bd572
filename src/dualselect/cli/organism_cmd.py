"""`dualselect organism build|stats`."""

from __future__ import annotations

import argparse
import json

from dualselect.utils import write_json


def register(sub) -> None:
    p = sub.add_parser(
        "organism", help="Build or inspect the model organism (tiny safety-aligned LM + world)."
    )
    osub = p.add_subparsers(dest="organism_command", required=True, metavar="ACTION")
    b = osub.add_parser(
        "build",
        help="Install the shipped default organism (sha256-verified) or train one (about 3-4 min on "
        "2 CPU cores); cached by config hash.",
    )
    b.add_argument(
        "--out",
        default=None,
        help="Directory (default: ~/.cache/dualselect/organism/<hash>, "
        "or $DUALSELECT_CACHE/organism/<hash>).",
    )
    b.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Training seed of the organism instance (default 0: the shipped organism). Other seeds "
        "train another instance on the same world (what `compare` varies as organism_seeds).",
    )
    b.add_argument("--world-seed", type=int, default=0, help="Seed of the world's splits (default 0).")
    b.add_argument(
        "--from-scratch",
        action="store_true",
        help="Train even when an organism is shipped for this config, and report whether the "
        "result matches the shipped sha256 checksums.",
    )
    b.add_argument(
        "--force",
        action="store_true",
        help="Replace an organism already in --out (never a directory that holds no organism).",
    )
    b.set_defaults(func=run_build)
    s = osub.add_parser(
        "stats",
        help="Acceptance metrics: base model on held-out probes, and Standard SFT "
        "erosion on the RedOrca-style task.",
    )
    s.add_argument("dir", nargs="?", default=None, help="Organism directory (default: the cached default).")
    s.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    s.add_argument("--no-sft", action="store_true", help="Skip the Standard SFT erosion check (~30 s).")
    s.add_argument("--out", default=None, help="Also write the stats JSON here.")
    s.set_defaults(func=run_stats)


def run_build(args: argparse.Namespace) -> int:
    from dualselect.organism.artifact import OrganismConfig, WorldConfig, compare_with_shipped
    from dualselect.organism.train import build_organism

    cfg = OrganismConfig(seed=args.seed, world=WorldConfig(seed=args.world_seed))
    path = build_organism(
        args.out, cfg, force=args.force or args.from_scratch, from_scratch=args.from_scratch
    )
    meta = json.loads((path / "organism.json").read_text())
    how = (
        "shipped, sha256 verified"
        if meta.get("source") == "shipped"
        else f"trained in {meta.get('build_seconds')} s"
    )
    print(f"organism: {path}  ({meta['n_parameters']:,} parameters, {how})")
    if meta.get("source") != "shipped":
        check = compare_with_shipped(path, cfg)
        if check["shipped"] and check["match"]:
            print("  identical to the shipped organism (every sha256 matches)")
        elif check["shipped"]:
            print(
                "  DIFFERS from the shipped organism in: " + ", ".join(check["differing"]) + "\n"
                "  (CPU floating-point kernels differ across machines; numbers quoted in the docs "
                "come from the shipped organism: drop --from-scratch to use it)"
            )
    return 0


def organism_stats(path: str | None = None, with_sft: bool = True, workdir: str | None = None) -> dict:
    """Base-model probe metrics, optionally Standard SFT's, and the acceptance checks."""
    import tempfile

    from dualselect.evaluation.probes import evaluate_on_probes
    from dualselect.organism.stats import ORGANISM_TRAINING, acceptance
    from dualselect.organism.train import build_organism
    from dualselect.training.model import load_model_and_tokenizer
    from dualselect.training.run import load_config, run_training

    path = str(path or build_organism())
    model, tok = load_model_and_tokenizer(path)
    base = evaluate_on_probes(model, tok, path)
    stats = {"organism": path, "base": base}
    sft = None
    if with_sft:
        out = workdir or tempfile.mkdtemp(prefix="dualselect-stats-")
        cfg = load_config(
            "sft",
            overrides={
                "model_name_or_path": path,
                "train_data": f"{path}/data/redorca_train.jsonl",
                "output_dir": f"{out}/sft",
                **ORGANISM_TRAINING,
            },
        )
        trainer = run_training("sft", cfg)
        sft = evaluate_on_probes(trainer.model, tok, path)
        stats["sft"] = sft
    stats["acceptance"] = acceptance(base, sft)
    return stats


def run_stats(args: argparse.Namespace) -> int:
    import contextlib
    import sys

    # Training logs go to stderr so that --json prints nothing but JSON on stdout.
    with contextlib.redirect_stdout(sys.stderr):
        stats = organism_stats(args.dir, with_sft=not args.no_sft)
    if args.out:
        write_json(args.out, stats)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        from dualselect.cli.demo_cmd import format_table

        print(format_table({k: stats[k] for k in ("base", "sft") if k in stats}))
        for name, ok in stats["acceptance"].items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(stats["acceptance"].values()) else 1
