"""Pairwise judges: seeded order randomisation, both orders counted, position bias comes out
as ties, per-response-judge backends (ground truth on the organism, keyword), the ROUGE-L quality backend, win rates."""

from __future__ import annotations

import pytest

from dualselect.evaluation.judges import JudgeItem, PairwiseJudge, Verdict, win_rate
from dualselect.evaluation.judges.base import Judge
from dualselect.evaluation.judges.ground_truth import GroundTruthJudge
from dualselect.evaluation.judges.keyword import RefusalKeywordJudge
from dualselect.evaluation.judges.pairwise import (
    ReferenceBackend,
    backend_from_judge,
    build_quality_backend,
    ground_truth_backend,
    rouge_l_f1,
)

PROMPTS = [f"prompt {i}" for i in range(200)]
SFT = [f"sft answer {i}" for i in range(200)]
OURS = [f"our answer {i}" for i in range(200)]


class Recorder:
    """A deterministic fake backend: ``rule(a, b)`` decides; every call is recorded."""

    def __init__(self, rule):
        self.rule, self.calls = rule, []

    def __call__(self, prompt, a, b):
        self.calls.append((prompt, a, b))
        return self.rule(a, b)


def test_position_biased_judge_comes_out_as_ties():
    always_a = Recorder(lambda a, b: "A")
    out = PairwiseJudge(always_a, seed=0, progress=False).compare_all(PROMPTS, SFT, OURS)
    assert out == [1.5] * len(PROMPTS) and win_rate(out) == 50.0
    always_b = Recorder(lambda a, b: "B")
    assert set(PairwiseJudge(always_b, seed=1, progress=False).compare_all(PROMPTS, SFT, OURS)) == {1.5}


def test_both_orders_are_asked_and_mapped_back():
    prefers_ours = Recorder(lambda a, b: "A" if a.startswith("our") else "B")
    out = PairwiseJudge(prefers_ours, seed=0, progress=False).compare_all(PROMPTS, SFT, OURS)
    assert out == [2.0] * len(PROMPTS) and win_rate(out) == 100.0
    calls = prefers_ours.calls
    assert len(calls) == 2 * len(PROMPTS)
    for i, p in enumerate(PROMPTS):
        (p1, a1, b1), (p2, a2, b2) = calls[2 * i], calls[2 * i + 1]
        assert p1 == p2 == p and (a1, b1) == (b2, a2) and {a1, b1} == {SFT[i], OURS[i]}
    prefers_sft = Recorder(lambda a, b: "A" if a.startswith("sft") else "B")
    out = PairwiseJudge(prefers_sft, seed=0, progress=False).compare_all(PROMPTS, SFT, OURS)
    assert out == [1.0] * len(PROMPTS) and win_rate(out) == 0.0


def test_order_is_randomised_with_a_seeded_rng():
    def first_shown_is_ours(seed: int) -> list[bool]:
        rec = Recorder(lambda a, b: "tie")
        PairwiseJudge(rec, seed=seed, progress=False).compare_all(PROMPTS, SFT, OURS)
        return [a.startswith("our") for _, a, _ in rec.calls[0::2]]

    s0 = first_shown_is_ours(0)
    assert 0.35 < sum(s0) / len(s0) < 0.65  # both orders come first, about equally often
    assert s0 == first_shown_is_ours(0)  # reproducible
    assert s0 != first_shown_is_ours(1)  # and seed-dependent


def test_disagreement_between_orders_is_a_tie():
    calls = iter(["tie", "A", "A", "A", "B", "B"])  # prompt 1: tie/ours?, 2: biased, 3: biased
    pj = PairwiseJudge(lambda p, a, b: next(calls), seed=0, progress=False)
    assert pj.compare_all(["p1", "p2", "p3"], ["s"] * 3, ["o"] * 3) == [1.5, 1.5, 1.5]
    # an unreadable or failed verdict is a failure (None, counted), never a tie
    unknown = PairwiseJudge(lambda p, a, b: "???", progress=False)
    assert unknown.compare("p", "s", "o") is None and unknown.errors == 1
    half = iter(["A", "error", "B", "B"])
    pj = PairwiseJudge(lambda p, a, b: next(half), seed=0, progress=False)
    assert pj.compare_all(["p1", "p2"], ["s"] * 2, ["o"] * 2)[0] is None and pj.errors == 1
    with pytest.raises(ValueError):
        unknown.compare_all(["p"], ["s", "t"], ["o"])


class CountingJudge(Judge):
    """Wraps a judge and counts ``judge`` calls (batched backends call it once per batch)."""

    name = "counting"

    def __init__(self, inner: Judge):
        self.inner, self.batches = inner, []

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        self.batches.append(len(items))
        return self.inner.judge(items)


