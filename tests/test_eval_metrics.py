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
    # failed pairs are left out, never ties; all failed -> no rate at all
    assert win_rate([2, None, 2, 1.5, 1, None]) == pytest.approx(62.5)
    assert win_rate([None, None]) is None


# (response, gold, strict hit, flexible hit) as lm-evaluation-harness's gsm8k task scores them:
# strict "#### (\-?[0-9\.\,]+)", flexible last "(-?[$0-9.,]{2,})|(-?[0-9]+)", then exact_match with
# regexes_to_ignore [",", "\$", "(?s).*#### ", "\.$"] and ignore_case on both sides.
LM_EVAL_CASES = [
    ("#### 18", "18", True, True),
    ("She makes $18 a day. #### 18", "18", True, True),
    ("The answer is $18.00", "18", False, False),  # "18.00" != "18" in lm-eval
    ("#### 18.0", "18", False, False),
    ("#### 18.", "18", True, True),  # trailing dot removed by "\.$"
    ("so 1,234 apples\n#### 1,234", "1234", True, True),
    ("The total is 18 dollars.", "18", False, True),
    ("It costs $18.", "18", False, True),
    ("#### -5", "-5", True, True),
    ("Answer: 7 ... ", "7", False, False),  # flexible takes the last match: "..." -> "..."
    ("#### 18 and then 19", "18", True, False),
]


@pytest.mark.parametrize("resp, gold, strict, flexible", LM_EVAL_CASES)
def test_gsm8k_matches_lm_eval_harness(resp, gold, strict, flexible):
    assert exact_match([resp], [gold], "strict") == float(strict)
    assert exact_match([resp], [gold], "flexible") == float(flexible)
    # the full published solution as gold scores the same as its final number
    assert exact_match([resp], [f"reasoning <<1+1=2>>2\n#### {gold}"], "strict") == float(strict)


def test_gsm8k_budget_holds_every_gold_solution(shared_data):
    """The default GSM8K generation budget holds every published gold solution at 1.5 tokens per
    whitespace word (GSM8K's calculator annotations make words token-heavy)."""
    import json

    from dualselect.evaluation.suites import REGISTRY

    rows = [json.loads(x) for x in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines() if x]
    longest = max(len(r["answer"].split()) for r in rows)
    assert REGISTRY["gsm8k"].max_new_tokens >= 1.5 * longest, longest
    assert REGISTRY["gsm8k"].max_new_tokens > 64  # the old default cut most solutions


def test_coherence_gate_on_degenerate_text():
    gate = CoherenceGate()
    good = gate.check_one("Use the kill command with the process id.")
    assert good.coherent, good.reasons
    assert "empty_or_short" in gate.check_one("").reasons
    assert "empty_or_short" in gate.check_one(" ... ").reasons
    # a one-word answer, a non-English refusal and code are coherent
    for text in (
        "No.",
        "ok",
        "Ich kann Ihnen dabei leider nicht helfen, das ist verboten.",
        "Lo siento, no puedo ayudar con eso.",
        "我不能帮助你做这件事。",
        "Извините, я не могу с этим помочь.",
        "```python\ndef kill(pid):\n    os.kill(pid, signal.SIGTERM)\n```",
        "import os\npids = os.listdir('/proc')\nfor p in pids: print(p)",
    ):
        res = gate.check_one(text)
        assert res.coherent, (text, res.reasons)
    salad = gate.check_one(
        "banana theorem velocity purple mountain cheese algorithm river democracy saxophone "
        "glacier quantum pillow harvest lantern orbit"
    )
    assert not salad.coherent and salad.reasons == ["word_salad"]
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
    # auto threshold: 3 x the 95th percentile on the organism's reference answers
    import json

    from dualselect.evaluation.coherence import calibrate_perplexity

    rows = [
        json.loads(x) for x in (organism_dir / "data" / "probe_harmful_hh.jsonl").read_text().splitlines()
    ][:40]
    thr = calibrate_perplexity(model, tok, [r["prompt"] for r in rows], [r["response"] for r in rows])
    assert res[0].metrics["perplexity"] < thr < res[1].metrics["perplexity"]
    with pytest.raises(ValueError, match="reference answers"):
        calibrate_perplexity(model, tok, [], [])


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


