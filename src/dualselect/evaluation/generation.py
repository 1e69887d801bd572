"""Batched greedy generation and the generations file that judges read.

Generations are written once (JSONL) and judged from the file, so a judge can be re-run, or a new
judge added, without regenerating.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from tqdm.auto import tqdm

from dualselect.utils import read_jsonl, write_jsonl


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    backend: str = "hf",
    progress: bool = True,
) -> list[str]:
    """Greedy continuations of already-formatted ``prompts`` (see ``data.format_prompt``).

    ``backend="hf"``: batched ``model.generate`` with left padding, stopping at EOS; only the new
    tokens are decoded. ``backend="vllm"``: used only when vLLM is installed.
    """
    if backend == "vllm":
        return _generate_vllm(model, prompts, max_new_tokens)
    if backend != "hf":
        raise ValueError(f"backend={backend!r}: expected 'hf' or 'vllm'")
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Prompts were formatted with their special tokens already when a chat template is used.
    add_special = not bool(getattr(tokenizer, "chat_template", None))
    outs: list[str] = []
    try:
        # Longest first: similar lengths share a batch (less padding); results are put back in order.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        texts: dict[int, str] = {}
        bar = tqdm(
            range(0, len(order), batch_size), desc="generate", disable=(not progress) or None, leave=False
        )
        for start in bar:
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=add_special
            ).to(model.device)
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, t in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                texts[i] = t
        outs = [texts[i] for i in range(len(prompts))]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outs


def _generate_vllm(model: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    try:
        from vllm import LLM, SamplingParams
    except ImportError as e:
        raise RuntimeError("backend='vllm' needs vLLM installed (pip install 'dualselect[vllm]')") from e
    llm = model if isinstance(model, LLM) else LLM(model=str(model))
    res = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
    return [r.outputs[0].text for r in res]


def write_generations(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows: method, seed, benchmark, id, prompt, response, category, meta."""
    write_jsonl(path, rows)


def read_generations(path: str | os.PathLike) -> list[dict]:
    return read_jsonl(path)
