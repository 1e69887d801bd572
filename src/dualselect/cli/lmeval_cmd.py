"""`dualselect lmeval`: capability benchmarks through lm-eval-harness (optional extra ``lmeval``)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "lmeval",
        help="Capability benchmarks through lm-eval-harness (pip install 'dualselect[lmeval]'): a "
        "local GSM8K file offline, or any lm-eval task; --record puts the scores in the run's model card.",
    )
    p.add_argument(
        "model", help="A training run directory (adapter), a model directory, a hub id or 'organism'."
    )
    p.add_argument(
        "--gsm8k",
        default=None,
        help="Local GSM8K test JSONL (question/answer), e.g. ../shared/data/gsm8k/test.jsonl.",
    )
    p.add_argument(
        "--task",
        action="append",
        default=[],
        help="An lm-eval task name (repeatable; hub tasks need network).",
    )
    p.add_argument(
        "--limit", type=float, default=None, help="Documents per task (a count, or a fraction < 1)."
    )
    p.add_argument(
        "--num-fewshot", type=int, default=0, help="GSM8K few-shot examples (needs --gsm8k-train)."
    )
    p.add_argument("--gsm8k-train", default=None, help="GSM8K train JSONL for few-shot examples.")
    p.add_argument("--max-gen-toks", type=int, default=256, help="Generation budget per answer (GSM8K).")
    p.add_argument("--out", default=None, help="Write the flat scores as JSON here.")
    p.add_argument(
        "--record", action="store_true", help="Add the scores to the run's model card (eval_summary.json)."
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math
    from pathlib import Path

    from dualselect.evaluation.lm_eval_tasks import (
        INSTALL_HINT,
        gsm8k_local_task,
        lm_eval_available,
        run_lm_eval,
    )

    if args.limit is not None and not (math.isfinite(args.limit) and args.limit > 0):
        raise ValueError(f"--limit {args.limit}: must be a count >= 1 or a fraction in (0, 1)")
    if not lm_eval_available():
        raise ValueError(INSTALL_HINT)
    tasks: list = list(args.task)
    if args.gsm8k:
        tasks.append(
            gsm8k_local_task(
                args.gsm8k,
                num_fewshot=args.num_fewshot,
                fewshot_file=args.gsm8k_train,
                max_gen_toks=args.max_gen_toks,
            )
        )
    if not tasks:
        raise ValueError("no task: give --gsm8k FILE and/or --task NAME")
    is_run = (Path(args.model) / "adapter_config.json").exists()
    if args.record and not is_run:
        raise ValueError(f"--record needs a training run directory (with adapter_config.json): {args.model}")
    model, tok = _load(args.model, is_run)
    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    scores = run_lm_eval(model, tok, tasks, limit=limit)
    width = max(len(k) for k in scores) if scores else 0
    for k, v in scores.items():
        print(f"{k:<{width}}  {v:.4f}")
    if args.out:
        from dualselect.utils import write_json

        write_json(args.out, scores)
    if args.record:
        from dualselect.training.model_card import add_evaluation

        add_evaluation(args.model, {f"lm_eval/{k}": v for k, v in scores.items()})
        print(f"lmeval: recorded in {Path(args.model) / 'README.md'}")
    return 0


def _load(path: str, is_run: bool):
    from pathlib import Path

    from dualselect.training.model import load_model_and_tokenizer, resolve_model_path

    if is_run:
        from peft import PeftModel

        from dualselect.training.export import base_model_of

        model, tok = load_model_and_tokenizer(base_model_of(Path(path)))
        return PeftModel.from_pretrained(model, path).eval(), tok
    model, tok = load_model_and_tokenizer(resolve_model_path(path))
    return model.eval(), tok
