"""Loading a causal LM and its tokenizer: a hub id, a local directory, a GGUF file, a registered
real-model name (``smollm2-135m``, ``smollm2-135m-safe``; see :mod:`dualselect.models`), or the
model organism.

Model names, and the data that comes with a named model (the organism's task set, reference pool
and helpfulness pool), are resolved by :mod:`dualselect.models.resolve`, one layer up. That is the
training layer's one import from a higher layer, made here and nowhere else, so that a trainer
accepts ``model="organism"`` as it accepts a hub id. Resolving never trains.
"""

from __future__ import annotations

from types import ModuleType


def named_models() -> ModuleType:
    """:mod:`dualselect.models.resolve`, imported on first use (see the module docstring)."""
    import dualselect.models.resolve

    return dualselect.models.resolve


def resolve_model_path(name_or_path: str) -> str:
    """A local directory for ``name_or_path`` (:func:`dualselect.models.resolve.resolve_model_path`):
    the organism installed from its shipped copy, a registered name or ``.gguf`` file converted
    once, an aligned base looked up; a directory or hub id unchanged."""
    return named_models().resolve_model_path(name_or_path)


def quantized_model_kwargs(quantization_config) -> dict:
    """``from_pretrained`` kwargs for TRL's ``quantization_config`` argument (e.g. a
    ``BitsAndBytesConfig`` or its dict); a clear error when bitsandbytes is not installed."""
    if quantization_config is None:
        return {}
    import importlib.util

    method = getattr(quantization_config, "quant_method", None)
    if isinstance(quantization_config, dict):
        method = quantization_config.get("quant_method", "bitsandbytes")
    method = str(getattr(method, "value", method) or "bitsandbytes")
    if method.startswith("bitsandbytes") and importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            "quantization_config needs bitsandbytes, which is not installed "
            "(`pip install bitsandbytes`; 4/8-bit loading needs a supported GPU or its CPU build)"
        )
    return {"quantization_config": quantization_config}


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    trust_remote_code: bool = False,
    torch_dtype: str = "float32",
    model_init_kwargs: dict | None = None,
):
    """Load ``(model, tokenizer)``. fp32 by default: bf16 without CPU support ran ~27x slower
    (spec pitfall 5). ``trust_remote_code`` stays off unless the user asks for it.
    ``model_init_kwargs`` go to ``from_pretrained`` (e.g. ``quantization_config``); a quantized
    model is prepared for k-bit training (peft's ``prepare_model_for_kbit_training``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = "auto" if torch_dtype == "auto" else getattr(torch, torch_dtype)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=trust_remote_code, **(model_init_kwargs or {})
    )
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    return model, tokenizer
