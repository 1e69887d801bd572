"""Loading classifier-judge weights through transformers: a local path or a hub id, no remote code
unless the user passes ``trust_remote_code=True``. A judge whose weights cannot be had is
unavailable with the reason, never replaced by another model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

Kind = Literal["causal", "seqcls"]


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a truthy value (as huggingface_hub reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _looks_local(path: str) -> bool:
    """A filesystem path rather than an ``org/name`` hub id."""
    return path.startswith(("/", ".", "~")) or "\\" in path or path.count("/") > 1


def weights_available(path: str | None) -> tuple[bool, str]:
    """Cheap existence check: (False, reason) for no path, or a path that is neither a local
    directory nor fetchable (offline, or clearly a filesystem path)."""
    if not path:
        return False, "no weights given (set the judge's `path` to a local directory or hub id)"
    p = Path(path).expanduser()
    if p.exists():
        return (True, "") if p.is_dir() else (False, f"{path}: not a directory of weights")
    if hub_offline():
        return False, (
            f"{path}: no such local directory and HF_HUB_OFFLINE=1 (no hub access); "
            "download the weights and pass their local path"
        )
    if _looks_local(path):
        return False, f"{path}: no such local directory"
    return True, ""


def _auto_class(kind: Kind) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification


def check_loadable(path: str, kind: Kind, trust_remote_code: bool = False) -> tuple[bool, str, Any]:
    """Load the config and tokenizer only (no weights) and check the architecture has a ``kind``
    head; returns (ok, reason, config)."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - any loading failure makes the judge unavailable
        return False, f"loading {path} failed: {type(e).__name__}: {e}", None
    if not trust_remote_code and type(config) not in _auto_class(kind)._model_mapping:
        return False, f"{path}: {type(config).__name__} has no {kind} model class in transformers", config
    return True, "", config


def load(
    path: str, kind: Kind, trust_remote_code: bool = False, device: str | None = None
) -> tuple[Any, Any]:
    """(model in eval mode on ``device``, tokenizer). fp32 on CPU, bf16 on CUDA."""
    import torch
    from transformers import AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = _auto_class(kind).from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tok


def first_token_ids(tokenizer: Any, a: str, b: str) -> tuple[int, int]:
    """Ids of the first tokens of the verdict words ``a`` and ``b``; they must differ, else
    P(first generated token = b) is undefined."""
    ia = tokenizer(a, add_special_tokens=False)["input_ids"][0]
    ib = tokenizer(b, add_special_tokens=False)["input_ids"][0]
    if ia == ib:
        raise ValueError(f"{a!r} and {b!r} share their first token; P({b}) is undefined")
    return ia, ib


class HFClassifierJudge:
    """Mixin for judges backed by local/hub weights: availability, lazy loading, padding.

    Causal judges pad on the left (generation); sequence classifiers on the right. A tokenizer
    without a pad token pads with EOS.
    """

    kind: Kind = "causal"

    def __init__(
        self,
        path: str | None = None,
        batch_size: int = 8,
        trust_remote_code: bool = False,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.path = str(path) if path is not None else None
        self.batch_size = batch_size
        self.trust = trust_remote_code
        self.device = device
        self.progress = progress
        self._model: Any = None
        self._tok: Any = None
        self._why: str | None = None  # cached unavailability reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, batch_size={self.batch_size})"

    def check_config(self, config: Any) -> str | None:
        """Judge-specific check of the loaded config; a reason string when it cannot work."""
        return None

    def available(self) -> tuple[bool, str]:
        """(False, reason) for missing weights, or when config/tokenizer cannot be loaded."""
        if self._model is not None:
            return True, ""
        if self._why is None:
            ok, why = weights_available(self.path)
            if ok:
                ok, why, config = check_loadable(self.path, self.kind, self.trust)
                if ok:
                    why = self.check_config(config) or ""
            self._why = why
        return (not self._why), self._why

    def model_and_tokenizer(self) -> tuple[Any, Any]:
        """Load once. Raises :class:`JudgeUnavailable` with the reason when the judge cannot run."""
        from dualselect.evaluation.judges.base import JudgeUnavailable

        if self._model is None:
            ok, why = self.available()
            if not ok:
                raise JudgeUnavailable(f"{getattr(self, 'name', type(self).__name__)}: {why}")
            model, tok = load(self.path, self.kind, self.trust, self.device)
            tok.padding_side = "left" if self.kind == "causal" else "right"
            if tok.pad_token_id is None:
                if tok.eos_token is None:
                    raise JudgeUnavailable(f"{self.path}: tokenizer has neither a pad nor an EOS token")
                tok.pad_token = tok.eos_token
            if getattr(model.config, "pad_token_id", None) is None:
                model.config.pad_token_id = tok.pad_token_id
            self._model, self._tok = model, tok
        return self._model, self._tok

    def unload(self) -> None:
        """Free the weights (the next ``judge`` call loads them again)."""
        self._model = self._tok = None
