"""Pure selection functions of DualSelect: scores, hard/soft selection, token budgets, gradient
correction, pool objectives and overlap diagnostics. Tensors in, selections out; no model."""

from __future__ import annotations

from dualselect.selection.correction import correct, remove_conflict
from dualselect.selection.diagnostics import overlap, random_overlap_null
from dualselect.selection.objectives import OBJECTIVES, objective_sign, objective_slopes, objective_values
from dualselect.selection.prefilter import prefilter_by_loss, prefilter_is_exact
from dualselect.selection.scoring import (
    Selection,
    rank_order,
    reference_scores,
    resolve_k,
    select_by_token_budget,
    select_top,
    task_scores,
)

__all__ = [
    "OBJECTIVES",
    "Selection",
    "correct",
    "objective_sign",
    "objective_slopes",
    "objective_values",
    "overlap",
    "prefilter_by_loss",
    "prefilter_is_exact",
    "random_overlap_null",
    "rank_order",
    "reference_scores",
    "remove_conflict",
    "resolve_k",
    "select_by_token_budget",
    "select_top",
    "task_scores",
]
