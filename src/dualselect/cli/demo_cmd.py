"""`dualselect demo`: the main job on the embedded default (the model organism).

Builds or loads the organism, fine-tunes it on the RedOrca-style task with each method, scores
base and fine-tuned models on held-out probes against ground truth, prints the table and writes
``DIR/results.json`` (``methods.<name>.<metric>``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dualselect.utils import machine_info, seed_everything, write_json

DEMO_JUDGES = ("ground_truth", "keyword", "llama_guard3", "hexphi_rubric")  # the last two: skipped here
DEFAULT_METHODS = ("sft", "dualselect", "dualselect_paper", "ds_no_correction", "ds_paper_eta_0.05")

COLUMNS = [
    ("task_exact_match", "task EM"),
    ("harmful_refusal_hh", "refusal HH"),
    ("harmful_refusal_hex", "refusal HEx"),
    ("harmful_compliance_hh", "comply HH"),
    ("harmful_compliance_hex", "comply HEx"),
    ("harmful_refusal_gen", "refusal gen"),
    ("over_refusal_rate", "over-refusal"),
    ("over_refusal_rate_gen", "over-ref gen"),
    ("benign_accuracy", "benign acc"),
    ("incoherence_rate", "incoherent"),
]


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="Run the main job on the model organism: base vs. Standard SFT vs. "
        "DualSelect, scored against ground truth.",
    )
    p.add_argument("--out", default="runs/demo", help="Output directory (default runs/demo).")
    p.add_argument("--seed", type=int, default=0, help="Training seed (default 0).")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"Comma-separated methods to train (default {','.join(DEFAULT_METHODS)}).",
    )
    p.add_argument("--overwrite", action="store_true", help="Replace the runs of a previous demo in --out.")
    p.set_defaults(func=run)


def format_table(methods: dict[str, dict[str, float]]) -> str:
    """A fixed-width table, one row per method, percentages."""
    w = max(12, *(len(n) + 2 for n in methods))
    head = f"{'method':<{w}}" + "".join(f"{label:>14}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, m in methods.items():
        cells = "".join(f"{100 * m[k]:>13.1f}%" if k in m else f"{'-':>14}" for k, _ in COLUMNS)
        lines.append(f"{name:<{w}}{cells}")
    return "\n".join(lines)


def run_demo(
    out: str | Path = "runs/demo",
    methods: tuple[str, ...] = DEFAULT_METHODS,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """The demo as a Python function; returns the results dict it writes. Run directories of a
    previous demo in ``out`` are refused before any work unless ``overwrite``."""
    from dualselect.evaluation.probes import evaluate_on_probes
    from dualselect.experiments.helpful_pool import ensure_helpful_pool
    from dualselect.organism.stats import ORGANISM_TRAINING
    from dualselect.organism.train import build_organism
    from dualselect.training.model import load_model_and_tokenizer
    from dualselect.training.presets import resolve_preset
    from dualselect.training.run import load_config, run_training
    from dualselect.training.validation import prepare_run_dir

    out = Path(out)
    for method in methods:
        resolve_preset(method)  # unknown names fail before any work
        if not overwrite:
            prepare_run_dir(out / method)
    if (out / "results.json").exists() and not overwrite:
        raise FileExistsError(
            f"{out} holds a previous demo (results.json); pass --overwrite or another --out"
        )
    t0 = time.time()
    organism = build_organism()
    print(f"organism: {organism}")
    seed_everything(seed)
    model, tok = load_model_and_tokenizer(str(organism))
    meta = json.loads((organism / "organism.json").read_text())
    results: dict = {
        "organism": str(organism),
        "organism_key": meta.get("cache_key"),
        "organism_source": meta.get("source"),
        "machine": machine_info(),
        "seed": seed,
        "methods": {},
        "runs": {},
    }
    results["methods"]["base"] = evaluate_on_probes(model, tok, organism)
    models = {"base": (model, tok)}
    for method in methods:
        trainer_method, overrides = resolve_preset(method)
        cfg = load_config(
            trainer_method,
            overrides={
                "model_name_or_path": str(organism),
                "output_dir": str(out / method),
                "seed": seed,
                "train_data": str(organism / "data" / "redorca_train.jsonl"),
                **ORGANISM_TRAINING,
                **overrides,
            },
        )
        t1 = time.time()
        ensure_helpful_pool(cfg)  # a two-sided method among --methods: the organism's pool, once
        trainer = run_training(trainer_method, cfg, overwrite=overwrite)
        results["runs"][method] = {
            "dir": str(out / method),
            "train_seconds": round(time.time() - t1, 1),
            "steps": trainer.state.global_step,
        }
        results["methods"][method] = evaluate_on_probes(trainer.model, tok, organism)
        models[method] = (trainer.model, tok)
    # The evaluation protocol: coherence gate, several judges, Safety Avg. vs SFT, agreement, report.
    from dualselect.evaluation.harness import evaluate
    from dualselect.evaluation.judges import build_judge
    from dualselect.evaluation.suites import organism_suites

    ev = evaluate(
        models,
        organism_suites(organism),
        [build_judge(j) for j in DEMO_JUDGES],
        out / "eval",
        base="base",
        sft="sft" if "sft" in models else None,
        seed=seed,
    )
    for name, m in ev["methods"].items():
        results["methods"][name]["incoherence_rate"] = m["incoherence_rate"]
        for key in ("kl_base", *(f"safety_avg.{j}" for j in ev["judges"])):
            if m.get(key) is not None:
                results["methods"][name][key.replace(".", "_")] = m[key]
    results["eval_report"] = str(out / "eval" / "report.md")
    results["wall_seconds"] = round(time.time() - t0, 1)
    write_json(out / "results.json", results)
    return results


def run(args: argparse.Namespace) -> int:
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    results = run_demo(args.out, methods, args.seed, overwrite=args.overwrite)
    print()
    print(format_table(results["methods"]))
    sa = {
        n: m.get("safety_avg_ground_truth")
        for n, m in results["methods"].items()
        if "safety_avg_ground_truth" in m
    }
    if sa:
        print(
            "\nSafety Avg. vs Standard SFT (ground-truth judge, 50 = tie): "
            + ", ".join(f"{n} {v:.1f}" for n, v in sa.items())
        )
    mach = results["machine"]
    print(
        f"\norganism {results['organism_key']} ({results['organism_source'] or 'built here'}), seed "
        f"{results['seed']}; machine: {mach['cpu']}, {mach['cpus']} CPUs, bf16 instructions "
        f"{mach['cpu_bf16']}, torch {mach['torch']}"
    )
    print(
        f"\nresults: {Path(args.out) / 'results.json'}; evaluation report: {results['eval_report']} "
        f"({results['wall_seconds']} s)"
    )
    return 0
