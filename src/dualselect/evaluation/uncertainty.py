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
from statistics import NormalDist

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


def tost_paired(diffs: list[float], margin: float, alpha: float = 0.05) -> dict:
    """Paired TOST equivalence test of mean(diffs) within +-margin (two one-sided t tests at level
    ``alpha``): equivalent when the ``1 - 2 alpha`` t interval of the mean lies inside
    (-margin, margin). All differences equal (no spread): the interval is the point. Fewer than
    two differences: no test (``equivalent`` None)."""
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return {"n": n, "mean": mean, "ci90": None, "equivalent": None, "margin": margin}
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile(1 - alpha, n - 1) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "ci90": [lo, hi],
        "margin": margin,
        "equivalent": bool(lo > -margin and hi < margin),
    }


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


# Metrics that are costs: their intervals are clipped at 0 only.
COST_KEYS = frozenset(
    {"optimizer_steps", "peak_rss_mb", "supervised_tokens", "train_seconds", "wall_seconds"}
)
# Metrics on a 0-100 scale: win rates in points.
POINTS_KEYS = ("safety_avg", "quality_avg")


def metric_bounds(key: str, values: list[float] | None = None) -> tuple[float, float] | None:
    """The range a metric's interval is clipped to: (0, 100) for a Safety Avg. or a quality win
    rate (win rates in points), (-1, 1) for discrimination (a difference of two rates), (0, 1)
    for the other rates, (0, inf) for costs (seconds, MB, steps, tokens) and KL divergences, None
    for any other metric whose values leave [0, 1]."""
    base = key.split(".")[0].removeprefix("val_")
    if base in COST_KEYS or base.startswith("kl_"):
        return 0.0, float("inf")
    if base.startswith(POINTS_KEYS):
        return 0.0, 100.0
    if base == "discrimination":
        return -1.0, 1.0
    if values is not None and any(not 0 <= v <= 1 for v in values):
        return None
    return 0.0, 1.0


def summarise(values: list[float], bounds: tuple[float, float] | None = None) -> dict:
    """``{"mean", "ci": [lo, hi], "min", "max", "n", "sd", "method"}`` of one metric over seeds
    (95% Student-t interval, clipped to ``bounds``: a rate's interval stays in [0, 1])."""
    lo, hi = clip_interval(t_interval(values), bounds)
    return {
        "mean": float(np.mean(values)),
        "ci": [lo, hi],
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "method": "t",
    }


def summarise_runs(runs: dict[str, list[dict]], bounds=None) -> dict[str, dict[str, dict]]:
    """Per method and numeric metric, :func:`summarise` over that method's seeds (None skipped);
    ``bounds(key, values)`` gives a metric's range (e.g. (0, 1) for rates) or None."""
    out: dict[str, dict[str, dict]] = {}
    for method, per_seed in runs.items():
        row = {}
        for key in sorted({k for r in per_seed for k in r}):
            vals = [r[key] for r in per_seed if isinstance(r.get(key), (int, float))]
            if vals:
                row[key] = summarise(vals, bounds(key, vals) if bounds else None)
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
    interval of the difference contains 0 -- a paired t over group means for entries of
    :func:`summarise_groups` (the same method as their intervals), a Welch t over seeds for
    entries with ``sd`` and n >= 2 -- else (older entries, single values) whether its interval
    reaches the best one's lower bound."""
    if not stats:
        return None, {}
    best = max(stats, key=lambda m: stats[m]["mean"])
    b = stats[best]
    out = {}
    for m, s in stats.items():
        if m == best:
            out[m] = False
            continue
        d = paired_group_diff_interval(b, s)
        if d is None and "sd" in b and "sd" in s:
            d = diff_interval(b, s)
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


# --- Several groups (organism instances, base builds) -------------------------------------------
#
# Runs are nested: group (an organism instance or a base build) -> training seed -> prompt. A claim
# must hold across groups, so the group is the unit of replication: the interval of a method's
# mean is a Student-t interval over its *group means* (df = groups - 1). With 3 groups a
# percentile bootstrap over groups covers only 79-84% for a nominal 95% (simulated in
# tests/test_uncertainty.py); the t interval over group means keeps its level because each group
# mean averages several seeds and is close to normal.

GROUP_T = "t over group means"
CROSSED_T = "t over group means (df = groups - 1) + normal prompt term, in quadrature"


