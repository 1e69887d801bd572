"""`dualselect base build|stats`: the safety-aligned real base, built from a recipe file."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "base",
        help="Build or check a safety-aligned real base (a chat model aligned on refusals to real "
        "harmful prompts by a recipe file; SmolLM2-135M-Instruct's is shipped) and the real-model "
        "study's attack and reference data. See docs/real_model.md.",
    )
    bsub = p.add_subparsers(dest="base_command", required=True, metavar="ACTION")
    b = bsub.add_parser(
        "build",
        help="Build (or resume) an aligned base from a recipe, cached by the content hash of the "
        "full recipe and its input files ($DUALSELECT_CACHE/realbase/<base>-<key>; "
        "~/.cache/dualselect by default), then the real-model study's attack and reference data "
        "(experiments/real_data.py) and the helpfulness pool of two-sided DualSelect, written into "
        "its data/ (kept if already there); prints its directory. The recipe (YAML) sets the base "
        "model, the splits, the alignment LoRA, the optional refusal-unlikelihood term and the "
        "calibration (fields: docs/real_model.md). The default recipe of smollm2-135m takes about "
        "3 hours on a 2-core CPU.",
        description="Recipe fields: base, splits (seed, sizes), answer_tokens, lora_r, lora_alpha, "
        "lora_target_modules, learning_rate, max_steps, batch_size, max_length, unlikelihood_weight, "
        "unlikelihood_prompts, unlikelihood_prompts_per_step, contrast_repeat, align_seed, "
        "delta_scales, calib_max_over_refusal, calib_min_refusal, calib_tokens, align_attempts, "
        "align_select, calib_task_rows, calib_max_task_drop. See docs/real_model.md.",
    )
    b.add_argument(
        "name",
        nargs="?",
        default=None,
        help="Registered base whose shipped recipe is built (default smollm2-135m: "
        "realbase/recipes/smollm2-135m-safe.yaml, the base `smollm2-135m-safe` names).",
    )
    b.add_argument(
        "--recipe",
        default=None,
        metavar="PATH",
        help="A recipe file instead of a shipped one (any chat model: `base:` a registered name, a "
        "local checkpoint or a hub id; fields it leaves out keep the SmolLM2 recipe's values).",
    )
    b.add_argument("--out", default=None, help="Build here instead of the cache.")
    b.add_argument(
        "--data-dir", default=None, help="Benchmark files (default $DUALSELECT_DATA or ../shared/data)."
    )
    b.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Override the recipe's splits.seed (split sampling, shuffles and, unless the recipe "
        "sets align_seed, the first training seed); a build with another seed has its own key and "
        "is not the base the name `<base>-safe` resolves to.",
    )
    b.set_defaults(func=run_build)
    s = bsub.add_parser(
        "stats",
        help="Acceptance on held-out prompts (keyword judge): HarmBench standard and StrongREJECT "
        "refusal, XSTest safe over-refusal, task exact match; shipped vs aligned.",
    )
    s.add_argument(
        "dir", nargs="?", default=None, help="Built real base (default: the built smollm2-135m-safe)."
    )
    s.add_argument("--out", default="runs/realbase_stats", help="Output directory (resumable).")
    s.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="SUITE=N",
        help="Fixed-seed subset of a suite (harmbench, strongreject, advbench, xstest_safe, task_test).",
    )
    s.add_argument("--max-new-tokens", type=int, default=48, help="Greedy budget (default 48; >= 32).")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--shipped-suites",
        default=None,
        metavar="A,B",
        help="Evaluate the shipped model on these suites only (default: all; must include task_test, "
        "the capability reference). Its refusal rates do not enter the acceptance.",
    )
    s.set_defaults(func=run_stats)


def _cfg(args: argparse.Namespace):
    """The validated recipe of ``base build``'s arguments."""
    from dualselect.realbase.recipe import default_recipe, load_recipe

    if args.recipe and args.name:
        raise ValueError(f"base build: give a base name ({args.name}) or --recipe, not both")
    path = args.recipe or default_recipe(args.name or "smollm2-135m")
    overrides = {"splits": {"seed": args.seed}} if args.seed is not None else {}
    return load_recipe(path, **overrides)


def run_build(args: argparse.Namespace) -> int:
    from dualselect.experiments.real_data import build_study_data
    from dualselect.realbase.build import build_real_base
    from dualselect.realbase.helpful import build_helpful_pool

    path = build_real_base(_cfg(args), args.out, data_dir=args.data_dir)
    build_study_data(path)  # task_train/task_clean/references/disjointness in data/; kept if there
    build_helpful_pool(path)  # next to data/references.jsonl; kept if already there
    print(path)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from dualselect.models.registry import built_safe_base
    from dualselect.realbase.stats import base_stats

    if args.max_new_tokens < 32:
        raise ValueError("--max-new-tokens: at least 32, or refusal detection is not honest")
    limits = {}
    for spec in args.limit:
        name, sep, n = spec.partition("=")
        if not sep or not n.isdigit():
            raise ValueError(f"--limit {spec!r}: expected SUITE=N")
        limits[name] = int(n)
    path = args.dir or built_safe_base("smollm2-135m-safe")  # never builds: a clear error instead
    shipped = [x for x in args.shipped_suites.split(",") if x] if args.shipped_suites else None
    stats = base_stats(
        path,
        args.out,
        limits=limits,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        shipped_suites=shipped,
    )
    print(json.dumps({k: stats[k] for k in ("shipped", "safe", "acceptance", "n")}, indent=2))
    return 0
