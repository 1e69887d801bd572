"""Prompt formatting, token labels and batching.

The prompt/response boundary is exact: the prompt text and the response text are tokenized
separately and concatenated, so the first response token is always supervised and the prompt ids
are the very ids the model sees at generation time. (The release masked
``len(tokenize(prompt))`` tokens of a prompt ending in "Assistant: "; byte-level BPE merges that
space into the first response token, which was then never trained: spec pitfall 1.)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from dualselect.data.records import DataError, Record, SkipReport

# Over-long samples (longer than max_length, or than the model's positions):
#   keep_start       keep the first max_length tokens (TRL's default); a sample left with no
#                    supervised token is dropped and counted
#   truncate_prompt  cut the prompt's text from the left, keeping its format (BOS, template,
#                    "Human:" label) and the whole response; prompt/response records only
#   skip             drop the sample, counted in the data report
#   error            stop with the file/line of the sample
TRUNCATION = ("keep_start", "truncate_prompt", "skip", "error")
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def _has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def has_generation_markers(tokenizer) -> bool:
    """Does the chat template mark assistant text with ``{% generation %}`` (then its own
    assistant mask is used, as TRL does)?"""
    t = getattr(tokenizer, "chat_template", None)
    if isinstance(t, dict):
        t = t.get("default", "")
    return bool(t) and bool(_GENERATION.search(t))


def _carries_roles(text: str) -> bool:
    """A plain prompt string is an HH transcript only when it starts with a Human turn."""
    return text.startswith("Human:") or text.startswith("\n\nHuman:")


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
    A transcript prompt (an HH record, or a prompt starting with "Human:") is not wrapped again;
    a prompt that merely contains "\\n\\nAssistant:" is wrapped like any other. TRL's string
    prompt-completion records are used as they are.
    """
    if (
        isinstance(prompt_or_record, Record)
        and prompt_or_record.kind in ("prompt_completion", "text")
        and prompt_or_record.messages is None
    ):
        return prompt_or_record.prompt
    if _has_template(tokenizer):
        return tokenizer.apply_chat_template(
            _chat(prompt_or_record), add_generation_prompt=True, tokenize=False
        )
    if isinstance(prompt_or_record, Record) and prompt_or_record.kind != "pair" and prompt_or_record.messages:
        # conversations are trained in _plain_render's format: generate in the same one
        return _plain_render(_chat(prompt_or_record), tokenizer.eos_token or "", add_generation_prompt=True)[
            0
        ]
    if isinstance(prompt_or_record, str):
        text, transcript = prompt_or_record, _carries_roles(prompt_or_record)
    else:
        # the schema says so (HH), or the prompt starts with a Human turn (already formatted)
        text = prompt_or_record.prompt
        transcript = prompt_or_record.transcript or _carries_roles(text)
    if transcript:
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


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _plain_render(messages: list[dict], eos: str, add_generation_prompt: bool = False):
    """A conversation as text for a tokenizer without a chat template, in the package's format
    ("Human: ...\\nAssistant: ...</s>\\n\\nHuman: ..."), with each assistant turn's character
    span (its leading space, content and EOS) for the assistant mask."""
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    text, spans = "", []
    for m in messages:
        if text:
            text += "\n" if m["role"] == "assistant" else "\n\n"
        text += f"{names.get(m['role'], m['role'].title())}:"
        if m["role"] == "assistant":
            start = len(text)
            text += " " + m["content"] + eos
            spans.append((start, len(text)))
        else:
            text += " " + m["content"]
    if add_generation_prompt:
        text += "\nAssistant:"
    return text, spans


def _spans_to_mask(tokenizer, text: str, spans: list[tuple[int, int]], add_special_tokens: bool):
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    mask = []
    for a, b in enc["offset_mapping"]:
        # special tokens added by the tokenizer have (0, 0); a token belongs to the span it starts in
        inside = b > a and any(s <= a < e for s, e in spans)
        mask.append(1 if inside else 0)
    return list(enc["input_ids"]), mask


def _template_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Render with the chat template and find every assistant turn's characters by rendering the
    conversation up to it (with the generation prompt) and up to its end: the difference is what
    the model must produce (content and end-of-turn), for templates without generation markers."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise ValueError(
                "the chat template does not render a conversation as a prefix of its continuation; "
                "cannot find the assistant turns (add {% generation %} markers to the template)"
            )
        spans.append((len(before), len(upto)))
    return full, spans


