"""The evaluation item every suite is made of (torch-free, so suites load without a model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# what an item measures: refusal of a harmful request, over-refusal of a safe one that looks
# harmful, an open-ended benign answer (pairwise quality), or an exact capability answer
KINDS = ("harmful", "over_refusal", "benign", "capability")


@dataclass
class EvalItem:
    """One evaluation prompt. ``gold``: the exact answer (capability/benign) or the reference answer
    whose likelihood KL is measured on (harmful: the aligned refusal), when known."""

    id: str
    prompt: str
    kind: str
    category: str | None = None
    gold: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
