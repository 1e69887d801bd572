"""Scores and selections on small hand-computed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from dualselect.selection import (
    Selection,
    reference_scores,
    resolve_k,
    select_by_token_budget,
    select_top,
    task_scores,
)


def test_scores_follow_the_spec_signs():
    loss, cos = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.5, -0.5, 0.0])
    # s_i = mu_ref * l_i + nu * c_i, c_i = -cos(g_i, u)
    assert torch.allclose(reference_scores(loss, cos, mu_ref=1.0, nu=2.0), torch.tensor([0.0, 3.0, 0.5]))
    assert torch.allclose(reference_scores(loss, cos), torch.tensor([0.5, 2.5, 0.5]))
    # t_j = mu_task * l_j - nu * a_j, a_j = cos(g_j, r)
    assert torch.allclose(task_scores(loss, cos, mu_task=3.0, nu=1.0), torch.tensor([2.5, 6.5, 1.5]))
    # the ablations of spec pitfall 4
    assert torch.allclose(task_scores(loss, cos, nu=0.0), loss)
    assert torch.allclose(task_scores(loss, cos, mu_task=0.0), -cos)


def test_hard_selection_highest_and_lowest_with_stable_ties():
    s = torch.tensor([0.3, 0.9, 0.9, 0.1, 0.9])
    top = select_top(s, "hard", k=2, largest=True)
    assert top.indices.tolist() == [1, 2]  # the tie among 1, 2, 4: lower indices win
    assert torch.allclose(top.weights, torch.tensor([0.5, 0.5]))
    low = select_top(s, "hard", k=2, largest=False)
    assert low.indices.tolist() == [0, 3]
    assert select_top(torch.zeros(4), "hard", k=3, largest=False).indices.tolist() == [0, 1, 2]
    every = select_top(s, "hard", k=10)  # k > n: all
    assert every.indices.tolist() == [0, 1, 2, 3, 4] and torch.allclose(every.weights, torch.full((5,), 0.2))
    assert select_top(s, "hard").indices.tolist() == [0, 1, 2, 3, 4]  # k=None: all
    assert torch.allclose(top.dense(5), torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0]))


def test_soft_selection_is_the_entropy_regularised_maximiser():
    s, tau = torch.tensor([1.0, 0.0, -1.0]), 0.5
    sel = select_top(s, "soft", tau=tau)
    e = [math.exp(2.0), 1.0, math.exp(-2.0)]  # exp(s / tau)
    expected = torch.tensor([x / sum(e) for x in e])
    assert sel.indices.tolist() == [0, 1, 2] and torch.allclose(sel.weights, expected, atol=1e-7)

    def objective(w: torch.Tensor) -> float:  # <w, s> + tau * H(w)
        return float((w * s).sum() - tau * (w * w.log()).sum())

    for delta in ([0.05, -0.05, 0.0], [0.0, 0.01, -0.01], [-0.02, 0.0, 0.02]):
        assert objective(expected) > objective(expected + torch.tensor(delta))
    # lowest: softmax(-s / tau), the maximiser of <w, -s> + tau * H(w)
    low = select_top(s, "soft", tau=tau, largest=False)
    assert torch.allclose(low.weights, expected.flip(0), atol=1e-7)


def test_soft_top_k_keeps_largest_weights_and_renormalises():
    s = torch.tensor([0.2, 0.5, 0.1, 0.4])
    w = torch.softmax(s / 0.1, 0)
    top2 = select_top(s, "soft", k=2, tau=0.1)
    assert top2.indices.tolist() == [1, 3]
    assert torch.allclose(top2.weights, w[[1, 3]] / w[[1, 3]].sum(), atol=1e-7)
    assert abs(float(top2.weights.sum()) - 1.0) < 1e-6
    low2 = select_top(s, "soft", k=2, tau=0.1, largest=False)
    wl = torch.softmax(-s / 0.1, 0)
    assert low2.indices.tolist() == [0, 2]
    assert torch.allclose(low2.weights, wl[[0, 2]] / wl[[0, 2]].sum(), atol=1e-7)
    # a tiny temperature underflows the tail of the softmax; the order of the scores still decides
    tiny = select_top(torch.tensor([0.0, 5.0, 1.0, 3.0]), "soft", k=3, tau=1e-4)
    assert tiny.indices.tolist() == [1, 2, 3] and torch.allclose(tiny.weights, torch.tensor([1.0, 0.0, 0.0]))
    ties = select_top(torch.tensor([1.0, 1.0, 1.0]), "soft", k=2)
    assert ties.indices.tolist() == [0, 1] and torch.allclose(ties.weights, torch.tensor([0.5, 0.5]))


def test_weights_keep_the_score_precision():
    s64 = torch.tensor([0.1, 0.2], dtype=torch.float64)
    assert select_top(s64, "soft").weights.dtype == torch.float64
    assert select_top(s64.float(), "hard", k=1).weights.dtype == torch.float32


def test_selection_errors():
    s = torch.tensor([0.1, 0.2])
    with pytest.raises(ValueError, match="mode"):
        select_top(s, "medium")
    with pytest.raises(ValueError, match="k=0"):
        select_top(s, "hard", k=0)
    with pytest.raises(ValueError, match="tau"):
        select_top(s, "soft", tau=0.0)
    with pytest.raises(ValueError, match="NaN"):
        select_top(torch.tensor([0.1, float("nan")]))
    with pytest.raises(ValueError, match="non-empty"):
        select_top(torch.zeros(0))


def test_token_budget_keeps_the_smallest_prefix_reaching_the_fraction():
    t = torch.tensor([0.5, 0.1, 0.9, 0.3])  # ascending score order: 1, 3, 0, 2
    n = torch.tensor([10, 40, 30, 20])  # total 100; prefixes: 40, 60, 70, 100
    assert select_by_token_budget(t, n, 0.9).indices.tolist() == [0, 1, 2, 3]  # 70 < 90 <= 100
    assert select_by_token_budget(t, n, 0.6).indices.tolist() == [1, 3]  # exactly 60 (0.6 * 100 in floats)
    assert select_by_token_budget(t, n, 0.61).indices.tolist() == [0, 1, 3]
    assert select_by_token_budget(t, n, 0.05).indices.tolist() == [1]
    # at_most: the largest prefix within the budget (40, 60, 70 <= 90 < 100), still >= 1 sample
    assert select_by_token_budget(t, n, 0.9, rule="at_most").indices.tolist() == [0, 1, 3]
    assert select_by_token_budget(t, n, 0.6, rule="at_most").indices.tolist() == [1, 3]
    assert select_by_token_budget(t, n, 0.59, rule="at_most").indices.tolist() == [1]
    assert select_by_token_budget(t, n, 0.05, rule="at_most").indices.tolist() == [1]
    assert select_by_token_budget(t, n, 1.0, rule="at_most").indices.tolist() == [0, 1, 2, 3]
    eight = torch.full((8,), 12)  # 8 similar samples: 90% keeps all (at_least) or 7 (at_most)
    assert len(select_by_token_budget(torch.arange(8.0), eight, 0.9).indices) == 8
    assert select_by_token_budget(torch.arange(8.0), eight, 0.9, rule="at_most").indices.tolist() == list(
        range(7)
    )
    with pytest.raises(ValueError, match="rule"):
        select_by_token_budget(t, n, 0.9, rule="exactly")
    hard = select_by_token_budget(t, n, 0.7)
    assert hard.indices.tolist() == [0, 1, 3] and torch.allclose(hard.weights, torch.full((3,), 1 / 3))
    soft = select_by_token_budget(t, n, 0.6, mode="soft", tau=0.1)
    e1, e3 = math.exp(-1.0), math.exp(-3.0)  # softmax(-t / tau) on the kept {1, 3}
    assert torch.allclose(soft.weights, torch.tensor([e1 / (e1 + e3), e3 / (e1 + e3)]), atol=1e-7)
    # a sample without supervised tokens costs no budget; ties in score: lower index first
    z = select_by_token_budget(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0, 5, 5]), 0.5)
    assert z.indices.tolist() == [0, 1]
    with pytest.raises(ValueError, match="fraction"):
        select_by_token_budget(t, n, 0.0)
    with pytest.raises(ValueError, match="token counts"):
        select_by_token_budget(t, n[:3], 0.5)


def test_resolve_k():
    assert resolve_k(None, 0.1, 336) == math.ceil(33.6) == 34
    assert resolve_k(None, 0.1, 30) == 3  # 0.1 * 30 is 3.0000000000000004 in floats
    assert resolve_k(None, 0.1, 5) == 1 and resolve_k(None, 1.0, 7) == 7
    assert resolve_k(32, None, 10) == 10 and resolve_k(5, None, 10) == 5
    for bad in (
        (None, 1.5, 10),
        (None, 0.0, 10),
        (0, None, 10),
        (None, None, 10),
        (3, 0.1, 10),
        (3, None, 0),
    ):
        with pytest.raises(ValueError):
            resolve_k(*bad)


def test_selection_is_a_plain_record():
    sel = Selection(torch.tensor([2, 5]), torch.tensor([0.25, 0.75]))
    assert sel.dense(6).tolist() == [0.0, 0.0, 0.25, 0.0, 0.0, 0.75]
