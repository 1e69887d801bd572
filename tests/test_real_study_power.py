"""scripts/real_study_power.py: the variance components read from the committed comparisons, and
the simulated test's error rates (size near 5% at no difference, power rising with it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import real_study_power as power  # noqa: E402


def test_components_come_from_the_committed_comparisons():
    c = power.components("dualselect", "kl", "over_refusal_rate")
    # seed sds 15.2 and 3.8 points (v6, v7) pooled; KL's mean 6.7 and 7.5
    assert c["sd_a"] == pytest.approx(np.sqrt((0.152**2 + 0.038**2) / 2), abs=2e-3)
    assert c["mean_b"] == pytest.approx((0.0667 + 0.075) / 2, abs=1e-3)
    assert 0 <= c["tau"] < 0.05


def test_the_simulated_test_holds_its_size_and_gains_power_with_the_difference():
    comp = {"sd_a": 0.05, "sd_b": 0.05, "mean_b": 0.3, "tau": 0.02}

    def pw(delta: float) -> float:
        return power.simulate_power(comp, delta, 3, 5, 200, 1.5, 300, np.random.default_rng(1))

    size = pw(0.0)
    assert size <= 0.09  # nominal 5% (t with 2 df over bases; the prompt term in quadrature)
    assert pw(0.05) < pw(0.15) and pw(0.3) >= 0.8
    found = power.mdd(comp, 3, 5, 200, 1.5, 300, seed=1)["mdd_points"]
    assert found is not None and pw(found / 100) >= 0.8 and pw((found - 1) / 100) < 0.8
