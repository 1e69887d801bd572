"""Which model produced a generations file: a fingerprint of the weights, tokenizer and settings.

Every generations row carries ``model_fingerprint``; an evaluation into an existing ``--out``
reuses a cached response only when the fingerprint of the model being evaluated now is the same.
A file from another model (another adapter under the same variant name, a retrained run, other
generation settings) is regenerated and a note says so: answers are never scored for a model
that did not write them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dualselect.utils import note

FINGERPRINT_KEY = "model_fingerprint"


def _tensor_bytes(t: Any) -> memoryview:
    import torch

    t = t.detach().to("cpu").contiguous().reshape(-1)  # 1-D: 0-dim tensors cannot change dtype view
    return memoryview(t.view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def model_fingerprint(model: Any, tokenizer: Any = None, **settings: Any) -> str:
    """Hex digest over every parameter and buffer of ``model`` (name, dtype, shape, bytes), its
    config, the tokenizer's vocabulary size, special tokens and chat template, and ``settings``
    (e.g. ``max_new_tokens``). Same weights + tokenizer + settings <=> same fingerprint.

    Cost: one pass over the weights (blake2b; about a second per 500 MB on one CPU core)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(type(model).__name__.encode())
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        d = {k: v for k, v in cfg.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    named = getattr(model, "named_parameters", None)
    if named is not None:
        for name, p in named():
            h.update(f"{name}|{p.dtype}|{tuple(p.shape)}".encode())
            h.update(_tensor_bytes(p))
        for name, b in model.named_buffers():
            h.update(f"buffer:{name}|{b.dtype}|{tuple(b.shape)}".encode())
            h.update(_tensor_bytes(b))
    else:  # not a torch module (e.g. a served model): its identity is its repr
        h.update(repr(model).encode())
    if tokenizer is not None:
        tok = {
            "class": type(tokenizer).__name__,
            "vocab": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
            "special": getattr(tokenizer, "all_special_tokens", None),
            "chat_template": getattr(tokenizer, "chat_template", None),
        }
        h.update(json.dumps(tok, sort_keys=True, default=str).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _rows_of_model(path: Path, fingerprint: str, name: str) -> list[dict] | None:
    """The rows of the generations file ``path`` ([] when absent) if every row was written by the
    model with ``fingerprint``; otherwise None and a logged note (regenerate)."""
    from dualselect.evaluation.generation import read_generations

    if not path.exists():
        return []
    try:
        rows = read_generations(path)
    except (OSError, ValueError) as e:
        note(f"{path}: unreadable ({e}); regenerating")
        return None
    found = {r.get(FINGERPRINT_KEY) for r in rows}
    if rows and found != {fingerprint}:
        why = "no model fingerprint" if found <= {None} else "were written by another model or settings"
        note(f"{path}: cached generations {why}; regenerating for {name or 'this model'}")
        return None
    return rows


def cached_responses(path: str | Path, fingerprint: str, name: str = "") -> dict[tuple[str, str], str]:
    """``(benchmark, id) -> response`` from an existing generations file, only if every row was
    written by the model with ``fingerprint``; otherwise ``{}`` (regenerate) and a logged note."""
    rows = _rows_of_model(Path(path), fingerprint, name) or []
    return {(r["benchmark"], r["id"]): r["response"] for r in rows}


def model_source(model: Any) -> dict[str, Any]:
    """Where the model came from, for the results file: base path and adapter path(s) if known."""
    src: dict[str, Any] = {}
    cfg = getattr(model, "config", None)
    if cfg is not None:
        src["name_or_path"] = getattr(cfg, "_name_or_path", None)
    peft_cfg = getattr(model, "peft_config", None)
    if isinstance(peft_cfg, dict):
        src["adapters"] = sorted(peft_cfg)
    return src


DECODING_KEY = "decoding"


def decoding_key(settings: dict[str, Any]) -> str:
    """The decoding settings of a generation as a stable string (part of its cache key)."""
    return json.dumps(settings, sort_keys=True, default=str)


def generation_cache_path(generations: str | Path) -> Path:
    """``OUT/generations/NAME.cache.jsonl`` beside ``NAME.jsonl``: every answer that model wrote."""
    p = Path(generations)
    return p.with_name(p.name.removesuffix(".jsonl") + ".cache.jsonl")


def load_generation_cache(path: str | Path, fingerprint: str, name: str = "") -> dict[tuple[str, str], str]:
    """``(prompt, decoding key) -> response`` of the model with ``fingerprint``: the rows of the
    generations file ``path`` and of its cache file (answers of suites evaluated earlier). When
    the generations file holds rows of another model (or none with a fingerprint), nothing is
    reused and a note says so: answers are never scored for a model that did not write them."""
    out: dict[tuple[str, str], str] = {}
    for f in (Path(path), generation_cache_path(path)):
        rows = _rows_of_model(f, fingerprint, name)
        if rows is None:
            return {}
        for r in rows:
            if DECODING_KEY in r and "prompt" in r:
                out[(r["prompt"], decoding_key(r[DECODING_KEY]))] = r["response"]
    return out


def write_generation_cache(path: str | Path, fingerprint: str, entries: dict[tuple[str, str], str]) -> None:
    """Every ``(prompt, decoding key) -> response`` of this model, atomically, to the cache file."""
    from dualselect.utils import write_jsonl

    rows = [
        {FINGERPRINT_KEY: fingerprint, "prompt": p, DECODING_KEY: json.loads(d), "response": r}
        for (p, d), r in entries.items()
    ]
    write_jsonl(generation_cache_path(path), rows)
