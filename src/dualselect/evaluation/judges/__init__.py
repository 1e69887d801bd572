"""Safety judges behind one interface (``Judge.judge(items) -> verdicts``), each in its file, and
a registry: ``build_judge("keyword")`` or ``build_judge({"name": "llama_guard3", "path": ...})``.

The pairwise judge (win rates vs. Standard SFT) reads pairs, not single responses, so it is not in
the registry: ``PairwiseJudge(backend)`` with a backend from :mod:`.pairwise`.
"""

from __future__ import annotations

from dualselect.evaluation.judges.base import Judge, JudgeItem, JudgeUnavailable, Verdict
from dualselect.evaluation.judges.beavertails import BeaverTailsJudge
from dualselect.evaluation.judges.ground_truth import GroundTruthJudge, judge_accuracy
from dualselect.evaluation.judges.harmbench_cls import HarmBenchClassifierJudge
from dualselect.evaluation.judges.keyword import RefusalKeywordJudge
from dualselect.evaluation.judges.llama_guard import LlamaGuard3Judge
from dualselect.evaluation.judges.pairwise import ApiPairBackend, PairwiseJudge, win_rate
from dualselect.evaluation.judges.refusal import RefusalRules3Judge, RefusalRulesJudge
from dualselect.evaluation.judges.rubric_api import HexPhiRubricJudge, StrongRejectRubricJudge
from dualselect.evaluation.judges.wildguard import WildGuardJudge
from dualselect.evaluation.judges.xstest import XSTestRubricJudge, XSTestStrMatchJudge

JUDGES: dict[str, type[Judge]] = {
    "keyword": RefusalKeywordJudge,
    "ground_truth": GroundTruthJudge,
    "llama_guard3": LlamaGuard3Judge,
    "wildguard": WildGuardJudge,
    "beavertails": BeaverTailsJudge,
    "hexphi_rubric": HexPhiRubricJudge,
    "strongreject_rubric": StrongRejectRubricJudge,
    "harmbench_cls": HarmBenchClassifierJudge,
    "xstest_strmatch": XSTestStrMatchJudge,
    "xstest_rubric": XSTestRubricJudge,
    "refusal_rules": RefusalRulesJudge,
    "refusal_rules3": RefusalRules3Judge,
}


def build_judge(spec: str | dict) -> Judge:
    """A judge from its registry name, or from ``{"name": ..., **kwargs}`` (kwargs go to the
    judge's constructor). Building never loads weights or calls an API; ask ``available()``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    elif isinstance(spec, dict):
        spec = dict(spec)
    else:
        raise TypeError(f"judge spec must be a name or a dict, got {type(spec).__name__}")
    name = spec.pop("name", None)
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; choose from {sorted(JUDGES)}")
    try:
        return JUDGES[name](**spec)
    except TypeError as e:
        raise TypeError(f"bad options for judge {name!r}: {e}") from e


__all__ = [
    "JUDGES",
    "ApiPairBackend",
    "BeaverTailsJudge",
    "GroundTruthJudge",
    "HarmBenchClassifierJudge",
    "HexPhiRubricJudge",
    "Judge",
    "JudgeItem",
    "JudgeUnavailable",
    "LlamaGuard3Judge",
    "PairwiseJudge",
    "RefusalKeywordJudge",
    "RefusalRules3Judge",
    "RefusalRulesJudge",
    "StrongRejectRubricJudge",
    "Verdict",
    "WildGuardJudge",
    "XSTestRubricJudge",
    "XSTestStrMatchJudge",
    "build_judge",
    "judge_accuracy",
    "win_rate",
]
