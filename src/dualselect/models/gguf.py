"""GGUF checkpoints: load with transformers' ``gguf_file`` loader (de-quantised to fp32), convert
once into a plain safetensors directory, cached by the GGUF file's content hash.

transformers refuses ``save_pretrained`` on a GGUF-loaded model (its config carries a GGUF
``quantization_config``), so the weights are copied into a plain model built from the same config
without it; the round trip is tested to give the same logits (tests/test_real_model.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dualselect.cache import build_atomic, cache_root, file_sha256

if TYPE_CHECKING:  # torch is imported on use: config checks and --help stay torch-free
    import torch

GGUF_CONVERT_VERSION = 1  # bump when the conversion changes in a way the file hash does not capture


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "loading a GGUF checkpoint needs the `gguf` package: pip install 'dualselect[real]'"
        ) from e


def gguf_cache_dir(gguf_path: str | os.PathLike) -> Path:
    """``$DUALSELECT_CACHE/gguf/<sha256[:16]>`` (default ``~/.cache/dualselect``)."""
    return cache_root() / "gguf" / f"{file_sha256(gguf_path)[:16]}-v{GGUF_CONVERT_VERSION}"


def load_gguf(gguf_path: str | os.PathLike, dtype: torch.dtype | None = None):
    """``(model, tokenizer)`` straight from a GGUF file (de-quantised by transformers; fp32 unless
    ``dtype`` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if dtype is None else dtype

    _require_gguf()
    p = Path(gguf_path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: GGUF file not found")
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=dtype)
    return model.eval(), tok


def plain_copy(model):
    """A plain (non-GGUF) model of the same architecture holding the same weights."""
    from transformers import AutoModelForCausalLM

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config.pop("_model_name_or_path", None)
    cfg = type(model.config).from_dict(config)
    plain = AutoModelForCausalLM.from_config(cfg, dtype=model.dtype)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # tied embeddings: lm_head.weight may be absent from one side's state dict
    missing = [k for k in missing if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return plain.eval()


def convert_gguf(
    gguf_path: str | os.PathLike, out: str | os.PathLike | None = None, *, force: bool = False
) -> Path:
    """Convert ``gguf_path`` to a safetensors directory (``save_pretrained`` layout, fp32) once;
    later calls return the cached directory. Built in a temporary sibling, marked done with
    ``gguf_source.json``, then renamed (:func:`dualselect.cache.build_atomic`)."""
    gguf_path = Path(gguf_path)
    out = Path(out) if out is not None else gguf_cache_dir(gguf_path)

    def build(tmp: Path) -> dict:
        t0 = time.time()
        model, tok = load_gguf(gguf_path)
        plain = plain_copy(model)
        plain.save_pretrained(tmp, safe_serialization=True)
        if plain.generation_config is not None:
            plain.generation_config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return {
            "gguf_file": str(gguf_path),
            "gguf_sha256": file_sha256(gguf_path),
            "convert_version": GGUF_CONVERT_VERSION,
            "n_parameters": sum(p.numel() for p in plain.parameters()),
            "convert_seconds": round(time.time() - t0, 1),
        }

    return build_atomic(out, build, marker="gguf_source.json", force=force)
