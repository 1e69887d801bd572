"""Loading a causal LM and its tokenizer: a hub id, a local directory, a GGUF file, a registered
real-model name (``smollm2-135m``, ``smollm2-135m-safe``; see :mod:`dualselect.models`), or the
model organism."""

from __future__ import annotations

import torch

ORGANISM = "organism"


def resolve_model_path(name_or_path: str) -> str:
    """``"organism"`` means the embedded default: build it (or load it from the cache). A registered
    name or a ``.gguf`` file resolves to its cached safetensors conversion (built on first use)."""
    if name_or_path == ORGANISM:
        from dualselect.organism.build import build_organism

        return str(build_organism())
    from dualselect.models.registry import resolve_named_model

    return resolve_named_model(name_or_path)


def load_model_and_tokenizer(
    name_or_path: str, *, trust_remote_code: bool = False, torch_dtype: str = "float32"
):
    """Load ``(model, tokenizer)``. fp32 by default: bf16 without CPU support ran ~27x slower
    (spec pitfall 5). ``trust_remote_code`` stays off unless the user asks for it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = "auto" if torch_dtype == "auto" else getattr(torch, torch_dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model, tokenizer
