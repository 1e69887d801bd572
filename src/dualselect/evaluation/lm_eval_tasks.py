"""Capability benchmarks through lm-eval-harness (optional: ``pip install "dualselect[lmeval]"``).

lm-eval's own task definitions download their data from a hub. The task configs here read a
local file instead (``dataset_path: json`` + ``data_files``), so a run works offline, e.g. GSM8K
from ``../shared/data/gsm8k/test.jsonl``; any other lm-eval task name (or config dict, or YAML
directory through ``include_path``) is passed through unchanged.

    from dualselect.evaluation.lm_eval_tasks import gsm8k_local_task, run_lm_eval
    summary = run_lm_eval(model, tokenizer, [gsm8k_local_task("../shared/data/gsm8k/test.jsonl")], limit=50)
    # {"gsm8k_local/exact_match,strict-match": ..., "gsm8k_local/exact_match,flexible-extract": ...}
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

INSTALL_HINT = 'lm-eval is not installed: pip install "dualselect[lmeval]" (or pip install lm-eval)'


def lm_eval_available() -> bool:
    """Is lm-eval-harness importable?"""
    return importlib.util.find_spec("lm_eval") is not None


def gsm8k_local_task(
    data_file: str | Path,
    *,
    name: str = "gsm8k_local",
    num_fewshot: int = 0,
    fewshot_file: str | Path | None = None,
    max_gen_toks: int = 256,
) -> dict[str, Any]:
    """lm-eval's GSM8K task (same prompt, stop strings, answer extraction and exact-match metric
    as its ``gsm8k.yaml``), reading ``data_file`` (JSONL with ``question``/``answer``, the
    official format). Few-shot examples, when asked, come from ``fewshot_file`` (the train split)."""
    data_file = Path(data_file)
    if not data_file.is_file():
        raise FileNotFoundError(f"{data_file}: no such file (GSM8K test JSONL)")
    files = {"test": str(data_file.resolve())}
    if num_fewshot:
        if fewshot_file is None:
            raise ValueError("num_fewshot > 0 needs fewshot_file (GSM8K train JSONL)")
        files["train"] = str(Path(fewshot_file).resolve())
    cfg: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files},
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{answer}}",
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": False,
                "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
            }
        ],
        "generation_kwargs": {
            "until": ["Question:", "</s>", "<|im_end|>"],
            "do_sample": False,
            "temperature": 0.0,
            "max_gen_toks": max_gen_toks,
        },
        "repeats": 1,
        "num_fewshot": num_fewshot,
        "filter_list": [
            {
                "name": "strict-match",
                "filter": [
                    {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                    {"function": "take_first"},
                ],
            },
            {
                "name": "flexible-extract",
                "filter": [
                    {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                    {"function": "take_first"},
                ],
            },
        ],
        "metadata": {"version": 3.0, "source": "dualselect local-file config"},
    }
    if num_fewshot:
        cfg["fewshot_split"] = "train"
        cfg["training_split"] = "train"
    return cfg


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    tasks: list[str | dict[str, Any]],
    *,
    limit: int | float | None = None,
    batch_size: int = 1,
    include_path: str | None = None,
    seed: int = 0,
    apply_chat_template: bool = False,
) -> dict[str, float]:
    """Evaluate an in-memory ``model`` (a transformers model or a peft model) with lm-eval's
    ``simple_evaluate``. Returns a flat ``{"task/metric,filter": value}`` (stderr entries left out);
    the full lm-eval result is in :func:`run_lm_eval_full`."""
    results = run_lm_eval_full(
        model,
        tokenizer,
        tasks,
        limit=limit,
        batch_size=batch_size,
        include_path=include_path,
        seed=seed,
        apply_chat_template=apply_chat_template,
    )
    return flatten_results(results)


def run_lm_eval_full(
    model: Any,
    tokenizer: Any,
    tasks: list[str | dict[str, Any]],
    *,
    limit: int | float | None = None,
    batch_size: int = 1,
    include_path: str | None = None,
    seed: int = 0,
    apply_chat_template: bool = False,
) -> dict[str, Any]:
    """:func:`run_lm_eval` returning lm-eval's whole result dict (``results``, ``configs``, ...)."""
    if not lm_eval_available():
        raise ImportError(INSTALL_HINT)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        limit=limit,
        task_manager=TaskManager(include_path=include_path) if include_path else TaskManager(),
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        log_samples=False,
        apply_chat_template=apply_chat_template,
    )


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """lm-eval's ``results`` section as ``{"task/metric,filter": value}`` (numbers only, no stderr)."""
    out: dict[str, float] = {}
    for task, metrics in (results.get("results") or {}).items():
        for key, value in metrics.items():
            if "_stderr" in key or key == "alias" or not isinstance(value, (int, float)):
                continue
            out[f"{task}/{key}"] = float(value)
    return out
