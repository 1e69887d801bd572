"""The slow oracle: what the public release does, kept as the reference for the fast engine.

Per example: a separate forward and backward on the unpadded sample, its gradient copied out
parameter by parameter into row k of a [B, P] stack that is kept in memory. Every statistic is
then read off the stack. Same interface as :class:`~dualselect.gradients.engine.FastEngine`.
(The release calls ``loss.backward()`` and copies ``.grad``; we take ``torch.autograd.grad`` so a
caller's accumulated ``.grad`` is left alone: the same numbers.)
"""

from __future__ import annotations

import torch
from torch import nn

from dualselect.gradients.engine import Capture, _check_rows, normalise_weights
from dualselect.gradients.flat import trainable_parameters
from dualselect.gradients.losses import BATCH_KEYS, check_batch, forward_losses, scoring_mode


def unpad_row(batch: dict, k: int) -> dict:
    """Sample k alone, without its padding ([1, T_k])."""
    keep = batch["attention_mask"][k].bool()
    return {key: batch[key][k : k + 1, keep] for key in BATCH_KEYS}


class StackCapture(Capture):
    """Oracle capture: the full [B, P] stack of per-sample gradients."""

    def __init__(self, stack: torch.Tensor, losses: torch.Tensor, n_target_tokens: torch.Tensor) -> None:
        self.stack: torch.Tensor | None = stack
        self.losses = losses
        self.n_target_tokens = n_target_tokens

    def _stack(self) -> torch.Tensor:
        if self.stack is None:
            raise RuntimeError("this capture was released")
        return self.stack

    def dots(self, v: torch.Tensor) -> torch.Tensor:
        s = self._stack()
        if v.dim() != 1 or v.numel() != s.shape[1]:
            raise ValueError(f"flat vector of shape {tuple(v.shape)}; expected ({s.shape[1]},)")
        return s @ v.detach().float()

    def sq_norms(self) -> torch.Tensor:
        return self._stack().pow(2).sum(1)

    def weighted_sum(self, w: torch.Tensor) -> torch.Tensor:
        s = self._stack()
        return normalise_weights(w, s.shape[0]).to(s.device) @ s

    def per_sample_flat(self) -> torch.Tensor:
        return self._stack()

    def release(self) -> None:
        self.stack = None


class OracleEngine:
    """The release's per-example loop (``engine="oracle"``)."""

    name = "oracle"

    def capture(self, model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> StackCapture:
        """Per example: forward, backward, copy the gradient out; keep the [B, P] stack
        (losses label-smoothed by ``label_smoothing``, as :meth:`FastEngine.capture`)."""
        check_batch(batch)
        _check_rows(batch)
        params = trainable_parameters(model)
        B = batch["input_ids"].shape[0]
        P = sum(p.numel() for p in params)
        device = batch["input_ids"].device
        stack = torch.zeros(B, P, dtype=torch.float32, device=device)
        losses = torch.zeros(B, dtype=torch.float32, device=device)
        ntok = torch.zeros(B, dtype=torch.long, device=device)
        with scoring_mode(model):
            for k in range(B):
                loss, n = forward_losses(  # all logits, as the release
                    model, unpad_row(batch, k), all_logits=True, label_smoothing=label_smoothing
                )
                grads = torch.autograd.grad(loss.sum(), params, allow_unused=True)
                offset = 0
                for p, g in zip(params, grads):  # copy out, parameter by parameter
                    if g is not None:
                        stack[k, offset : offset + p.numel()].copy_(g.reshape(-1))
                    offset += p.numel()
                losses[k], ntok[k] = loss.detach()[0], n[0]
        return StackCapture(stack, losses, ntok)

    def weighted_gradient(self, model: nn.Module, batch: dict, weights: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k g_k / sum_k w_k`` from the stored per-sample gradients (as the release)."""
        normalise_weights(weights, batch["input_ids"].shape[0])  # fail before the slow loop
        return self.capture(model, batch).weighted_sum(weights)