def group_means(values: list[float], groups: list) -> dict[str, float]:
    """``{str(group): mean of that group's values}``, groups in first-seen order."""
    x = np.asarray(values, dtype=float)
    if len(x) != len(groups):
        raise ValueError(f"{len(x)} values for {len(groups)} group labels")
    labels = list(dict.fromkeys(groups))
    return {str(g): float(x[[h == g for h in groups]].mean()) for g in labels}


def clip_interval(ci: tuple[float, float], bounds: tuple[float, float] | None) -> tuple[float, float]:
    """``ci`` clipped to ``bounds`` (a rate's interval never leaves [0, 1]); unchanged for None.
    Clipping only removes impossible values, so it cannot lower coverage."""
    if bounds is None:
        return ci
    lo, hi = bounds
    return min(max(ci[0], lo), hi), min(max(ci[1], lo), hi)


def group_t_interval(values: list[float], groups: list, alpha: float = 0.05) -> tuple[float, float]:
    """Student-t interval of the grand mean over group means (df = groups - 1); with one group,
    the t interval over its values (the claim then holds for that group only)."""
    means = list(group_means(values, groups).values())
    if len(means) < 2:
        return t_interval(values, alpha)
    return t_interval(means, alpha)


def summarise_group_means(gm: dict[str, float], bounds: tuple[float, float] | None = None) -> dict:
    """:func:`summarise` of one metric from its group means: the mean over groups, the t interval
    over them (df = groups - 1, clipped to ``bounds``), and ``group_means`` for paired comparisons;
    one group gives its mean alone."""
    means = list(gm.values())
    out = summarise(means, bounds)
    out.update(group_means=dict(gm), method=GROUP_T if len(means) > 1 else "t")
    return out


def summarise_groups(values: list[float], groups: list, bounds: tuple[float, float] | None = None) -> dict:
    """:func:`summarise_group_means` of runs nested in groups (one group: the t interval over its
    runs), with the runs' ``min``, ``max`` and count ``n_runs``."""
    gm = group_means(values, groups)
    out = summarise_group_means(gm, bounds) if len(gm) > 1 else summarise(values, bounds)
    out.update(min=min(values), max=max(values), n_runs=len(values), group_means=gm)
    out.setdefault("method", "t")
    return out


def paired_group_diff_interval(a: dict, b: dict, alpha: float = 0.05) -> tuple[float, float] | None:
    """95% paired-t interval of mean(a) - mean(b) over the groups both have (the same organism
    instances or base builds); None with fewer than 2 shared groups."""
    ga, gb = a.get("group_means") or {}, b.get("group_means") or {}
    shared = [g for g in ga if g in gb]
    if len(shared) < 2:
        return None
    return t_interval([ga[g] - gb[g] for g in shared], alpha)


def _strata(n_cols: int, strata: list | None, weights: dict | None) -> tuple[list[np.ndarray], list[float]]:
    """The column indices and weight of each stratum (one stratum of weight 1 without strata)."""
    if strata is None:
        if weights is not None:
            raise ValueError("weights: only with strata")
        return [np.arange(n_cols)], [1.0]
    if len(strata) != n_cols:
        raise ValueError(f"strata: one label per prompt column, got {len(strata)} for {n_cols}")
    labels = list(dict.fromkeys(strata))
    cols = [np.array([i for i, s in enumerate(strata) if s == lab]) for lab in labels]
    if weights is None:
        return cols, [1.0 / len(labels)] * len(labels)
    missing = [lab for lab in labels if lab not in weights]
    if missing or set(weights) - set(labels):
        raise ValueError(f"weights: one per stratum {labels}, got {sorted(weights, key=str)}")
    return cols, [float(weights[lab]) for lab in labels]


def _prompt_term(item_means: np.ndarray, cols: list[np.ndarray], w: list[float]) -> float:
    """The prompt sampling variance of a weighted sum of stratum means: sum of w^2 var / n over
    strata, from the per-prompt means (a stratum of one prompt adds nothing)."""
    return float(sum(wi**2 * item_means[c].var(ddof=1) / len(c) for c, wi in zip(cols, w) if len(c) > 1))


