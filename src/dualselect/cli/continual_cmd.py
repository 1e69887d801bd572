"""`dualselect continual CONFIG.yaml`: tasks in sequence on one adapter, methods x seeds."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "continual",
        help="Retention-focused continual learning on the organism: learn the tasks of CONFIG one "
        "after the other on one LoRA adapter, for every method x seed; after each stage, accuracy "
        "on every task and refusal on the harmful probes; summary (ACC, BWT, forgetting, FWT with "
        "t-intervals over seeds), Markdown table and plot. Resumable per stage.",
    )
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help="YAML with any of: tasks (in order; from add, sub, double, last_word), methods, seeds, "
        "steps_per_stage, batch_size, n_train, n_test, buffer_size (task memory, reservoir), "
        "safety_size, data_seed, training (overrides for every trainer), dualselect (overrides for "
        "the DualSelect rows), method_overrides (per method), max_new_tokens, eval_batch_size, "
        "output_dir. Default: configs/continual_organism.yaml's values.",
    )
    p.add_argument("--out", default=None, help="Output directory (default: output_dir of the config).")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="Override the config's seeds.")
    p.add_argument("--methods", nargs="+", default=None, help="Override the config's methods.")
    p.add_argument("--list-methods", action="store_true", help="List the continual methods and exit.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dualselect.continual.methods import CONTINUAL_METHODS

    if args.list_methods:
        for name, m in CONTINUAL_METHODS.items():
            print(f"{name:<28} {m.description}")
        return 0
    from dualselect.continual.report import markdown
    from dualselect.continual.runner import ContinualConfig, run_continual

    cfg = ContinualConfig.from_yaml(args.config, seeds=args.seeds, methods=args.methods)
    summary = run_continual(cfg, args.out)
    print(markdown(summary))
    out = args.out or cfg.output_dir
    print(f"written: {out}/summary.json, {out}/continual.md, {out}/accuracy_over_stages.png")
    return 0
