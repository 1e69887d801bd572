"""The prefiltered refresh's math: which references get a per-sample gradient (tensors in, indices out).

The exact refresh scores every reference ``i`` by ``s_i = mu_ref * l_i + nu * c_i`` with
``c_i = -cos(g_i, u)``, which needs ``g_i``. The prefiltered refresh first computes every ``l_i``
with forward passes only, keeps the ``M`` references with the highest loss, and scores (and
selects K among) those ``M`` alone. Approximation: a reference outside the top-M by loss can never
be selected. Since ``|c_i| <= 1``, any reference outside the candidates has
``s_i <= mu_ref * max_outside(l) + nu``; when every selected score exceeds that bound, the
selection is provably the exact one (:func:`prefilter_is_exact`).
"""

from __future__ import annotations

import torch

from dualselect.selection.scoring import _check_scores, rank_order


def prefilter_by_loss(losses: torch.Tensor, m: int, mu_ref: float) -> torch.Tensor:
    """Positions (ascending) of the ``m`` highest losses (ties: the lower index), the candidates
    that get per-sample gradients. ``m >= len(losses)``: every position. ``mu_ref`` must be > 0:
    with ``mu_ref = 0`` the score ignores ``l_i``, so ranking by loss is no filter of it."""
    if not mu_ref > 0:
        raise ValueError(
            f"refresh_prefilter needs mu_ref > 0 (got {mu_ref}): the loss ranks the candidates, "
            "and with mu_ref = 0 the score does not contain it; use the exact refresh"
        )
    if int(m) != m or m < 1:
        raise ValueError(f"refresh_prefilter={m}: must be an integer >= 1")
    losses = _check_scores(losses)
    keep = rank_order(losses, largest=True)[: int(m)]
    return torch.sort(keep).values


def prefilter_is_exact(
    selected_scores: torch.Tensor, outside_losses: torch.Tensor, mu_ref: float, nu: float
) -> bool:
    """True when no reference outside the candidates could have been selected: every selected
    score is above ``mu_ref * max(outside_losses) + nu``, the highest score an outside reference
    can reach (``|c_i| <= 1``). Then the hard top-K, and the soft top-K with its weights (which
    depend on the kept scores only), are the exact refresh's. No outside reference: True."""
    if outside_losses.numel() == 0:
        return True
    bound = mu_ref * float(outside_losses.max()) + abs(nu)
    return bool(float(selected_scores.min()) > bound)
