"""Seed statistics shared by `dualselect eval` and `dualselect compare`."""

from __future__ import annotations

import numpy as np
import pytest

from dualselect.evaluation.uncertainty import (
    bootstrap_ci,
    format_stat,
    summarise,
    summarise_runs,
    ties_with_best,
)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    vals = [0.2, 0.5, 0.9, 0.4, 0.7]
    lo, hi = bootstrap_ci(vals)
    assert (lo, hi) == bootstrap_ci(vals)  # reproducible tables
    assert min(vals) <= lo < np.mean(vals) < hi <= max(vals)
    assert bootstrap_ci([0.3]) == (0.3, 0.3) and bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    # more seeds with the same spread -> a narrower interval
    lo10, hi10 = bootstrap_ci(vals * 10)
    assert hi10 - lo10 < hi - lo


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
