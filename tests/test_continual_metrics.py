"""Continual benchmark report: intervals inside each metric's range."""

from __future__ import annotations

import pytest


def test_reclip_keeps_every_interval_inside_its_metrics_range():
    """A summary whose t intervals leave the possible range (3 seeds, one far off): recomputed from
    the per-seed metrics, rates stay in [0, 1], transfer/forgetting in [-1, 1], differences of
    rates in [-1, 1]; means unchanged; forgetting may still be negative."""
    from dualselect.continual.report import reclip

    per = {
        "ds": {
            "0": {"acc_final": 1.0, "forgetting": -0.1, "bwt": 0.1},
            "1": {"acc_final": 1.0, "forgetting": 0.9, "bwt": -0.9},
            "2": {"acc_final": 0.4, "forgetting": 0.0, "bwt": 0.0},
        },
        "replay": {
            "0": {"acc_final": 0.0, "forgetting": 0.0, "bwt": 0.0},
            "1": {"acc_final": 0.1, "forgetting": 0.0, "bwt": 0.0},
            "2": {"acc_final": 0.9, "forgetting": 0.0, "bwt": 0.0},
        },
    }
    summary = {
        "tasks": ["a"],
        "methods": {
            m: {
                "seeds": [0, 1, 2],
                "per_seed": p,
                "summary": {},
                "accuracy_by_stage": {"a": {"mean": [0.5], "ci": [[-0.2, 1.3]]}},
            }
            for m, p in per.items()
        },
        "paired_differences": {"ds - replay": {"acc_final": None, "bwt": None}},
    }
    out = reclip(summary)
    s = out["methods"]["ds"]["summary"]
    assert s["acc_final"]["ci"][1] == 1.0 and s["acc_final"]["mean"] == pytest.approx(0.8)
    assert -1.0 <= s["bwt"]["ci"][0] < 0 and s["forgetting"]["ci"][0] < 0  # signed measures keep their sign
    assert out["methods"]["ds"]["accuracy_by_stage"]["a"]["ci"] == [[0.0, 1.0]]
    d = out["paired_differences"]["ds - replay"]["acc_final"]
    assert d["mean"] == pytest.approx(0.8 - 1.0 / 3) and -1.0 <= d["ci"][0] <= d["ci"][1] <= 1.0
