"""Agreement between judges: Cohen's kappa (unweighted / quadratic), Fleiss' kappa."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np


def cohen_kappa(a: Sequence, b: Sequence, weights: str | None = None) -> float:
    """Cohen's kappa of two raters; ``weights="quadratic"`` for ordinal scales (e.g. 1-5).
    Returns 1.0 when both raters are constant and agree, 0.0 when expected agreement is total."""
    if len(a) != len(b):
        raise ValueError("raters must label the same items")
    cats = sorted(set(a) | set(b))
    k = len(cats)
    if k == 1:
        return 1.0
    idx = {c: i for i, c in enumerate(cats)}
    obs = np.zeros((k, k))
    for x, y in zip(a, b):
        obs[idx[x], idx[y]] += 1
    obs /= obs.sum()
    exp = np.outer(obs.sum(1), obs.sum(0))
    if weights is None:
        w = 1 - np.eye(k)
    elif weights == "quadratic":
        vals = np.array(cats, dtype=float)
        w = (vals[:, None] - vals[None, :]) ** 2
    else:
        raise ValueError(f"weights={weights!r}: expected None or 'quadratic'")
    denom = (w * exp).sum()
    return 1.0 if denom == 0 else float(1 - (w * obs).sum() / denom)


def fleiss_kappa(labels: Sequence[Sequence]) -> float:
    """Fleiss' kappa. ``labels[j][i]`` = rater j's label of item i (every rater labels every item)."""
    labels = [list(x) for x in labels]
    n_raters, n_items = len(labels), len(labels[0])
    cats = sorted({c for r in labels for c in r})
    counts = np.zeros((n_items, len(cats)))
    for r in labels:
        for i, c in enumerate(r):
            counts[i, cats.index(c)] += 1
    p_j = counts.sum(0) / (n_items * n_raters)
    p_i = ((counts**2).sum(1) - n_raters) / (n_raters * (n_raters - 1))
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    return 1.0 if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def percent_agreement(a: Sequence, b: Sequence) -> float:
    """Share of items both raters label the same (shown beside kappa: kappa is 0 when one rater
    is constant, however often the two agree)."""
    if len(a) != len(b):
        raise ValueError("raters must label the same items")
    return sum(x == y for x, y in zip(a, b)) / max(1, len(a))


def agreement_table(
    labels_by_judge: dict[str, Sequence], mask: Sequence[bool] | None = None, ordinal: set[str] | None = None
) -> dict:
    """Pairwise Cohen's kappa with percent agreement, and Fleiss' kappa; with a coherence
    ``mask`` also on the coherent and incoherent subsets separately. Judges in ``ordinal`` use
    quadratic weights pairwise. A label may be None (the judge failed on that item): each pair
    is compared on the items both labelled (``n`` per pair), Fleiss' kappa on the items every
    binary judge labelled; a judge is never dropped for some failures."""
    ordinal = ordinal or set()

    def table(sel: list[int]) -> dict:
        sub = {j: [v[i] for i in sel] for j, v in labels_by_judge.items()}
        pairs, pct, npair = {}, {}, {}
        for a, b in combinations(sorted(sub), 2):
            both = [(x, y) for x, y in zip(sub[a], sub[b]) if x is not None and y is not None]
            key = f"{a}|{b}"
            npair[key] = len(both)
            if len(both) < 2:
                continue
            xa, xb = [x for x, _ in both], [y for _, y in both]
            pairs[key] = cohen_kappa(xa, xb, "quadratic" if a in ordinal and b in ordinal else None)
            pct[key] = percent_agreement(xa, xb)
        binary = [j for j in sorted(sub) if j not in ordinal]
        full = [i for i in range(len(sel)) if all(sub[j][i] is not None for j in binary)]
        fleiss = (
            fleiss_kappa([[sub[j][i] for i in full] for j in binary])
            if len(binary) >= 2 and len(full) >= 2
            else None
        )
        return {"n": len(sel), "pairs": pairs, "percent_agreement": pct, "n_pairs": npair, "fleiss": fleiss}

    n = len(next(iter(labels_by_judge.values())))
    out = {"all": table(list(range(n)))}
    if mask is not None:
        out["coherent"] = table([i for i in range(n) if mask[i]])
        out["incoherent"] = table([i for i in range(n) if not mask[i]])
    return out
