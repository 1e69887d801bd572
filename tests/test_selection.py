"""Pure selection and correction functions on hand-computed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from dualselect.selection import (
    correct,
    reference_scores,
    resolve_k,
    select_by_token_budget,
    select_top,
    task_scores,
)
from dualselect.selection.diagnostics import overlap, random_overlap_null


def test_scores_follow_the_spec_signs():
    loss, c = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -0.5])
    assert torch.allclose(reference_scores(loss, c, mu_ref=1, nu=2), torch.tensor([0.0, 3.0]))  # l - nu*cos
    assert torch.allclose(task_scores(loss, c, mu_task=3, nu=1), torch.tensor([2.5, 6.5]))  # mu*l - nu*cos


def test_hard_selection_top_and_bottom_with_stable_ties():
    s = torch.tensor([0.3, 0.9, 0.9, 0.1])
    top = select_top(s, "hard", k=2, largest=True)
    assert top.indices.tolist() == [1, 2] and torch.allclose(top.weights, torch.tensor([0.5, 0.5]))
    low = select_top(s, "hard", k=1, largest=False)
    assert low.indices.tolist() == [3]
    tie = select_top(torch.tensor([1.0, 1.0, 1.0]), "hard", k=1)
    assert tie.indices.tolist() == [0]
    assert select_top(s, "hard", k=10).indices.tolist() == [0, 1, 2, 3]


def test_soft_selection_is_the_entropy_regularised_maximiser():
    s = torch.tensor([1.0, 0.0, -1.0])
    sel = select_top(s, "soft", tau=0.5)
    expected = torch.softmax(s / 0.5, 0)
    assert torch.allclose(sel.weights, expected, atol=1e-6)

    # it maximises <w, s> + tau * H(w): any perturbation on the simplex does worse
    def obj(w):
        return float((w * s).sum() - 0.5 * (w * w.log()).sum())

    for delta in ([0.05, -0.05, 0.0], [0.0, 0.01, -0.01], [-0.02, 0.0, 0.02]):
        assert obj(expected) > obj(expected + torch.tensor(delta))
    low = select_top(s, "soft", k=2, tau=0.5, largest=False)
    w = torch.softmax(-s / 0.5, 0)
    assert low.indices.tolist() == [1, 2]
    assert torch.allclose(low.weights, w[[1, 2]] / w[[1, 2]].sum(), atol=1e-6)


def test_token_budget_keeps_smallest_prefix_reaching_the_fraction():
    t = torch.tensor([0.5, 0.1, 0.9, 0.3])  # ascending order: 1, 3, 0, 2
    n = torch.tensor([10, 40, 30, 20])  # total 100; 90% -> 40 + 20 + 10 = 70 < 90, + 30 = 100
    assert select_by_token_budget(t, n, 0.9).indices.tolist() == [0, 1, 2, 3]
    assert select_by_token_budget(t, n, 0.6).indices.tolist() == [1, 3]  # 60 reached exactly
    assert select_by_token_budget(t, n, 0.61).indices.tolist() == [0, 1, 3]
    soft = select_by_token_budget(t, n, 0.6, mode="soft", tau=0.1)
    assert torch.allclose(soft.weights, torch.softmax(-t[[1, 3]] / 0.1, 0).float())


def test_resolve_k():
    assert resolve_k(None, 0.1, 336) == math.ceil(33.6) == 34
    assert resolve_k(32, None, 10) == 10 and resolve_k(5, None, 10) == 5
    with pytest.raises(ValueError):
        resolve_k(None, 1.5, 10)
    with pytest.raises(ValueError):
        resolve_k(0, None, 10)


def test_correction_modes():
    r = torch.tensor([1.0, 0.0])
    d_conflict, d_ok = torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 1.0])
    assert torch.allclose(correct(d_conflict, r, 0.2, "add"), torch.tensor([-0.8, 1.0]))
    proj = correct(d_conflict, r, 0.2, "project")
    assert torch.allclose(proj, torch.tensor([0.0, 1.0])) and float(proj @ r) == 0.0
    assert torch.allclose(correct(d_conflict, r, 0.2, "project_add"), torch.tensor([0.2, 1.0]))
    assert torch.allclose(correct(d_ok, r, 0.2, "project_add"), d_ok + 0.2 * r)  # no conflict: unchanged
    with pytest.raises(ValueError):
        correct(d_ok, r, mode="sideways")


def test_overlap_and_random_null():
    assert overlap([1, 2, 3], [2, 3, 4]) == 0.5
    # simulate the null
    g = torch.Generator().manual_seed(0)
    sims = [
        overlap(torch.randperm(20, generator=g)[:5].tolist(), torch.randperm(20, generator=g)[:5].tolist())
        for _ in range(4000)
    ]
    assert abs(sum(sims) / len(sims) - random_overlap_null(5, 20)) < 0.01


def test_baseline_selection_random_all_and_category_uniform():
    from dualselect.selection.baselines import baseline_selection

    g = torch.Generator().manual_seed(0)
    sel = baseline_selection("random", 10, 4, g)
    assert sel.indices.tolist() == sorted(set(sel.indices.tolist())) and len(sel.indices) == 4
    assert torch.allclose(sel.weights, torch.full((4,), 0.25))
    assert baseline_selection("all", 5, 2, g).indices.tolist() == [0, 1, 2, 3, 4]
    cats = ["a"] * 6 + ["b"] * 2 + ["c"] * 2
    sel = baseline_selection("category_uniform", 10, 6, torch.Generator().manual_seed(1), cats)
    picked = [cats[i] for i in sel.indices.tolist()]
    assert sorted(picked) == ["a", "a", "b", "b", "c", "c"]  # round-robin: two of each
    with pytest.raises(ValueError, match="one category per scored reference"):
        baseline_selection("category_uniform", 10, 6, g, cats[:3])
    with pytest.raises(ValueError, match="selector='best'"):
        baseline_selection("best", 10, 6, g)
