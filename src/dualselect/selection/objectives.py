"""What a reference pool preserves: its objective as a function of each reference's loss.

Every reference ``i`` has a token-mean NLL ``l_i`` of its response and a gradient ``g_i``. A pool's
objective ``o_i = o(l_i)`` is what its selection scores (``s_i = mu_ref * o_i + nu * c_i``, conflict
``c_i = -cos(grad o_i, u)``) and what its direction descends (``r_p = sum_i w_i grad o_i``); by the
chain rule ``grad o_i = o'(l_i) g_i``, so one per-sample gradient ``g_i`` serves every objective:

* ``preserve`` (the safety pool, the helpfulness pool's default): ``o = l``, ``o' = 1``;
* ``refusal_penalty`` (helpfulness pool of refusals): ``o = -l``, ``o' = -1``: push the
  refusals' likelihood down, without a floor;
* ``unlikelihood`` (helpfulness pool of refusals): ``o = -log(1 - p)``, ``p = exp(-l)`` the
  refusal's per-token (geometric-mean) probability, ``o' = -p / (1 - p) = -1 / expm1(l)``: the
  sequence-level unlikelihood loss, bounded below by 0, so its push fades as the refusal becomes
  unlikely (``o' -> 0`` for ``l -> inf``) instead of moving the adapter without limit.

Pure tensors in and out (no model), like the rest of :mod:`dualselect.selection`.
"""

from __future__ import annotations

import torch

OBJECTIVES = ("preserve", "refusal_penalty", "unlikelihood")
# l is clamped here for the unlikelihood (p <= exp(-1e-3), o' >= -1000): a refusal the model
# already emits with probability ~1 must not make the direction infinite
UNLIKELIHOOD_MIN_NLL = 1e-3


def _check(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}: expected one of {OBJECTIVES}")


def objective_values(losses: torch.Tensor, objective: str = "preserve") -> torch.Tensor:
    """``o(l_i)`` per reference, the quantity a pool's selection scores (high = at risk)."""
    _check(objective)
    if objective == "preserve":
        return losses
    if objective == "refusal_penalty":
        return -losses
    lc = losses.double().clamp_min(UNLIKELIHOOD_MIN_NLL)
    return (-torch.log(-torch.expm1(-lc))).to(losses.dtype)


def objective_slopes(losses: torch.Tensor, objective: str = "preserve") -> torch.Tensor:
    """``o'(l_i)`` per reference: ``grad o_i = o'(l_i) * g_i``. Of constant sign per objective
    (+ for ``preserve``, - for the others), so ``cos(grad o_i, u) = sign * cos(g_i, u)``."""
    _check(objective)
    if objective == "preserve":
        return torch.ones_like(losses)
    if objective == "refusal_penalty":
        return -torch.ones_like(losses)
    lc = losses.double().clamp_min(UNLIKELIHOOD_MIN_NLL)
    return (-1.0 / torch.expm1(lc)).to(losses.dtype)


def objective_sign(objective: str) -> float:
    """The constant sign of ``o'``: +1 for ``preserve``, -1 for the refusal objectives."""
    _check(objective)
    return 1.0 if objective == "preserve" else -1.0
