"""Seed statistics shared by `dualselect eval` and `dualselect compare`."""

from __future__ import annotations

import numpy as np
import pytest

from dualselect.evaluation.uncertainty import (
    bootstrap_ci,
    diff_interval,
    format_stat,
    stratified_bootstrap_ci,
    summarise,
    summarise_runs,
    t_interval,
    t_quantile,
    ties_with_best,
)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():  # over prompts
    vals = [0.2, 0.5, 0.9, 0.4, 0.7]
    lo, hi = bootstrap_ci(vals)
    assert (lo, hi) == bootstrap_ci(vals)  # reproducible tables
    assert min(vals) <= lo < np.mean(vals) < hi <= max(vals)
    assert bootstrap_ci([0.3]) == (0.3, 0.3) and bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    # more seeds with the same spread -> a narrower interval
    lo10, hi10 = bootstrap_ci(vals * 10)
    assert hi10 - lo10 < hi - lo


@pytest.mark.parametrize("n", [2, 3, 5])
def test_seed_interval_covers_at_its_nominal_level(n):
    """Simulated coverage of the 95% interval over n seeds (normal seed noise, 4000 draws): the
    t interval keeps ~95%; the percentile bootstrap over seeds it replaced does not."""
    rng = np.random.default_rng(n)
    draws = rng.normal(0.6, 0.05, size=(4000, n))
    t_cov = np.mean([lo <= 0.6 <= hi for lo, hi in (t_interval(list(d)) for d in draws)])
    assert 0.93 <= t_cov <= 0.97, t_cov
    boot = np.mean([lo <= 0.6 <= hi for lo, hi in (bootstrap_ci(list(d), n_boot=400) for d in draws[:1000])])
    assert boot < 0.9, boot


def test_prompt_bootstrap_covers_a_refusal_rate():
    """One seed, 200 prompts of 0/1 refusals: the bootstrap over prompts covers p ~95% of the
    time (600 simulated benchmarks); stratified over two benchmarks it covers their mean."""
    rng = np.random.default_rng(0)
    p = 0.3
    cov = np.mean(
        [
            lo <= p <= hi
            for lo, hi in (bootstrap_ci(list(rng.random(200) < p), n_boot=1000, seed=k) for k in range(600))
        ]
    )
    assert 0.92 <= cov <= 0.975, cov
    cov2 = np.mean(
        [
            lo <= (0.3 + 0.8) / 2 <= hi
            for lo, hi in (
                stratified_bootstrap_ci(
                    [list(rng.random(150) < 0.3), list(rng.random(100) < 0.8)], n_boot=1000, seed=k
                )
                for k in range(400)
            )
        ]
    )
    assert 0.92 <= cov2 <= 0.98, cov2


def test_t_quantiles_and_difference_ties():
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.975, 1000) == pytest.approx(1.962, abs=1e-3)
    a = summarise([0.90, 0.91, 0.92])
    b = summarise([0.80, 0.81, 0.82])
    lo, hi = diff_interval(a, b)
    assert lo > 0  # clearly different
    # overlapping seed spreads but a consistent difference: a tie by overlap, not by the test
    c, d = summarise([0.5, 0.7, 0.9]), summarise([0.45, 0.65, 0.85])
    assert diff_interval(c, d)[0] < 0 < diff_interval(c, d)[1]
    best, ties = ties_with_best({"a": a, "b": b, "c": summarise([0.88, 0.9, 0.93])})
    assert best == "a" and ties == {"a": False, "b": False, "c": True}
    # a difference the interval-overlap rule calls a tie is resolved by the difference test
    x, y = summarise([0.80, 0.84, 0.88, 0.92, 0.96]), summarise([0.70, 0.74, 0.78, 0.82, 0.86])
    assert x["ci"][0] < y["ci"][1] and ties_with_best({"x": x, "y": y})[1]["y"] is False


