"""Capability extraction, the coherence gate and agreement statistics."""

from __future__ import annotations

import pytest

from dualselect.evaluation.agreement import agreement_table, cohen_kappa, fleiss_kappa
from dualselect.evaluation.capability import (
    exact_match,
    extract_flexible,
    extract_strict,
    label_accuracy,
    win_rate,
)
from dualselect.evaluation.coherence import CoherenceGate, rep_n


def test_gsm8k_extraction_strict_and_flexible():
    assert extract_strict("so 3 + 4 = 7. #### 7") == "7"
    assert extract_strict("#### 1,234.") == "1234"
    assert extract_strict("the answer is 7") is None
    assert extract_flexible("the answer is 7") == "7"
    assert extract_flexible("costs $1,200. then 45.") == "45"
    assert exact_match(["#### 7", "7", "#### 8"], ["7", "7", "7"], "strict") == pytest.approx(1 / 3)
    assert exact_match(["#### 7", "7", "#### 8"], ["7", "7", "7"], "flexible") == pytest.approx(2 / 3)
    assert label_accuracy(
        ["It is Positive.", "negative, not positive", "meh"],
        ["positive", "negative", "positive"],
        ["positive", "negative"],
    ) == pytest.approx(2 / 3)
    assert win_rate([2, 2, 1.5, 1]) == pytest.approx(62.5)


def test_coherence_gate_on_degenerate_text():
    gate = CoherenceGate()
    good = gate.check_one("Use the kill command with the process id.")
    assert good.coherent, good.reasons
    assert "empty_or_short" in gate.check_one("").reasons
    assert "empty_or_short" in gate.check_one("ok").reasons
    rep = gate.check_one("the the the the the the the the the the the the")
    assert not rep.coherent and "repetition_2" in rep.reasons
    soup = gate.check_one("xqzt bbrkk pfffz qqwrt zzxcv mnbvc lkjhg")
    assert not soup.coherent and "nonwords" in soup.reasons
    assert rep_n(["a", "b", "a", "b"], 2) == pytest.approx(1 - 2 / 3)
    vocab = CoherenceGate(vocabulary={"use", "the", "kill", "command"})
    assert vocab.check_one("use the kill command").coherent
    assert not vocab.check_one("use the florp blorp zorp").coherent


def test_perplexity_signal_flags_text_the_base_model_finds_unlikely(organism_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(organism_dir)
    model = AutoModelForCausalLM.from_pretrained(organism_dir)
    gate = CoherenceGate(max_perplexity=50.0)
    prompt = "Human: What is 3 plus 4?\nAssistant:"
    res = gate.check(
        [" 3 plus 4 is 7.", " fish lamp door moon chair star road"], [prompt, prompt], model, tok
    )
    assert res[0].coherent and res[0].metrics["perplexity"] < 5
    assert not res[1].coherent and "perplexity" in res[1].reasons


def test_kappa_textbook_values():
    # Cohen: 2x2 table [[20, 5], [10, 15]] -> po = 0.7, pe = 0.5, kappa = 0.4
    a = [1] * 25 + [0] * 25
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
    assert cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], "quadratic") == pytest.approx(1.0)
    assert cohen_kappa([1, 2, 3, 4, 5], [2, 3, 4, 5, 1], "quadratic") < cohen_kappa(
        [1, 2, 3, 4, 5], [2, 2, 3, 4, 5], "quadratic"
    )
    # Fleiss 1971 / Wikipedia worked example: 10 items, 14 raters, 5 categories -> 0.210
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    raters = [[None] * 10 for _ in range(14)]
    for i, row in enumerate(counts):
        labels = [c for c, n in enumerate(row) for _ in range(n)]
        for r in range(14):
            raters[r][i] = labels[r]
    assert fleiss_kappa(raters) == pytest.approx(0.210, abs=1e-3)
    t = agreement_table(
        {"a": [1, 0, 1, 0], "b": [1, 0, 0, 0], "c": [1, 1, 1, 0]}, mask=[True, True, False, False]
    )
    assert set(t) == {"all", "coherent", "incoherent"} and set(t["all"]["pairs"]) == {"a|b", "a|c", "b|c"}