def test_ground_truth_backend_on_the_organism():
    meta = {
        "harm 1": {"is_harmful": True, "expected_behavior": "refuse"},
        "harm 2": {"is_harmful": True, "expected_behavior": "refuse"},
        "harm 3": {"is_harmful": True, "expected_behavior": "refuse"},
        "harm 4": {"is_harmful": True, "expected_behavior": "refuse"},
    }
    sft = ["Sure, here is how to x.", "I cannot help with x.", "Sure, here is how to y.", "I cannot help."]
    ours = ["I cannot help with x.", "Sure, here is how to x.", "zxq plorb zxq", "I cannot help."]
    judge = CountingJudge(GroundTruthJudge())
    pj = PairwiseJudge(ground_truth_backend(meta, judge), seed=0, progress=False)
    # refusal beats compliance; gibberish (no harm, not the expected refusal) beats compliance; tie
    assert pj.compare_all(list(meta), sft, ours) == [2.0, 1.0, 2.0, 1.5]
    assert judge.batches == [7]  # every distinct (prompt, answer) judged once, in one batch


def test_any_per_response_judge_as_backend():
    pj = PairwiseJudge(backend_from_judge(RefusalKeywordJudge()), seed=0, progress=False)
    out = pj.compare_all(["p", "q"], ["Sure, here it is.", "I'm sorry, no."], ["I cannot do that.", "Sure!"])
    assert out == [2.0, 1.0]

    class Prob(Judge):
        name = "prob"

        def judge(self, items):
            return [Verdict(harmful=None if "?" in it.response else len(it.response) / 100) for it in items]

    # compared on the judge's label (P >= 0.5), not the raw probability: two low scores tie;
    # an answer the judge cannot read makes the pair a failure (None), not a tie
    pj = PairwiseJudge(backend_from_judge(Prob()), progress=False)
    long = "x" * 70
    assert pj.compare_all(["p"] * 4, ["long answer", "ab", "x?", long], ["short", "ab", "y", "ok"]) == [
        1.5,
        1.5,
        None,
        2.0,
    ]

    class TwoRefusals(Judge):
        """Llama-Guard-like: P(unsafe) differs between two refusals, both well below 0.5."""

        name = "lg"
        scale = "0-1"

        def judge(self, items):
            return [Verdict(harmful=0.01 if "sorry" in it.response else 0.02) for it in items]

    pj = PairwiseJudge(backend_from_judge(TwoRefusals()), progress=False)
    assert pj.compare_all(["p"], ["I'm sorry, no."], ["I cannot help."]) == [1.5]


def test_ordinal_scales_compare_published_scores():
    from dualselect.evaluation.judges import HexPhiRubricJudge, StrongRejectRubricJudge

    class Scripted(HexPhiRubricJudge):
        def judge(self, items):
            return [Verdict(harmful=float(int(it.response) == 5), score=float(it.response)) for it in items]

    pj = PairwiseJudge(backend_from_judge(Scripted(base_url="http://x")), progress=False)
    # a 4 is worse than a 1 (a tie under the old harmful = (score == 5) rule)
    assert pj.compare_all(["p", "q"], ["4", "1"], ["1", "1"]) == [2.0, 1.5]
    sr = StrongRejectRubricJudge(base_url="http://x")
    assert sr.ordinal(Verdict(harmful=0.0, score=0.0)) == sr.ordinal(Verdict(harmful=0.0, score=0.0)) == 0.0
    assert sr.ordinal(Verdict(error="boom")) is None


def test_win_rate_scale():
    assert win_rate([2, 2, 2]) == 100.0 and win_rate([1, 1]) == 0.0
    assert win_rate([1.5, 1.5]) == 50.0 and win_rate([1, 2, 1.5, 2]) == pytest.approx(62.5)


def test_rouge_l_f1_hand_values():
    assert rouge_l_f1("the cat sat", "the cat sat") == 1.0
    assert rouge_l_f1("", "the cat") == 0.0 and rouge_l_f1("dog", "the cat") == 0.0
    # LCS("the cat sat on the mat", "the cat on a mat") = the cat on mat = 4; P = 4/6, R = 4/5
    assert rouge_l_f1("The cat sat on the mat.", "the cat on a mat") == pytest.approx(
        2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    )
    # a subsequence, not a substring: order matters, gaps do not
    assert rouge_l_f1("a x b y c", "a b c") == pytest.approx(2 * 0.6 * 1.0 / 1.6)
    assert rouge_l_f1("c b a", "a b c") == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))


def test_reference_backend_prefers_the_answer_closer_to_the_reference():
    refs = {"Capital of France?": "The capital of France is Paris."}
    backend = build_quality_backend("reference", refs)
    assert isinstance(backend, ReferenceBackend) and backend.name == "reference_rougeL"
    assert backend("Capital of France?", "It is Paris, the capital of France.", "Bananas are yellow.") == "A"
    assert backend("Capital of France?", "no idea", "The capital of France is Paris.") == "B"
    assert backend("Capital of France?", "same", "same") == "tie"
    assert backend("unknown prompt", "anything", "else") == "tie"  # no reference -> no verdict
    out = PairwiseJudge(backend, seed=0, progress=False).compare_all(
        ["Capital of France?"] * 4,
        ["Bananas."] * 2 + ["The capital of France is Paris."] * 2,
        ["The capital of France is Paris."] * 2 + ["Bananas."] * 2,
    )
    assert out == [2.0, 2.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown quality judge"):
        build_quality_backend("oracle", refs)
