"""Uncertainty: intervals whose coverage is checked by simulation (tests/test_uncertainty.py).

* Over seeds: Student-t interval of the mean (:func:`t_interval`); with 2-5 seeds a percentile
  bootstrap over seeds under-covers badly (about 50% / 75% / 85% at 2 / 3 / 5 seeds for a
  nominal 95% in tests/test_uncertainty.py's simulation), the t interval keeps its level for
  roughly normal seed-to-seed noise.
* Over prompts within one seed: percentile bootstrap of the mean over per-prompt values
  (:func:`bootstrap_ci`, e.g. 0/1 refusals or pairwise outcomes); right for the hundreds of prompts
  of a benchmark, so a single-seed run still reports an interval.
* Ties: a method ties with the best when the 95% interval of the *difference* of means contains
  0 (Welch t over seeds; paired bootstrap over prompts when there is one seed). Two equal methods
  then tie at the nominal rate (simulated in the tests); the old rule, overlap of too-narrow
  bootstrap intervals, found too few ties, and overlap of honest intervals finds too many.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def _t_cdf(x: float, df: int) -> float:
    """Student-t CDF via the regularised incomplete beta function (continued fraction)."""
    if x == 0:
        return 0.5
    z = df / (df + x * x)
    ib = _betainc(df / 2.0, 0.5, z)
    return 1 - 0.5 * ib if x > 0 else 0.5 * ib


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (Numerical Recipes' continued fraction)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1 - math.exp(lbt) * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > 1e-300 else 1e-300)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1 + aa / c if abs(1 + aa / c) > 1e-300 else 1e-300
            h *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return h


@lru_cache(maxsize=256)
def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0 < q < 1 or df < 1:
        raise ValueError("need 0 < q < 1 and df >= 1")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_interval(values: list[float], alpha: float = 0.05) -> tuple[float, float]:
    """Student-t interval of the mean (over seeds); the mean twice for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m
    half = t_quantile(1 - alpha / 2, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m - half, m + half


def bootstrap_ci(
    values: list[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded, so tables are reproducible). Use it
    over prompts (hundreds of values), not over a handful of seeds (use :func:`t_interval`)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def summarise(values: list[float]) -> dict:
    """``{"mean", "ci": [lo, hi], "min", "max", "n", "sd", "method"}`` of one metric over seeds
    (95% Student-t interval)."""
    lo, hi = t_interval(values)
    return {
        "mean": float(np.mean(values)),
        "ci": [lo, hi],
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "method": "t",
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


def diff_interval(a: dict, b: dict, alpha: float = 0.05) -> tuple[float, float] | None:
    """95% Welch-t interval of mean(a) - mean(b) from two :func:`summarise` entries (n >= 2
    each); None when either has fewer than 2 values."""
    if a.get("n", 0) < 2 or b.get("n", 0) < 2:
        return None
    va, vb = a["sd"] ** 2 / a["n"], b["sd"] ** 2 / b["n"]
    d = a["mean"] - b["mean"]
    if va + vb == 0:
        return d, d
    df = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    half = t_quantile(1 - alpha / 2, max(1, int(math.floor(df)))) * math.sqrt(va + vb)
    return d - half, d + half


def ties_with_best(stats: dict[str, dict]) -> tuple[str | None, dict[str, bool]]:
    """The method with the highest mean and, per other method, whether it ties with it: the 95%
    Welch interval of the difference contains 0 (entries with ``sd`` and n >= 2), else (older
    entries, single values) whether its interval reaches the best one's lower bound."""
    if not stats:
        return None, {}
    best = max(stats, key=lambda m: stats[m]["mean"])
    b = stats[best]
    out = {}
    for m, s in stats.items():
        if m == best:
            out[m] = False
            continue
        d = diff_interval(b, s) if "sd" in b and "sd" in s else None
        out[m] = d[0] <= 0 if d is not None else s["ci"][1] >= b["ci"][0]
    return best, out


def prompt_diff_interval(
    a: list[float], b: list[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Paired percentile-bootstrap interval over prompts of mean(a) - mean(b) (same prompts, one
    seed): the tie test for a single-seed run."""
    x = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return bootstrap_ci(list(x), n_boot, alpha, seed)


def format_stat(stat: dict | None, scale: float = 1.0) -> str:
    """``mean [lo, hi]`` of a :func:`summarise` entry times ``scale``; the mean alone for one
    value or a zero-width interval; ``-`` when missing."""
    if not stat:
        return "-"
    m, (lo, hi) = stat["mean"] * scale, stat["ci"]
    if stat["n"] < 2 or lo == hi:
        return f"{m:.1f}"
    return f"{m:.1f} [{lo * scale:.1f}, {hi * scale:.1f}]"


def stratified_bootstrap_ci(
    groups: list[list[float]], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval over prompts of the mean of per-group means (e.g. Safety
    Avg. = mean over benchmarks of the per-benchmark win rate): each group (benchmark) is
    resampled on its own, so every benchmark keeps its weight."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    stat = np.zeros(n_boot)
    for g in groups:
        stat += g[rng.integers(0, len(g), size=(n_boot, len(g)))].mean(axis=1) if len(g) > 1 else g[0]
    stat /= len(groups)
    return float(np.quantile(stat, alpha / 2)), float(np.quantile(stat, 1 - alpha / 2))
