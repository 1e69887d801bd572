"""Prompt formatting, token labels and batching.

The prompt/response boundary is exact: the prompt text and the response text are tokenized
separately and concatenated, so the first response token is always supervised and the prompt ids
are the very ids the model sees at generation time. (The release masked
``len(tokenize(prompt))`` tokens of a prompt ending in "Assistant: "; byte-level BPE merges that
space into the first response token, which was then never trained: spec pitfall 1.)
"""

from __future__ import annotations

from typing import Any

import torch

from dualselect.data.records import DataError, Record, SkipReport

TRUNCATION = ("error", "skip", "truncate_prompt")


def _has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _carries_roles(text: str) -> bool:
    return text.startswith("Human:") or "\n\nHuman:" in text or "\n\nAssistant:" in text


def _chat(record: Record | str) -> list[dict]:
    if isinstance(record, str):
        return [{"role": "user", "content": record}]
    if record.messages:
        last = max(i for i, m in enumerate(record.messages) if m["role"] == "assistant")
        return record.messages[:last]
    return [{"role": "user", "content": record.prompt}]


def format_prompt(prompt_or_record: Record | str, tokenizer) -> str:
    """The exact prompt text a model sees, at training and at generation time.

    With a chat template: the template with the generation prompt. Without: the spec's
    ``Human: {prompt}\\nAssistant:`` (no trailing space: the response owns its leading space).
    A prompt that already carries roles is not wrapped again.
    """
    if _has_template(tokenizer):
        return tokenizer.apply_chat_template(
            _chat(prompt_or_record), add_generation_prompt=True, tokenize=False
        )
    text = prompt_or_record if isinstance(prompt_or_record, str) else prompt_or_record.prompt
    if _carries_roles(text):
        text = text.rstrip()
        text = text.removesuffix("Assistant:").rstrip()
        return f"{text}\n\nAssistant:" if "\n\n" in text else f"{text}\nAssistant:"
    return f"Human: {text}\nAssistant:"


def _response_text(record: Record, tokenizer, prompt_text: str) -> str:
    if _has_template(tokenizer):
        msgs = _chat(record) + [{"role": "assistant", "content": record.response}]
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
        if not full.startswith(prompt_text):
            raise ValueError(
                "the chat template renders the prompt differently with and without the answer; "
                "cannot find an exact prompt/response boundary"
            )
        return full[len(prompt_text) :]
    return " " + record.response


def split_ids(record: Record, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the formatted prompt and of the response, split at the exact boundary the
    model is trained on (chat template when present; else the response owns its leading space).
    No EOS is appended: :func:`encode_record` adds it for training."""
    prompt_text = format_prompt(record, tokenizer)
    response_text = _response_text(record, tokenizer, prompt_text)
    # With a template, BOS etc. are part of the rendered text; without, add them to the prompt only.
    p_ids = tokenizer(prompt_text, add_special_tokens=not _has_template(tokenizer))["input_ids"]
    r_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    return p_ids, r_ids


def encode_record(
    record: Record, tokenizer, *, max_length: int = 512, truncation: str = "error", index: int = 0
) -> dict[str, Any]:
    """Encode one record: ``input_ids``, ``labels`` (-100 on prompt tokens), ``n_target_tokens``,
    ``index``. Raises :class:`DataError` (reason ``too_long`` / ``no_supervised_token``)."""
    if truncation not in TRUNCATION:
        raise ValueError(f"truncation={truncation!r}: expected one of {TRUNCATION}")
    src = record.source or f"<memory>:{index}"
    path, _, loc = src.rpartition(":")
    loc = f"line {loc}" if loc.isdigit() else loc
    p_ids, r_ids = split_ids(record, tokenizer)
    if not _has_template(tokenizer) and tokenizer.eos_token_id is not None:
        r_ids = r_ids + [tokenizer.eos_token_id]
    if not r_ids:
        raise DataError(path or src, loc, "response", "no_supervised_token")
    if len(p_ids) + len(r_ids) > max_length:
        over = f"{len(p_ids) + len(r_ids)} tokens > max_length {max_length}"
        if truncation == "truncate_prompt" and len(r_ids) < max_length:
            p_ids = p_ids[len(p_ids) + len(r_ids) - max_length :]  # drop from the left of the prompt
        else:
            raise DataError(
                path or src, loc, "response" if truncation == "truncate_prompt" else None, "too_long", over
            )
    return {
        "input_ids": p_ids + r_ids,
        "labels": [-100] * len(p_ids) + r_ids,
        "n_target_tokens": len(r_ids),
        "index": index,
    }


def encode_records(
    records: list[Record],
    tokenizer,
    *,
    max_length: int = 512,
    truncation: str = "error",
    skip_invalid: bool = False,
    name: str = "data",
) -> tuple[list[dict[str, Any]], SkipReport]:
    """Encode a list; ``index`` is each record's position in ``records``. With ``skip_invalid`` (or
    ``truncation="skip"`` for over-long samples) failures are counted, never silently lost."""
    report = SkipReport(name=name, seen=len(records))
    out = []
    for i, rec in enumerate(records):
        try:
            out.append(encode_record(rec, tokenizer, max_length=max_length, truncation=truncation, index=i))
        except DataError as e:
            if skip_invalid or (truncation == "skip" and e.reason == "too_long"):
                report.skip(e)
            else:
                raise
    report.kept = len(out)
    return out, report


def collate(
    examples: list[dict[str, Any]],
    pad_token_id: int,
    padding_side: str = "right",
    pad_to_multiple_of: int = 1,
) -> dict[str, torch.Tensor]:
    """Pad a list of encoded examples into ``input_ids``, ``attention_mask``, ``labels`` (-100 on
    pads) and ``index`` tensors. ``pad_to_multiple_of`` rounds the length up (fewer distinct shapes
    when streaming a large pool)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side={padding_side!r}: expected 'left' or 'right'")
    T = max(len(e["input_ids"]) for e in examples)
    T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    B = len(examples)
    ids = torch.full((B, T), pad_token_id, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        sl = slice(T - n, T) if padding_side == "left" else slice(0, n)
        ids[i, sl] = torch.tensor(e["input_ids"])
        labels[i, sl] = torch.tensor(e["labels"])
        mask[i, sl] = 1
    index = torch.tensor([int(e.get("index", i)) for i, e in enumerate(examples)], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "index": index}


def length_bucketed_order(
    lengths: list[int], batch_size: int, seed: int, shuffle: bool = True
) -> list[list[int]]:
    """Batches of indices with similar lengths, to limit padding waste. Deterministic for a seed:
    shuffle, sort within chunks of 50 batches, cut into batches, shuffle the batch order."""
    n = len(lengths)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g).tolist() if shuffle else list(range(n))
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for c in range(0, n, chunk):
        part = sorted(order[c : c + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    return batches