def crossed_interval(
    y: np.ndarray,
    groups: list,
    alpha: float = 0.05,
    prompts: str = "random",
    scale: str = "logit",
    strata: list | None = None,
    weights: dict | None = None,
) -> dict:
    """Interval of a rate measured on the same prompts by runs nested in groups (base build ->
    training seed -> prompt). ``y``: runs x prompts (0/1 verdicts or scores); ``groups``: the
    group label of each run.

    The estimate is the mean over groups of the group's mean run rate. Its variance is the
    between-group variance of group means over the number of groups (which carries the seed and
    the prompt-by-group noise) plus, with ``prompts="random"`` (the prompts are a sample of the
    benchmark's population), the variance of the per-prompt means over the number of prompts:
    the prompts are shared by every run, so their own sampling noise does not appear between
    groups. The half-width adds the two terms in quadrature, the group term with Student's t
    at groups - 1 df, the prompt term with the normal quantile (``df`` reports the
    Welch-Satterthwaite df for reference).

    ``scale="logit"`` (the default, for 0/1 verdicts): the interval is computed on the logit of
    the group means (the prompt term by the delta method) and mapped back, so it stays inside
    [0, 1] and is not symmetric near a bound, where 3 group means are skewed and a raw-scale t
    interval under-covers more (tests/test_uncertainty.py simulates both). ``scale="raw"``: a t
    interval on the rate itself, clipped to [0, 1] when ``y`` is within [0, 1].

    ``strata`` (one label per prompt column, e.g. the benchmark): a run's rate is the weighted
    sum of its stratum means (``weights``: stratum -> weight, default equal weights summing to 1,
    e.g. the mean of three benchmarks' refusal rates; ``{"unsafe": 1, "safe": -1}``, a
    difference of two benchmarks' rates, needs ``scale="raw"``), and the prompt term is the sum
    over strata of weight^2 x the variance of its per-prompt means / its prompt count (each
    benchmark's prompts are sampled on their own). Without strata: one stratum of weight 1.

    Returns ``{"mean", "ci", "se", "df", "n_groups", "n_runs", "n_prompts", "method"}``."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[0] != len(groups):
        raise ValueError(f"y must be runs x prompts with one group label per run, got {y.shape}")
    if prompts not in ("random", "fixed"):
        raise ValueError(f"prompts: 'random' or 'fixed', not {prompts!r}")
    if scale not in ("logit", "raw"):
        raise ValueError(f"scale: 'logit' or 'raw', not {scale!r}")
    labels = list(dict.fromkeys(groups))
    in_group = [np.array([g == lab for g in groups]) for lab in labels]
    cols, w = _strata(y.shape[1], strata, weights)
    # each group's mean run rate (equal runs/prompts): the weighted sum of its stratum means
    gm = np.array([sum(wi * y[k][:, c].mean() for c, wi in zip(cols, w)) for k in in_group])
    n_groups, n_prompts = len(gm), y.shape[1]
    if n_groups < 2:
        raise ValueError("crossed_interval needs runs from at least 2 groups")
    m = float(gm.mean())
    # a rate in [0, 1]: values in [0, 1] and a convex combination of the strata
    unit = bool(y.min() >= 0 and y.max() <= 1 and min(w) >= 0 and abs(sum(w) - 1) < 1e-9)
    if scale == "logit" and not unit:
        raise ValueError("scale='logit' needs values in [0, 1] (and strata weights >= 0 summing to 1)")
    if scale == "logit":
        # half a verdict of one group's runs keeps a group mean of 0 or 1 finite
        eps = 0.5 / max(1, min(int(k.sum()) for k in in_group) * n_prompts)
        g = np.clip(gm, eps, 1 - eps)
        group_vals = np.log(g / (1 - g))
        centre = float(group_vals.mean())
        mm = min(max(m, eps), 1 - eps)
        deriv = 1.0 / (mm * (1 - mm))  # d logit(p) / dp at the estimate (delta method)
    else:
        centre, group_vals, deriv = m, gm, 1.0
    a = group_vals.var(ddof=1) / n_groups
    c = 0.0
    if prompts == "random" and n_prompts > 1:
        # per-prompt means, each group weighted equally (as in the estimate)
        item = np.mean([y[k].mean(axis=0) for k in in_group], axis=0)
        c = _prompt_term(item, cols, w) * deriv**2
    se = math.sqrt(a + c)
    # Each term with its own quantile, added in quadrature: the group term, estimated from
    # n_groups - 1 df, with Student's t; the prompt term, from hundreds of prompts, with the normal.
    # (One Welch-Satterthwaite df covered 92-93% at 3 groups x 5 seeds in simulation; this, 95-96%.)
    half = math.hypot(
        t_quantile(1 - alpha / 2, n_groups - 1) * math.sqrt(a),
        NormalDist().inv_cdf(1 - alpha / 2) * math.sqrt(c),
    )
    df = (
        (a + c) ** 2 / (a**2 / (n_groups - 1) + (c**2 / (n_prompts - 1) if c else 0.0))
        if a + c
        else n_groups - 1.0
    )
    lo, hi = centre - half, centre + half
    if scale == "logit":
        # mapped back; a group mean of exactly 0 or 1 was moved by eps, so keep the estimate inside
        lo, hi = min(1 / (1 + math.exp(-lo)), m), max(1 / (1 + math.exp(-hi)), m)
    if unit:
        bounds: tuple[float, float] | None = (0.0, 1.0)
    elif y.min() >= 0 and y.max() <= 1:  # a weighted sum of rates: its own range
        bounds = (sum(wi for wi in w if wi < 0), sum(wi for wi in w if wi > 0))
    else:
        bounds = None
    lo, hi = clip_interval((lo, hi), bounds)
    return {
        "mean": m,
        "ci": [lo, hi],
        "se": se,
        "df": float(df),
        "n_groups": n_groups,
        "n_runs": int(y.shape[0]),
        "n_prompts": int(n_prompts),
        "scale": scale,
        "method": (CROSSED_T if prompts == "random" else GROUP_T)
        + (", logit scale" if scale == "logit" else ""),
    }


def crossed_diff_interval(
    ya: np.ndarray,
    groups_a: list,
    yb: np.ndarray,
    groups_b: list,
    alpha: float = 0.05,
    strata: list | None = None,
    weights: dict | None = None,
) -> dict:
    """Interval of rate(a) - rate(b) for two methods run in the same groups (base builds) on the
    same prompts (columns in the same order), each with its own training seeds.

    Per shared group, the difference of the two methods' mean run rates; the half-width adds, in
    quadrature, Student's t (df = groups - 1) times the standard error of the mean group
    difference and the normal quantile times the standard error from the per-prompt differences
    (the prompts are shared, so their own noise does not show between groups). Raw scale,
    clipped to [-1, 1] (to +-the sum of the absolute weights with ``strata``, which work as in
    :func:`crossed_interval`). Returns ``{"mean", "ci", "n_groups", "n_prompts", "method"}``."""
    ya, yb = np.asarray(ya, dtype=float), np.asarray(yb, dtype=float)
    if ya.ndim != 2 or yb.ndim != 2 or ya.shape[1] != yb.shape[1]:
        raise ValueError(
            f"ya and yb must be runs x prompts on the same prompts, got {ya.shape} and {yb.shape}"
        )
    if ya.shape[0] != len(groups_a) or yb.shape[0] != len(groups_b):
        raise ValueError("one group label per run is needed for both methods")
    shared = [g for g in dict.fromkeys(groups_a) if g in set(groups_b)]
    if len(shared) < 2:
        raise ValueError("crossed_diff_interval needs at least 2 groups run by both methods")
    rows_a = [np.array([h == g for h in groups_a]) for g in shared]
    rows_b = [np.array([h == g for h in groups_b]) for g in shared]
    cols, w = _strata(ya.shape[1], strata, weights)
    d = np.array(
        [
            sum(wi * (ya[ka][:, c].mean() - yb[kb][:, c].mean()) for c, wi in zip(cols, w))
            for ka, kb in zip(rows_a, rows_b)
        ]
    )
    item = np.mean([ya[ka].mean(axis=0) - yb[kb].mean(axis=0) for ka, kb in zip(rows_a, rows_b)], axis=0)
    a = d.var(ddof=1) / len(d)
    c = _prompt_term(item, cols, w)
    half = math.hypot(
        t_quantile(1 - alpha / 2, len(d) - 1) * math.sqrt(a),
        NormalDist().inv_cdf(1 - alpha / 2) * math.sqrt(c),
    )
    m = float(d.mean())
    bound = (
        float(sum(abs(wi) for wi in w))
        if all(0 <= v <= 1 for v in (ya.min(), ya.max(), yb.min(), yb.max()))
        else None
    )
    lo, hi = clip_interval((m - half, m + half), (-bound, bound) if bound is not None else None)
    return {"mean": m, "ci": [lo, hi], "n_groups": len(d), "n_prompts": int(len(item)), "method": CROSSED_T}
