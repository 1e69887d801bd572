"""The prefiltered refresh's pure math: candidates = the top-M by loss, and its exactness certificate."""

from __future__ import annotations

import pytest
import torch

from dualselect.selection import prefilter_by_loss, prefilter_is_exact, reference_scores, select_top


def test_prefilter_by_loss_keeps_the_highest_losses_ascending():
    losses = torch.tensor([0.5, 2.0, 1.0, 3.0, 2.0, 0.1])
    assert prefilter_by_loss(losses, 3, mu_ref=1.0).tolist() == [1, 3, 4]
    # ties: the lower index wins (positions 1 and 4 both 2.0; only one fits with m=2)
    assert prefilter_by_loss(losses, 2, mu_ref=1.0).tolist() == [1, 3]
    assert prefilter_by_loss(losses, 1, mu_ref=0.5).tolist() == [3]
    assert prefilter_by_loss(losses, 6, mu_ref=1.0).tolist() == list(range(6))
    assert prefilter_by_loss(losses, 100, mu_ref=1.0).tolist() == list(range(6))
    # signed losses (the helpfulness pool's refusal penalty ranks -l): the lowest l first
    assert prefilter_by_loss(-losses, 2, mu_ref=1.0).tolist() == [0, 5]


def test_prefilter_by_loss_refuses_what_it_cannot_filter():
    losses = torch.tensor([0.5, 2.0, 1.0])
    with pytest.raises(ValueError, match="mu_ref > 0"):
        prefilter_by_loss(losses, 2, mu_ref=0.0)
    with pytest.raises(ValueError, match="refresh_prefilter=0"):
        prefilter_by_loss(losses, 0, mu_ref=1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        prefilter_by_loss(torch.tensor([0.5, float("nan")]), 1, mu_ref=1.0)


def test_prefilter_certificate_is_the_bound_on_outside_scores():
    # outside max loss 1.0, mu 2, nu 0.5: an outside reference scores at most 2.5
    assert prefilter_is_exact(torch.tensor([2.6, 3.0]), torch.tensor([1.0, 0.2]), 2.0, 0.5)
    assert not prefilter_is_exact(torch.tensor([2.5, 3.0]), torch.tensor([1.0, 0.2]), 2.0, 0.5)
    assert not prefilter_is_exact(torch.tensor([2.4, 3.0]), torch.tensor([1.0]), 2.0, 0.5)
    assert prefilter_is_exact(torch.tensor([-5.0]), torch.tensor([]), 1.0, 1.0)
    # when it holds, the hard top-K of the candidates is the exact top-K of the pool
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        losses = torch.rand(40, generator=g) * 4
        cos = torch.rand(40, generator=g) * 2 - 1
        s = reference_scores(losses, cos, 1.0, 0.3)
        exact = set(select_top(s, "hard", 5).indices.tolist())
        cand = prefilter_by_loss(losses, 12, 1.0)
        got = set(cand[select_top(s[cand], "hard", 5).indices].tolist())
        out = torch.ones(40, dtype=torch.bool)
        out[cand] = False
        if prefilter_is_exact(s[sorted(got)], losses[out], 1.0, 0.3):
            assert got == exact