def conversation_ids(
    tokenizer, messages: list[dict], assistant_mask: bool
) -> tuple[list[int], list[int] | None]:
    """Token ids of a conversation and, if asked, its assistant mask (1 on every assistant turn's
    tokens). The template's own ``{% generation %}`` mask when it has one (as TRL), else the
    rendering-difference spans; without a template, :func:`_plain_render`."""
    if not _has_template(tokenizer):
        text, spans = _plain_render(messages, tokenizer.eos_token or "")
        ids, mask = _spans_to_mask(tokenizer, text, spans, add_special_tokens=True)
        return ids, (mask if assistant_mask else None)
    if assistant_mask and has_generation_markers(tokenizer):
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        return list(out["input_ids"]), list(out["assistant_masks"])
    if not assistant_mask:
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
        return list(out["input_ids"]), None
    text, spans = _template_spans(tokenizer, messages)
    ids, mask = _spans_to_mask(tokenizer, text, spans, add_special_tokens=False)
    return ids, mask


def _prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    if not _has_template(tokenizer):
        text, _ = _plain_render(messages, tokenizer.eos_token or "", add_generation_prompt=True)
        return tokenizer(text)["input_ids"]
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True)
    return list(out["input_ids"])


def _ids_and_labels(
    record: Record, tokenizer, completion_only_loss: bool | None, assistant_only_loss: bool | None
) -> tuple[list[int], list[int]]:
    """``input_ids`` and ``labels`` (-100 where not supervised) of one record, by its kind; the
    TRL formats follow TRL's SFTTrainer exactly (see docs/trl.md)."""
    if record.kind == "text":
        # TRL: EOS appended to the text (if missing), tokenized with the tokenizer's special tokens,
        # every token supervised.
        text = record.text if record.text is not None else record.response
        eos = tokenizer.eos_token
        if eos and not text.endswith(eos):
            text += eos
        ids = list(tokenizer(text)["input_ids"])
        return ids, list(ids)
    if record.kind == "messages":
        mask_on = assistant_only_loss is not False  # default: every assistant turn, not the user's
        ids, mask = conversation_ids(tokenizer, record.messages or [], mask_on)
        labels = [t if (mask is None or m) else -100 for t, m in zip(ids, mask or [1] * len(ids))]
        return ids, labels
    if record.kind == "prompt_completion":
        complete = completion_only_loss is not False  # TRL: None -> True for prompt-completion
        if record.messages is not None:  # conversational
            n = record.prompt_turns or 0
            prompt_ids = _prompt_ids(tokenizer, record.messages[:n])
            ids, mask = conversation_ids(tokenizer, record.messages, bool(assistant_only_loss))
        else:  # strings, as they are; EOS appended to the completion (TRL)
            completion, eos = record.response, tokenizer.eos_token
            if eos and not completion.endswith(eos):
                completion += eos
            prompt_ids = list(tokenizer(record.prompt)["input_ids"])
            ids, mask = list(tokenizer(record.prompt + completion)["input_ids"]), None
        plen = _common_prefix(prompt_ids, ids)  # TRL's common_prefix_length
        labels = [
            t if ((not complete or i >= plen) and (mask is None or mask[i])) else -100
            for i, t in enumerate(ids)
        ]
        return ids, labels
    # "pair": the package's prompt/response schemas
    p_ids, r_ids = split_ids(record, tokenizer)
    if not _has_template(tokenizer) and tokenizer.eos_token_id is not None:
        r_ids = r_ids + [tokenizer.eos_token_id]
    ids = p_ids + r_ids
    if completion_only_loss is False:
        return ids, list(ids)
    return ids, [-100] * len(p_ids) + r_ids


def _cut_prompt(record: Record, tokenizer, n_tokens: int) -> Record | None:
    """``record`` with the first ``n_tokens`` tokens of its prompt text removed (the format around
    it is rebuilt, so BOS, template and role labels stay); None when nothing would be left."""
    ids = tokenizer(record.prompt, add_special_tokens=False)["input_ids"]
    if n_tokens >= len(ids) - 1:
        return None
    kept = tokenizer.decode(ids[n_tokens:]).lstrip()
    cut_at = len(record.prompt) - len(kept)
    if record.transcript or _carries_roles(record.prompt):
        # keep the role label of the turn that was cut into
        labels = [(record.prompt.rfind(lab, 0, max(cut_at, 0) + 1), lab) for lab in ("Human:", "Assistant:")]
        pos, lab = max(labels)
        if pos >= 0 and not kept.startswith(lab):
            kept = f"{lab} {kept}"
    messages = None
    if record.messages is not None and record.kind == "pair":
        from dualselect.data.records import parse_transcript

        context = (
            parse_transcript(kept)
            if (record.transcript or _carries_roles(record.prompt))
            else [{"role": "user", "content": kept}]
        )
        messages = context + [{"role": "assistant", "content": record.response}]
    return dataclasses.replace(record, prompt=kept, messages=messages)


