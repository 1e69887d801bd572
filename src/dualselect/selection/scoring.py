"""Scores and selections of DualSelect: tensors in, selections out (no model).

Symbols as in the spec: reference score ``s_i = mu_ref * l_i + nu * c_i`` with conflict
``c_i = -cos(g_i, u)``; task score ``t_j = mu_task * l_j - nu * a_j`` with compatibility
``a_j = cos(g_j, r)``. References keep the highest ``s``, task samples the lowest ``t``.
Ties are broken deterministically: the lower index wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MODES = ("hard", "soft")
TOKEN_RULES = ("at_least", "at_most")  # how whole samples meet a token budget


@dataclass
class Selection:
    """Selected positions (ascending) and their weights (same order, summing to 1)."""

    indices: torch.Tensor
    weights: torch.Tensor

    def dense(self, n: int) -> torch.Tensor:
        """The weights as a length-``n`` vector with zeros at unselected positions."""
        w = torch.zeros(n, dtype=self.weights.dtype, device=self.weights.device)
        w[self.indices.to(w.device)] = self.weights
        return w


def reference_scores(
    losses: torch.Tensor, cos_u: torch.Tensor, mu_ref: float = 1.0, nu: float = 1.0
) -> torch.Tensor:
    """``s_i = mu_ref * l_i + nu * c_i``, ``c_i = -cos(g_i, u)``: high = high loss and against the task."""
    return mu_ref * losses + nu * (-cos_u)


def task_scores(
    losses: torch.Tensor, cos_r: torch.Tensor, mu_task: float = 1.0, nu: float = 1.0
) -> torch.Tensor:
    """``t_j = mu_task * l_j - nu * a_j``, ``a_j = cos(g_j, r)``: low = keep."""
    return mu_task * losses - nu * cos_r


class NonFiniteScores(ValueError):
    """Selection scores with NaN or inf: the per-sample losses or gradients were not finite."""


def _check_scores(scores: torch.Tensor) -> torch.Tensor:
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D tensor, got shape {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        bad = int((~torch.isfinite(scores)).sum())
        raise NonFiniteScores(
            f"scores contain NaN or inf ({bad} of {scores.numel()}): the per-sample losses or "
            "gradients are not finite, i.e. the run diverged; lower learning_rate and train again"
        )
    return scores.detach()


def _out_dtype(scores: torch.Tensor) -> torch.dtype:
    return scores.dtype if scores.dtype in (torch.float32, torch.float64) else torch.float32


def rank_order(scores: torch.Tensor, largest: bool) -> torch.Tensor:
    """Positions from best to worst (highest first if ``largest``); ties: the lower index first."""
    return torch.sort(-scores if largest else scores, stable=True).indices


def _sorted_selection(idx: torch.Tensor, w: torch.Tensor) -> Selection:
    idx, perm = torch.sort(idx)
    return Selection(idx, w[perm])


def select_top(
    scores: torch.Tensor,
    mode: str = "hard",
    k: int | None = None,
    tau: float = 0.1,
    largest: bool = True,
) -> Selection:
    """Select from ``scores``.

    * ``hard``: the ``k`` highest (``largest``) or lowest scores, equal weights ``1/k``.
    * ``soft``: ``w = softmax(s / tau)`` (``softmax(-s / tau)`` when not ``largest``): the maximiser of
      ``<w, s> + tau * H(w)`` (resp. ``<w, -s> + tau * H(w)``) on the simplex. With ``k``, only the k
      largest weights are kept and renormalised.

    ``k=None`` (or ``k >= n``) keeps all. Returns indices ascending with their weights.
    """
    scores = _check_scores(scores)
    n = scores.numel()
    if k is not None and int(k) < 1:
        raise ValueError(f"k={k}: must be >= 1 (or None for all)")
    k = n if k is None else min(int(k), n)
    dtype = _out_dtype(scores)
    if mode == "hard":
        idx = rank_order(scores, largest)[:k]
        w = torch.full((k,), 1.0 / k, dtype=dtype, device=scores.device)
    elif mode == "soft":
        if not tau > 0:
            raise ValueError(f"tau={tau}: must be > 0")
        z = (scores if largest else -scores).double() / tau
        w_all = torch.softmax(z, dim=0)
        # rank by z, not by w_all: softmax can underflow to equal zeros, z keeps the order
        idx = rank_order(z, largest=True)[:k]
        w = w_all[idx]
        w = (w / w.sum()).to(dtype)
    else:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    return _sorted_selection(idx, w)


def select_by_token_budget(
    scores: torch.Tensor,
    n_tokens: torch.Tensor,
    fraction: float = 0.9,
    mode: str = "hard",
    tau: float = 0.1,
    rule: str = "at_least",
) -> Selection:
    """The paper's task-side setting: whole samples in ascending score order until the kept
    supervised target tokens reach the budget ``fraction`` of the batch total. ``rule``:
    ``at_least`` keeps the smallest such prefix with ``>= fraction``; ``at_most`` the largest with
    ``<= fraction`` (always drops something when one sample exceeds the slack: on batches of 8
    similar samples, 90% ``at_least`` keeps all 8 and ``at_most`` keeps 7). At least one sample
    either way. ``hard``: equal weights; ``soft``: ``softmax(-t / tau)`` over the kept set."""
    scores = _check_scores(scores)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: must be in (0, 1]")
    n_tokens = torch.as_tensor(n_tokens).detach().reshape(-1).to(scores.device)
    if n_tokens.numel() != scores.numel():
        raise ValueError(f"{n_tokens.numel()} token counts for {scores.numel()} scores")
    if (n_tokens < 0).any():
        raise ValueError("token counts must be non-negative")
    order = rank_order(scores, largest=False)
    cum = n_tokens[order].double().cumsum(0)
    total = float(n_tokens.sum())
    eps = 1e-9 * max(total, 1.0)  # 0.6 * 100 is 60.00000000000001 in floats
    if rule == "at_least":
        m = int((cum < fraction * total - eps).sum()) + 1
    elif rule == "at_most":
        m = int((cum <= fraction * total + eps).sum())
    else:
        raise ValueError(f"rule={rule!r}: expected one of {TOKEN_RULES}")
    m = min(max(1, m), scores.numel())
    idx = order[:m]
    dtype = _out_dtype(scores)
    if mode == "hard":
        w = torch.full((m,), 1.0 / m, dtype=dtype, device=scores.device)
    elif mode == "soft":
        if not tau > 0:
            raise ValueError(f"tau={tau}: must be > 0")
        w = torch.softmax(-scores[idx].double() / tau, dim=0).to(dtype)
    else:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    return _sorted_selection(idx, w)


def resolve_k(k: int | None, fraction: float | None, n: int) -> int:
    """A count ``k``, or ``ceil(fraction * n)`` (paper: ``K_ref = ceil(0.1 * pool)``); clipped to
    ``[1, n]``. Give exactly one of ``k`` and ``fraction``."""
    if n < 1:
        raise ValueError(f"n={n}: cannot select from an empty pool")
    if (k is None) == (fraction is None):
        raise ValueError(f"give exactly one of k (a count) and fraction, got k={k}, fraction={fraction}")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction={fraction}: must be in (0, 1]")
        # round first: 0.1 * 30 is 3.0000000000000004 in floats, whose ceil would be 4
        return max(1, min(n, math.ceil(round(fraction * n, 9))))
    if int(k) != k or k < 1:
        raise ValueError(f"k={k}: must be an integer >= 1")
    return min(n, int(k))
