"""Real pretrained checkpoints: GGUF import (converted once to a cached safetensors directory) and a
name registry, so ``model_name_or_path: smollm2-135m`` works wherever a model path is accepted."""

from dualselect.models.gguf import convert_gguf, gguf_cache_dir, load_gguf
from dualselect.models.registry import REGISTRY, NamedModel, is_registered, resolve_named_model

__all__ = [
    "REGISTRY",
    "NamedModel",
    "convert_gguf",
    "gguf_cache_dir",
    "is_registered",
    "load_gguf",
    "resolve_named_model",
]