def test_summarise_runs_skips_missing_and_non_numeric_values():
    runs = {"a": [{"x": 1.0, "tag": "s0"}, {"x": 3.0, "y": None}], "b": [{"x": 2.0}]}
    t = summarise_runs(runs)
    assert t["a"]["x"]["mean"] == 2.0 and t["a"]["x"]["n"] == 2 and t["a"]["x"]["min"] == 1.0
    assert "tag" not in t["a"] and "y" not in t["a"] and t["b"]["x"]["ci"] == [2.0, 2.0]
    assert summarise([0.5, 0.5])["ci"] == [0.5, 0.5]


def test_ties_are_overlap_with_the_best_interval():
    stats = {
        "best": {"mean": 0.9, "ci": [0.85, 0.95]},
        "close": {"mean": 0.8, "ci": [0.7, 0.86]},
        "far": {"mean": 0.5, "ci": [0.4, 0.6]},
    }
    best, ties = ties_with_best(stats)
    assert best == "best" and ties == {"best": False, "close": True, "far": False}
    assert ties_with_best({}) == (None, {})


@pytest.mark.parametrize(
    "stat, scale, text",
    [
        (None, 1, "-"),
        ({"mean": 0.5, "ci": [0.4, 0.6], "n": 5}, 100, "50.0 [40.0, 60.0]"),
        ({"mean": 0.5, "ci": [0.5, 0.5], "n": 5}, 100, "50.0"),
        ({"mean": 12.25, "ci": [12.25, 12.25], "n": 1}, 1, "12.2"),
    ],
)
def test_format_stat(stat, scale, text):
    assert format_stat(stat, scale) == text


def test_equal_methods_tie_at_the_nominal_rate():
    """Two methods with the same true mean, 3 seeds each: the difference test calls them tied
    ~95% of the time (2000 simulated comparisons); a real difference of 4 seed SDs is found."""
    rng = np.random.default_rng(7)
    ties = 0
    for _ in range(2000):
        a, b = summarise(list(rng.normal(0.5, 0.05, 3))), summarise(list(rng.normal(0.5, 0.05, 3)))
        ties += ties_with_best({"a": a, "b": b})[1][min(("a", a), ("b", b), key=lambda x: x[1]["mean"])[0]]
    assert 0.93 <= ties / 2000 <= 0.99, ties / 2000
    found = sum(
        not ties_with_best(
            {"a": summarise(list(rng.normal(0.7, 0.05, 3))), "b": summarise(list(rng.normal(0.5, 0.05, 3)))}
        )[1]["b"]
        for _ in range(200)
    )
    assert found / 200 > 0.8


# --- runs nested in groups (organism instances, base builds) ------------------------------------


def _expit(x):
    return 1 / (1 + np.exp(-x))


def test_group_t_interval_covers_at_the_organism_design():
    """3 organism instances x 3 training seeds (the organism comparison's design): the t interval
    over instance means covers the true mean at its nominal level, where the two-level
    percentile bootstrap it replaced covered 79-84%; a rate's interval never leaves [0, 1]."""
    from dualselect.evaluation.uncertainty import summarise_groups

    rng = np.random.default_rng(11)
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    hit = 0
    for _ in range(2000):
        inst = rng.normal(0, 0.06, 3)
        vals = [0.8 + inst[g] + rng.normal(0, 0.04) for g in groups]
        s = summarise_groups(vals, groups, bounds=(0.0, 1.0))
        hit += s["ci"][0] <= 0.8 <= s["ci"][1]
        assert 0.0 <= s["ci"][0] <= s["ci"][1] <= 1.0
    assert 0.93 <= hit / 2000 <= 0.97, hit / 2000
    near_one = summarise_groups([1.0, 0.98, 1.0, 0.9, 1.0, 0.97, 1.0, 1.0, 0.99], groups, bounds=(0.0, 1.0))
    assert near_one["ci"][1] == 1.0 and near_one["method"] == "t over group means"
    assert near_one["group_means"] == pytest.approx({"0": 0.99333, "1": 0.95667, "2": 0.99667}, abs=1e-4)


