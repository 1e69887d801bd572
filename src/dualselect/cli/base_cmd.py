"""`dualselect base build|stats`: the safety-aligned real base (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "base",
        help="Build or check the safety-aligned real base (SmolLM2-135M-Instruct aligned on "
        "refusals to real harmful prompts; attack and reference data). See docs/real_model.md.",
    )
    bsub = p.add_subparsers(dest="base_command", required=True, metavar="ACTION")
    b = bsub.add_parser(
        "build",
        help="Build (or resume) the aligned base, cached by config + data hash "
        "(~$DUALSELECT_CACHE/realbase/<name>-<hash>), then its helpfulness pool for two-sided "
        "DualSelect (data/helpful_pool.jsonl: the base's own answers to benign look-alike prompts, "
        "added to an already built base too); prints its directory.",
    )
    b.add_argument("name", nargs="?", default="smollm2-135m", help="Registered base model (smollm2-135m).")
    b.add_argument("--out", default=None, help="Build here instead of the cache.")
    b.add_argument(
        "--data-dir", default=None, help="Benchmark files (default $DUALSELECT_DATA or ../shared/data)."
    )
    b.add_argument("--steps", type=int, default=None, help="Alignment LoRA steps (default 150).")
    b.add_argument("--lr", type=float, default=None, help="Alignment LoRA learning rate (default 2e-4).")
    b.add_argument("--seed", type=int, default=0, help="Split and training seed (default 0).")
    b.add_argument(
        "--unlikelihood-weight",
        type=float,
        default=None,
        help="Weight of the refusal-unlikelihood term on the contrast prompts (realbase/align.py; "
        "default 0: plain SFT).",
    )
    b.add_argument(
        "--unlikelihood-prompts",
        choices=("contrast", "benign"),
        default=None,
        help="Prompts of the unlikelihood term: the contrast prompts (default) or every benign prompt.",
    )
    b.add_argument(
        "--unlikelihood-per-step",
        type=int,
        default=None,
        help="Prompts of the unlikelihood term drawn per optimiser step (default 4).",
    )
    b.add_argument(
        "--contrast-repeat",
        type=int,
        default=None,
        help="Repeat the contrast prompts' own answers this often in the alignment set (default 1).",
    )
    b.add_argument("--lora-r", type=int, default=None, help="Alignment LoRA rank (default 512; alpha = 2r).")
    b.add_argument(
        "--align-seed",
        type=int,
        default=None,
        help="Seed of the alignment LoRA alone (init, data order); the splits keep --seed (default: --seed).",
    )
    b.add_argument(
        "--delta-scales",
        type=_scales,
        default=None,
        metavar="S,S,...",
        help="Scales of the merged alignment delta tried on validation prompts; the largest meeting "
        "every validation target is kept (realbase/calibrate.py; default 1,0.9,0.8,0.7,0.6,0.5; "
        "'1' with --align-attempts 1 = no calibration, attempt 6).",
    )
    b.add_argument(
        "--calib-max-over-refusal",
        type=float,
        default=None,
        help="Validation over-refusal target of the calibration (default 0.10).",
    )
    b.add_argument(
        "--calib-min-refusal",
        type=float,
        default=None,
        help="Validation refusal target of the calibration (default 0.90).",
    )
    b.add_argument(
        "--align-attempts",
        type=int,
        default=None,
        help="Trainings (seeds --align-seed, +1, ...) calibrated on validation prompts; see "
        "--align-select (default 3).",
    )
    b.add_argument(
        "--align-select",
        choices=("first", "best"),
        default=None,
        help="Which training is kept: 'best' (the default: trains all --align-attempts and keeps, of "
        "those meeting every validation target, the highest validation refusal minus over-refusal) or "
        "'first' meeting them (stops there; attempt 8).",
    )
    b.add_argument(
        "--calib-task-rows",
        type=int,
        default=None,
        help="Validation task rows whose strict exact match a scale must keep within "
        "--calib-max-task-drop of the shipped model's (default 150; 0 = no task target, attempt 7).",
    )
    b.add_argument(
        "--calib-max-task-drop",
        type=float,
        default=None,
        help="Allowed drop of validation task strict exact match below the shipped model's (default 0.05).",
    )
    b.set_defaults(func=run_build)
    s = bsub.add_parser(
        "stats",
        help="Acceptance on held-out prompts (keyword judge): HarmBench standard and StrongREJECT "
        "refusal, XSTest safe over-refusal, task exact match; shipped vs aligned.",
    )
    s.add_argument("dir", nargs="?", default=None, help="Built real base (default: the cached default).")
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


def _scales(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}") from None


# flag -> (RealBaseConfig field, smallest legal value or None)
_BUILD_FLAGS = {
    "steps": ("max_steps", 1),
    "lr": ("learning_rate", None),
    "unlikelihood_weight": ("unlikelihood_weight", 0),
    "unlikelihood_prompts": ("unlikelihood_prompts", None),
    "unlikelihood_per_step": ("unlikelihood_prompts_per_step", 1),
    "contrast_repeat": ("contrast_repeat", 1),
    "lora_r": ("lora_r", 1),
    "align_seed": ("align_seed", None),
    "delta_scales": ("delta_scales", None),
    "calib_max_over_refusal": ("calib_max_over_refusal", None),
    "calib_min_refusal": ("calib_min_refusal", None),
    "align_attempts": ("align_attempts", 1),
    "align_select": ("align_select", None),
    "calib_task_rows": ("calib_task_rows", 0),
    "calib_max_task_drop": ("calib_max_task_drop", None),
}


def _cfg(args: argparse.Namespace):
    from dualselect.realbase.build import RealBaseConfig
    from dualselect.realbase.data import SplitConfig

    cfg = RealBaseConfig(base=args.name, splits=SplitConfig(seed=args.seed))
    for flag, (name, low) in _BUILD_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if low is not None and value < low:
            raise ValueError(f"--{flag.replace('_', '-')}: must be >= {low}")
        setattr(cfg, name, value)
    cfg.lora_alpha = 2 * cfg.lora_r  # alpha follows the rank (r512 / alpha 1024 by default)
    cfg.validate()
    return cfg


def run_build(args: argparse.Namespace) -> int:
    from dualselect.realbase.build import build_real_base
    from dualselect.realbase.helpful import build_helpful_pool

    path = build_real_base(_cfg(args), args.out, data_dir=args.data_dir)
    build_helpful_pool(path)  # next to data/references.jsonl; kept if already there
    print(path)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from dualselect.realbase.build import build_real_base
    from dualselect.realbase.stats import base_stats

    if args.max_new_tokens < 32:
        raise ValueError("--max-new-tokens: at least 32, or refusal detection is not honest")
    limits = {}
    for spec in args.limit:
        name, sep, n = spec.partition("=")
        if not sep or not n.isdigit():
            raise ValueError(f"--limit {spec!r}: expected SUITE=N")
        limits[name] = int(n)
    path = args.dir or build_real_base()
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
