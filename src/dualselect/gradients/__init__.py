"""Per-sample LoRA gradients: flat vectors, the hook owner, per-layer samplers, the fast engine and
the slow per-example oracle beside it (same interface: ``capture`` and ``weighted_gradient``)."""

from __future__ import annotations

from dualselect.gradients.engine import Capture, FastEngine, HookCapture, normalise_weights
from dualselect.gradients.flat import (
    add_flat_grad,
    assign_flat_grad,
    flat_grad,
    named_trainable_parameters,
    num_trainable,
    trainable_parameters,
)
from dualselect.gradients.hooks import LoraGradSampleHooks, lora_sublayers
from dualselect.gradients.losses import per_sample_losses, scoring_mode
from dualselect.gradients.oracle import OracleEngine, StackCapture
from dualselect.gradients.pool import PoolLosses, PoolScores, pool_losses, score_pool

ENGINES = {"fast": FastEngine, "oracle": OracleEngine}


def make_engine(name: str, **kwargs) -> FastEngine | OracleEngine:
    """``"fast"`` (one batched pass with hooks; kwargs e.g. ``strategy``) or ``"oracle"`` (the
    release's per-example loop)."""
    if name not in ENGINES:
        raise ValueError(f"engine={name!r}: expected one of {sorted(ENGINES)}")
    return ENGINES[name](**kwargs)


__all__ = [
    "ENGINES",
    "Capture",
    "FastEngine",
    "HookCapture",
    "LoraGradSampleHooks",
    "OracleEngine",
    "PoolLosses",
    "PoolScores",
    "StackCapture",
    "add_flat_grad",
    "assign_flat_grad",
    "flat_grad",
    "lora_sublayers",
    "make_engine",
    "named_trainable_parameters",
    "normalise_weights",
    "num_trainable",
    "per_sample_losses",
    "pool_losses",
    "score_pool",
    "scoring_mode",
    "trainable_parameters",
]