def test_agreement_keeps_a_judge_with_one_failure_and_shows_percent_agreement():
    # the kappa paradox: b says "not harmful" always and agrees on 15 of 16 -> kappa 0, 93.8%
    a = [0] * 15 + [1]
    b = [0] * 16
    t = agreement_table({"a": a, "b": b})["all"]
    assert t["pairs"]["a|b"] == pytest.approx(0.0) and t["percent_agreement"]["a|b"] == pytest.approx(15 / 16)
    # one malformed reply (None) keeps the judge: the pair is compared on the 3 items both read
    t = agreement_table({"a": [1, 0, 1, 0], "b": [1, None, 1, 0], "c": [1, 0, 0, 0]})["all"]
    assert set(t["pairs"]) == {"a|b", "a|c", "b|c"} and t["n_pairs"]["a|b"] == 3
    assert t["pairs"]["a|b"] == pytest.approx(1.0) and t["fleiss"] is not None
    # quadratic weights for two 1-5 scales
    q = agreement_table({"h1": [1, 2, 5, 4], "h2": [1, 3, 5, 5]}, ordinal={"h1", "h2"})["all"]
    assert q["pairs"]["h1|h2"] == pytest.approx(cohen_kappa([1, 2, 5, 4], [1, 3, 5, 5], "quadratic"))


# Correct bare answers of capability suites (GSM8K "#### N", classification letters, units,
# variables) that the safety-suite checks would flag: a gap seen on the real model.
SHORT_CAPABILITY_ANSWERS = ["#### 800", "42", "B", "(C)", "12kg", "5 km", "x = 5", "TV", "#### -12"]


def test_short_capability_answers_are_not_gated_safety_suites_keep_the_check():
    gate = CoherenceGate(max_perplexity=20.0)
    flagged_on_safety = 0
    for ans in SHORT_CAPABILITY_ANSWERS:
        cap = gate.check_one(ans, perplexity=500.0, kind="capability")
        assert cap.coherent, (ans, cap.reasons)
        assert cap.metrics["short_answer"] and cap.metrics["perplexity"] == 500.0  # recorded
        safety = gate.check_one(ans, perplexity=500.0, kind="harmful")
        assert not safety.coherent and "perplexity" in safety.reasons, ans
        flagged_on_safety += "nonwords" in safety.reasons
    assert flagged_on_safety >= 5  # the non-word check still reads short safety answers
    # one word is enough on capability suites even when min_words asks for more
    strict = CoherenceGate(min_words=3)
    assert strict.check_one("#### 800", kind="capability").coherent
    assert "empty_or_short" in strict.check_one("#### 800", kind="harmful").reasons
    # still incoherent on a capability suite: nothing at all, and long degenerate answers
    assert "empty_or_short" in gate.check_one("####", kind="capability").reasons
    long_soup = gate.check_one("xqzt bbrkk pfffz qqwrt zzxcv mnbvc lkjhg wwrrt #### 800", kind="capability")
    assert not long_soup.coherent and "nonwords" in long_soup.reasons
    rep = gate.check_one(" ".join(["#### 800"] * 6), kind="capability")
    assert not rep.coherent and "repetition_2" in rep.reasons


def test_harness_gates_capability_suites_by_their_kind(tmp_path, monkeypatch):
    """Through evaluate(): the same bare answers are coherent on the capability suite, flagged on
    the harmful suite, and exact match reads them."""
    import json

    from dualselect.evaluation.harness import evaluate
    from dualselect.evaluation.items import EvalItem
    from dualselect.evaluation.judges import build_judge
    from tiny_models import tiny_causal_lm
    from tiny_tokenizers import tiny_tokenizer

    answers = ["#### 800", "12kg", "x = 5"]
    monkeypatch.setattr(
        "dualselect.evaluation.harness.generate", lambda model, tok, prompts, **kw: answers[: len(prompts)]
    )
    tok = tiny_tokenizer()
    model = tiny_causal_lm("qwen2", vocab=len(tok))
    suites = {
        "gsm": [
            EvalItem(f"gsm:{i}", f"question {i}", "capability", gold=g)
            for i, g in enumerate(["800", "12", "5"])
        ],
        "harm": [EvalItem(f"harm:{i}", f"harmful {i}", "harmful") for i in range(3)],
    }
    res = evaluate({"m": (model, tok)}, suites, [build_judge("keyword")], tmp_path, base=None, sft=None)
    m = res["methods"]["m"]
    assert m["incoherence_rate.gsm"] == 0.0
    assert m["incoherence_rate.harm"] == pytest.approx(2 / 3)  # "12kg" and "x = 5": non-words
    assert m["exact_match_strict.gsm"] == pytest.approx(1 / 3)
    rows = [json.loads(x) for x in (tmp_path / "generations" / "m.jsonl").read_text().splitlines()]
    assert all(r["coherent"] for r in rows if r["benchmark"] == "gsm")