def _n_targets(labels: list[int]) -> int:
    return sum(1 for t in labels[1:] if t != -100)  # the first token is never predicted


def encode_record(
    record: Record,
    tokenizer,
    *,
    max_length: int = 512,
    truncation: str = "error",
    index: int = 0,
    completion_only_loss: bool | None = None,
    assistant_only_loss: bool | None = None,
) -> dict[str, Any]:
    """Encode one record: ``input_ids``, ``labels`` (-100 where not supervised),
    ``n_target_tokens`` (supervised, predicted tokens), ``index``, and ``changes`` (what was done
    to it, e.g. a truncation; :func:`encode_records` counts them). Raises :class:`DataError`
    (reason ``too_long`` / ``no_supervised_token``).

    ``completion_only_loss`` (TRL): False also supervises the prompt of prompt/response records.
    ``assistant_only_loss``: for ``messages`` records None/True supervise every assistant turn,
    False every token (TRL's default); for conversational prompt-completion True also masks
    non-assistant completion turns."""
    if truncation not in TRUNCATION:
        raise ValueError(f"truncation={truncation!r}: expected one of {TRUNCATION}")
    src = record.source or f"<memory>:{index}"
    path, _, loc = src.rpartition(":")
    loc = f"line {loc}" if loc.isdigit() else loc
    ids, labels = _ids_and_labels(record, tokenizer, completion_only_loss, assistant_only_loss)
    changes: list[str] = []
    if len(ids) > max_length:
        over = f"{len(ids)} tokens > max_length {max_length}"
        if truncation == "keep_start":
            ids, labels = ids[:max_length], labels[:max_length]
            changes.append(f"truncated (keep_start, max_length {max_length})")
        elif (
            truncation == "truncate_prompt"
            and record.kind in ("pair", "prompt_completion")
            and (record.kind == "pair" or record.messages is None)
        ):
            cut, rec = 0, record
            for _ in range(6):  # re-tokenising after a cut can differ by a token: retry
                cut += len(ids) - max_length
                rec = _cut_prompt(record, tokenizer, cut)
                if rec is None:
                    break
                ids, labels = _ids_and_labels(rec, tokenizer, completion_only_loss, assistant_only_loss)
                if len(ids) <= max_length:
                    break
            if rec is None or len(ids) > max_length:
                raise DataError(path or src, loc, "response", "too_long", over + " even with no prompt left")
            changes.append(f"prompt truncated (truncate_prompt, max_length {max_length})")
        else:
            detail = over
            if truncation == "truncate_prompt":
                detail += f"; truncate_prompt needs a prompt/response record, this is {record.kind!r}"
            raise DataError(path or src, loc, None, "too_long", detail)
    n_targets = _n_targets(labels)
    if not n_targets:
        detail = "after keep_start truncation" if changes else ""
        raise DataError(path or src, loc, "response", "no_supervised_token", detail)
    return {
        "input_ids": ids,
        "labels": labels,
        "n_target_tokens": n_targets,
        "index": index,
        "changes": changes,
    }


def encode_records(
    records: list[Record],
    tokenizer,
    *,
    max_length: int = 512,
    truncation: str = "error",
    skip_invalid: bool = False,
    name: str = "data",
    completion_only_loss: bool | None = None,
    assistant_only_loss: bool | None = None,
) -> tuple[list[dict[str, Any]], SkipReport]:
    """Encode a list; ``index`` is each record's position in ``records``. With ``skip_invalid`` (or
    ``truncation="skip"`` for over-long samples; or a sample left with nothing supervised by
    ``keep_start``) failures are counted, never silently lost; truncations are counted in the
    report's ``transformed``."""
    report = SkipReport(name=name, seen=len(records))
    out = []
    for i, rec in enumerate(records):
        try:
            e = encode_record(
                rec,
                tokenizer,
                max_length=max_length,
                truncation=truncation,
                index=i,
                completion_only_loss=completion_only_loss,
                assistant_only_loss=assistant_only_loss,
            )
        except DataError as err:
            dropped_by_policy = (truncation == "skip" and err.reason == "too_long") or (
                truncation == "keep_start"
                and err.reason == "no_supervised_token"
                and "keep_start" in str(err)
            )
            if skip_invalid or dropped_by_policy:
                report.skip(err)
                continue
            raise
        for what in e.pop("changes"):
            report.transform(what)
        out.append(e)
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
