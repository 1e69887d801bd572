"""Uncertainty over seeds: mean, percentile-bootstrap interval, min/max, and ties with the best."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(
    values: list[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded, so tables are reproducible)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def summarise(values: list[float]) -> dict:
    """``{"mean", "ci": [lo, hi], "min", "max", "n"}`` of one metric over seeds."""
    lo, hi = bootstrap_ci(values)
    return {
        "mean": float(np.mean(values)),
        "ci": [lo, hi],
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise_runs(runs: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """Per method and numeric metric, :func:`summarise` over that method's seeds (None skipped)."""
    out: dict[str, dict[str, dict]] = {}
    for method, per_seed in runs.items():
        row = {}
        for key in sorted({k for r in per_seed for k in r}):
            vals = [r[key] for r in per_seed if isinstance(r.get(key), (int, float))]
            if vals:
                row[key] = summarise(vals)
        out[method] = row
    return out


def ties_with_best(stats: dict[str, dict]) -> tuple[str | None, dict[str, bool]]:
    """The method with the highest mean and, per other method, whether its interval reaches the
    best one's lower bound (a difference inside the seed spread: a tie)."""
    if not stats:
        return None, {}
    best = max(stats, key=lambda m: stats[m]["mean"])
    lo = stats[best]["ci"][0]
    return best, {m: m != best and s["ci"][1] >= lo for m, s in stats.items()}


def format_stat(stat: dict | None, scale: float = 1.0) -> str:
    """``mean [lo, hi]`` of a :func:`summarise` entry times ``scale``; the mean alone for one
    value or a zero-width interval; ``-`` when missing."""
    if not stat:
        return "-"
    m, (lo, hi) = stat["mean"] * scale, stat["ci"]
    if stat["n"] < 2 or lo == hi:
        return f"{m:.1f}"
    return f"{m:.1f} [{lo * scale:.1f}, {hi * scale:.1f}]"
