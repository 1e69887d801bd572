"""`dualselect compare CONFIG.yaml`: methods x seeds, evaluated alike, one table."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="Run methods x organism instances x training seeds (default 3 x 3 on the organism) and "
        "write one comparison table (Markdown + CSV + JSON) with per-instance means and a "
        "safety-vs-capability plot. Resumable.",
    )
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help="YAML with any of: model_name_or_path (the organism, or any causal LM: a model "
        "directory or cached hub id), train_dataset and reference_dataset (task data and safety "
        "reference pool, any format train reads; aliases train_data, reference_data), benchmarks "
        "(evaluation sets on any model: name -> {path, limit, max_new_tokens, benchmark, kinds, "
        "include_copyright}, e.g. harmbench, strongreject, advbench, xstest, hh_rlhf, gsm8k; see "
        "configs/compare_any_model.yaml), methods, variants (named variants usable in methods like a "
        "preset: name -> {method: <preset>, ...training config overrides}, e.g. kl_l0.3: {method: kl, "
        "kl_lambda: 0.3}), seeds "
        "(training seeds, default [0, 1, 2]), organism_seeds (organism instances: the organism "
        "trained with these seeds on one world, default [0, 1, 2]; organism only), tune (pick a "
        "row among candidate methods on VALIDATION data only: {name, candidates, criterion}, or a "
        "list of such entries, one choice each; criteria val_refusal_plus_capability, "
        "val_refusal_capability_helpfulness (organism validation probes), and with suites "
        "real_study_val the pre-registered matched_refusal_minus_over_refusal (highest refusal minus "
        "over-refusal among candidates within matched_capability_within points of sft's task EM) "
        "and attack_strength (smallest learning rate lowering refusal by >= 40 points while task EM "
        "rises >= 30 over the base's); default 'auto' = eta of the paper setting among dualselect_paper, "
        "ds_paper_eta_0.05, ds_paper_eta_0 when they are run; null = none), validate_all (score "
        "every run on the validation probes, not only the tune candidates), evaluate_base (also "
        "evaluate the model before fine-tuning, once per organism instance, on the same suites and "
        "judges: its rates beside the methods'; default false), training (overrides "
        "for every method), method_overrides (per method), max_new_tokens, judges (names or "
        "{name, ...options}; the first gives the headline metrics and must be able to run, "
        "unavailable others are reported), judge_validation (validation.json files of 'dualselect judges "
        "validate', e.g. on labelled completions of the compared models: the judges' accuracy and the "
        "error correction come from them instead of the shipped XSTest validation), safety_metric, "
        "capability_metric (with benchmarks "
        "default 'capability', the mean over capability sets), matched_capability_within (points "
        "below SFT's capability that still count as matched; default 3), suites (organism | "
        "realbase | real_study | real_study_val | benchmarks; real_study: the real-model study's full suites "
        "with XSTest unsafe apart and the GSM8K final-step task, whose files compare writes into the base "
        "when missing; real_study_val: the study's validation suites for its tuning; see "
        "docs/real_study.md), suite_limits (fixed-seed subset per suite; organism, "
        "realbase, real_study, real_study_val), "
        "eval_batch_size (at most this many prompts per generation batch), generation_backend (hf | "
        "hf-generate | vllm; see docs/evaluation.md), eval_dtype (float32 | bfloat16), eval_token_budget, "
        "vllm_options, jobs (runs at once, each its own process with cpu_count // jobs threads; "
        "default 1). The whole config (benchmark files, judges, metric names, every method's "
        "training config) is checked before the first run; errors exit 2 in one line. Default: "
        "the 13 methods of the default comparison on 3 organism instances x 3 training seeds.",
    )
    p.add_argument("--out", default="runs/compare", help="Output directory (default runs/compare).")
    p.add_argument(
        "--quick",
        action="store_true",
        help="A few-minute profile: 4 methods, 1 organism instance, 2 seeds, 40 steps, no tuning "
        "(unless the YAML says otherwise).",
    )
    p.add_argument(
        "--backend",
        choices=("hf", "hf-generate", "vllm"),
        default=None,
        help="Generation backend of every run's evaluation (overrides the config's generation_backend; "
        "vllm: GPU, the run's LoRA adapter is served through LoRARequest).",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="Runs trained and evaluated at once (overrides the config's jobs; each run its own process "
        "with cpu_count // jobs torch threads unless OMP_NUM_THREADS is set). A compare resumes with any value.",
    )
    p.add_argument("--list-methods", action="store_true", help="List the method names and exit.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dualselect.experiments.compare import run_compare
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.experiments.table import markdown_table
    from dualselect.training.presets import PRESETS

    if args.list_methods:
        for name, (_, _, desc) in PRESETS.items():
            print(f"{name:<18} {desc}")
        return 0
    cfg = CompareConfig.from_yaml(args.config, quick=args.quick)
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs: expected an integer >= 1 (runs at once), got {args.jobs}")
    flags = {k: v for k, v in (("generation_backend", args.backend), ("jobs", args.jobs)) if v is not None}
    if flags:
        import dataclasses

        cfg = CompareConfig.from_dict({**dataclasses.asdict(cfg), **flags})
    table = run_compare(cfg, args.out)
    print(markdown_table(table))
    print(f"\nwritten: {args.out}/comparison.md, .csv, .json, safety_vs_capability.png")
    return 0