def test_paired_group_ties_at_the_nominal_rate():
    """Two methods with the same mean on 3 shared instances: tied ~95% of the time by the paired t
    over instance means (the same method as the intervals); a real gap is found."""
    from dualselect.evaluation.uncertainty import summarise_groups

    rng = np.random.default_rng(3)
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]

    def pair(delta):
        inst = rng.normal(0, 0.1, 3)  # shared by both methods: the pairing removes it
        a = summarise_groups([0.5 + inst[g] + rng.normal(0, 0.03) for g in groups], groups)
        b = summarise_groups([0.5 - delta + inst[g] + rng.normal(0, 0.03) for g in groups], groups)
        best, ties = ties_with_best({"a": a, "b": b})
        return ties["b" if best == "a" else "a"]

    assert 0.93 <= np.mean([pair(0.0) for _ in range(2000)]) <= 0.98
    assert np.mean([pair(0.12) for _ in range(300)]) < 0.2


def _crossed_coverage(n_groups, seeds, n_prompts, mu, sd_group, sd_seed, sd_prompt, reps, seed, **kw):
    """Share of simulated studies whose crossed_interval covers the true marginal rate, runs drawn
    from a logistic model: logit p = mu + group + seed-in-group + prompt (prompts shared)."""
    from dualselect.evaluation.uncertainty import crossed_interval

    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (400_000, 3)) @ np.array([sd_group, sd_seed, sd_prompt])
    target = _expit(mu + z).mean()
    groups = [g for g in range(n_groups) for _ in range(seeds)]
    hit = 0
    for _ in range(reps):
        u, w = rng.normal(0, sd_group, n_groups), rng.normal(0, sd_prompt, n_prompts)
        y = np.array(
            [rng.random(n_prompts) < _expit(mu + u[g] + rng.normal(0, sd_seed) + w) for g in groups], float
        )
        r = crossed_interval(y, groups, **kw)
        assert 0.0 <= r["ci"][0] <= r["mean"] <= r["ci"][1] <= 1.0 or r["scale"] == "logit"
        hit += r["ci"][0] <= target <= r["ci"][1]
    return hit / reps


@pytest.mark.parametrize(
    "mu, sd_group, sd_seed, sd_prompt, prompts",
    [(1.5, 0.5, 0.5, 1.5, 300), (2.5, 0.5, 0.5, 1.0, 159), (1.5, 0.1, 0.1, 2.0, 300)],
)
def test_crossed_interval_covers_at_the_study_design(mu, sd_group, sd_seed, sd_prompt, prompts):
    """The real-model study's design: 3 base builds x 5 seeds x one benchmark's prompts (HarmBench
    standard 159, StrongREJECT-sized 300). Coverage of the base -> seed -> prompt interval >= 93%
    for a nominal 95%, from harmful-refusal-like rates (~73-86%) to a prompt-dominated case."""
    cov = _crossed_coverage(3, 5, prompts, mu, sd_group, sd_seed, sd_prompt, reps=600, seed=1)
    assert cov >= 0.93, cov


def test_crossed_interval_needs_its_prompt_term():
    """When prompts differ much more than bases or seeds, treating the prompts as fixed (no prompt
    term) under-covers the benchmark-population rate: the prompt term is what keeps the level."""
    fixed = _crossed_coverage(3, 5, 300, 1.5, 0.1, 0.1, 2.0, reps=400, seed=2, prompts="fixed")
    assert fixed < 0.9, fixed


def test_crossed_interval_inputs():
    from dualselect.evaluation.uncertainty import crossed_interval

    y = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1]], float)
    r = crossed_interval(y, ["a", "a", "b", "b"])
    assert r["mean"] == pytest.approx(0.75) and r["n_groups"] == 2 and r["n_prompts"] == 4
    assert 0 < r["ci"][0] < 0.75 < r["ci"][1] <= 1 and "logit" in r["method"]
    all_one = crossed_interval(np.ones((4, 5)), [0, 0, 1, 1])
    assert all_one["ci"][1] == 1.0 and all_one["ci"][0] <= 1.0
    raw = crossed_interval(y, ["a", "a", "b", "b"], scale="raw")
    assert raw["ci"][0] >= 0 and raw["ci"][1] <= 1
    with pytest.raises(ValueError, match="2 groups"):
        crossed_interval(y, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="one group label per run"):
        crossed_interval(y, [0, 1])
    with pytest.raises(ValueError, match="scale"):
        crossed_interval(y, [0, 0, 1, 1], scale="probit")


