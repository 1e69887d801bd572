"""The baselines' reference choices (no scores): every reference, K at random, or K round-robin
over categories with a random order within each. Equal weights. Tensors in, selections out."""

from __future__ import annotations

import torch

from dualselect.selection.scoring import Selection

SELECTORS = ("random", "category_uniform", "all")


def baseline_selection(
    selector: str, n: int, k: int, g: torch.Generator, categories: list[str] | None = None
) -> Selection:
    """``selector`` over ``n`` scored references (positions 0..n-1): ``all``, ``random`` (K drawn
    with ``g``) or ``category_uniform`` (``categories[i]`` of each position; round-robin over the
    sorted categories, each drawn in a random order with ``g``). Indices sorted, weights 1/|kept|."""
    if selector == "all":
        picked = list(range(n))
    elif selector == "random":
        picked = torch.randperm(n, generator=g)[:k].tolist()
    elif selector == "category_uniform":
        if categories is None or len(categories) != n:
            raise ValueError("category_uniform needs one category per scored reference")
        by_cat: dict[str, list[int]] = {}
        for pos, cat in enumerate(categories):
            by_cat.setdefault(str(cat), []).append(pos)
        queues = [
            [m[j] for j in torch.randperm(len(m), generator=g).tolist()] for _, m in sorted(by_cat.items())
        ]
        picked = []
        while len(picked) < k and any(queues):
            for q in queues:
                if q and len(picked) < k:
                    picked.append(q.pop(0))
    else:
        raise ValueError(f"selector={selector!r}: expected one of {SELECTORS}")
    idx = torch.tensor(sorted(picked), dtype=torch.long)
    return Selection(indices=idx, weights=torch.full((len(picked),), 1.0 / len(picked)))
