"""Divergence detection: stop a run at the first non-finite gradient, weight or logged loss.

``DivergenceCallback`` checks, at every optimiser step,

* the gradients of the trainable parameters just before ``optimizer.step()`` (after clipping,
  which turns a NaN or inf norm into NaN gradients): the step is never taken, so the weights in
  memory and every checkpoint already on disk are the last good ones;
* the trainable weights after the step (before the step's checkpoint is written);
* the logged ``loss`` and ``grad_norm`` (the Trainer's ``logging_nan_inf_filter`` would otherwise
  replace a NaN loss by the running mean).

It raises :class:`TrainingDiverged`, which ends ``trainer.train()``; ``run_training`` then saves no
adapter, writes ``log.json`` with ``"status": "diverged"`` and the CLI exits with code 3.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import TrainerCallback

HINT = "lower learning_rate (or raise max_grad_norm clipping) and train again"


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss, gradient or weight. ``step``: the optimiser step
    (0-based count of steps completed before it); ``last_good_checkpoint``: the newest checkpoint
    directory written before it, if any."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.last_good_checkpoint: str | None = None


def nonfinite_params(model: torch.nn.Module, grads: bool = False) -> list[str]:
    """Names of the trainable parameters (or of their gradients) holding a NaN or inf."""
    bad = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        t = p.grad if grads else p
        if t is not None and not bool(torch.isfinite(t).all()):
            bad.append(name)
    return bad


def assert_finite_params(model: torch.nn.Module, what: str = "adapter") -> None:
    """Raise :class:`TrainingDiverged` if a trainable weight of ``model`` is NaN or inf."""
    bad = nonfinite_params(model)
    if bad:
        raise TrainingDiverged(
            f"the run diverged: {len(bad)} {what} weight tensor(s) hold NaN or inf (e.g. {bad[0]}); "
            f"not saved. {HINT}"
        )


def _describe(bad: list[str]) -> str:
    return f"{len(bad)} tensor(s), e.g. {bad[0]}"


class DivergenceCallback(TrainerCallback):
    """Raise :class:`TrainingDiverged` at the first non-finite gradient, weight, loss or grad norm."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs: Any):
        if model is not None:
            bad = nonfinite_params(model, grads=True)
            if bad:
                raise TrainingDiverged(
                    f"the run diverged at optimiser step {state.global_step + 1}: non-finite "
                    f"gradients ({_describe(bad)}); the step was not applied. {HINT}",
                    step=state.global_step,
                )
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs: Any):
        if model is not None:
            bad = nonfinite_params(model)
            if bad:
                raise TrainingDiverged(
                    f"the run diverged at optimiser step {state.global_step}: non-finite weights "
                    f"({_describe(bad)}). {HINT}",
                    step=state.global_step - 1,
                )
        return control

    def on_log(self, args, state, control, logs=None, **kwargs: Any):
        for key in ("loss", "grad_norm"):
            v = (logs or {}).get(key)
            if isinstance(v, (int, float)) and not math.isfinite(v):
                raise TrainingDiverged(
                    f"the run diverged by optimiser step {state.global_step}: logged {key} is {v}. {HINT}",
                    step=state.global_step,
                )
        return control