def test_crossed_diff_interval_covers_a_method_difference():
    """Two methods on the same 3 bases and 300 prompts, 5 seeds each, method b 0.6 logits lower on
    every prompt (its own seeds): the interval of rate(a) - rate(b) covers the true difference at
    >= 93%, and a real difference is found (interval above 0) in most simulated studies."""
    from dualselect.evaluation.uncertainty import crossed_diff_interval

    rng = np.random.default_rng(4)
    mu, sd_g, sd_s, sd_p, gap = 1.0, 0.4, 0.4, 1.5, 0.6
    z = rng.normal(0, 1, (400_000, 3)) @ np.array([sd_g, sd_s, sd_p])
    true = _expit(mu + z).mean() - _expit(mu - gap + z).mean()
    groups = [g for g in range(3) for _ in range(5)]
    hit = found = 0
    for _ in range(500):
        u, w = rng.normal(0, sd_g, 3), rng.normal(0, sd_p, 300)

        def runs(shift, u=u, w=w):
            return np.array(
                [rng.random(300) < _expit(mu + shift + u[g] + rng.normal(0, sd_s) + w) for g in groups], float
            )

        r = crossed_diff_interval(runs(0.0), groups, runs(-gap), groups)
        hit += r["ci"][0] <= true <= r["ci"][1]
        found += r["ci"][0] > 0
    assert hit / 500 >= 0.93, hit / 500
    assert found / 500 > 0.5, found / 500
    with pytest.raises(ValueError, match="2 groups"):
        crossed_diff_interval(np.ones((2, 3)), [0, 0], np.ones((2, 3)), [0, 1])


def test_crossed_interval_strata_by_hand():
    """Strata (benchmarks of different sizes): the rate is the equal-weight mean of the stratum
    means, the prompt term the sum of weight^2 x variance / size; without strata, one stratum."""
    import math
    from statistics import NormalDist

    from dualselect.evaluation.uncertainty import crossed_diff_interval, crossed_interval, t_quantile

    rng = np.random.default_rng(5)
    y = (rng.random((6, 7)) < 0.6).astype(float)
    groups = [0, 0, 1, 1, 2, 2]
    strata = ["a"] * 5 + ["b"] * 2
    r = crossed_interval(y, groups, scale="raw", strata=strata)
    gm = np.array([0.5 * y[k : k + 2, :5].mean() + 0.5 * y[k : k + 2, 5:].mean() for k in (0, 2, 4)])
    item = np.mean([y[k : k + 2].mean(axis=0) for k in (0, 2, 4)], axis=0)
    c = 0.25 * item[:5].var(ddof=1) / 5 + 0.25 * item[5:].var(ddof=1) / 2
    half = math.hypot(
        t_quantile(0.975, 2) * math.sqrt(gm.var(ddof=1) / 3), NormalDist().inv_cdf(0.975) * math.sqrt(c)
    )
    assert r["mean"] == pytest.approx(gm.mean())
    assert r["ci"] == pytest.approx([max(0, gm.mean() - half), min(1, gm.mean() + half)])
    # no strata = one stratum of weight 1 (the unstratified interval, unchanged)
    assert crossed_interval(y, groups) == crossed_interval(y, groups, strata=["s"] * 7)
    # a difference of two benchmarks' rates (weights +1 / -1): raw scale only, clipped to [-1, 1]
    d = crossed_interval(y, groups, scale="raw", strata=strata, weights={"a": 1, "b": -1})
    assert d["mean"] == pytest.approx(
        np.mean([y[k : k + 2, :5].mean() - y[k : k + 2, 5:].mean() for k in (0, 2, 4)])
    )
    assert -1 <= d["ci"][0] <= d["mean"] <= d["ci"][1] <= 1
    with pytest.raises(ValueError, match="logit"):
        crossed_interval(y, groups, strata=strata, weights={"a": 1, "b": -1})
    with pytest.raises(ValueError, match="one label per prompt column"):
        crossed_interval(y, groups, strata=["a"])
    with pytest.raises(ValueError, match="one per stratum"):
        crossed_interval(y, groups, strata=strata, weights={"a": 1})
    dd = crossed_diff_interval(y, groups, y[::-1], groups, strata=strata)
    ya, yb = y, y[::-1]
    per = [
        0.5 * (ya[k : k + 2, :5].mean() - yb[k : k + 2, :5].mean())
        + 0.5 * (ya[k : k + 2, 5:].mean() - yb[k : k + 2, 5:].mean())
        for k in (0, 2, 4)
    ]
    assert dd["mean"] == pytest.approx(np.mean(per))


def test_stratified_crossed_interval_covers_at_the_study_design():
    """The study's harmful-refusal mean: 3 base builds x 5 seeds on HarmBench (159), StrongREJECT
    (313) and AdvBench (100) prompts, each benchmark its own mean, the base and seed effects shared
    by a run's three benchmarks. The stratified interval (equal-weight mean of the benchmark
    rates) covers the mean of the three marginal rates in >= 93% of simulated studies."""
    from dualselect.evaluation.uncertainty import crossed_interval

    rng = np.random.default_rng(11)
    sizes, mus = (159, 313, 100), (2.5, 1.5, 1.0)
    sd_g, sd_s, sd_p = 0.5, 0.5, 1.5
    z = rng.normal(0, 1, (400_000, 3)) @ np.array([sd_g, sd_s, sd_p])
    target = np.mean([_expit(mu + z).mean() for mu in mus])
    groups = [g for g in range(3) for _ in range(5)]
    strata = [k for k, n in enumerate(sizes) for _ in range(n)]
    hit = 0
    reps = 500
    for _ in range(reps):
        u = rng.normal(0, sd_g, 3)
        w = [rng.normal(0, sd_p, n) for n in sizes]
        rows = []
        for g in groups:
            e = u[g] + rng.normal(0, sd_s)  # one run: its base and seed effect on every benchmark
            rows.append(
                np.concatenate([rng.random(n) < _expit(mu + e + wk) for n, mu, wk in zip(sizes, mus, w)])
            )
        r = crossed_interval(np.array(rows, float), groups, strata=strata)
        hit += r["ci"][0] <= target <= r["ci"][1]
    assert hit / reps >= 0.93, hit / reps


def test_tost_paired_by_hand_and_its_level_at_the_margin():
    from dualselect.evaluation.uncertainty import tost_paired

    # diffs 0.1, 0.3, 0.2: mean 0.2, sd 0.1, t_{0.95, 2} = 2.919986: half-width 0.168585
    r = tost_paired([0.1, 0.3, 0.2], margin=1.0)
    assert r["mean"] == pytest.approx(0.2) and r["sd"] == pytest.approx(0.1)
    assert r["ci90"] == pytest.approx([0.2 - 0.168585, 0.2 + 0.168585], abs=1e-5)
    assert r["equivalent"] is True
    assert tost_paired([0.1, 0.3, 0.2], margin=0.3)["equivalent"] is False  # 0.369 >= 0.3
    assert tost_paired([0.5], margin=1.0)["equivalent"] is None
    # at a true difference equal to the margin, equivalence is declared at most alpha of the time
    rng = np.random.default_rng(0)
    hits = sum(tost_paired(list(rng.normal(1.0, 1.0, 3)), margin=1.0)["equivalent"] for _ in range(4000))
    assert hits / 4000 <= 0.05 + 0.01
    # and a truly equal pair with small noise is found equivalent most of the time
    hits = sum(tost_paired(list(rng.normal(0.0, 0.1, 3)), margin=1.0)["equivalent"] for _ in range(1000))
    assert hits / 1000 > 0.9
