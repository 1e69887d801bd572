"""Capability metrics: exact match (GSM8K-style extraction), label-word accuracy, win rate."""

from __future__ import annotations

import re

# lm-evaluation-harness GSM8K (gsm8k.yaml): the "strict-match" and "flexible-extract" filters
# (RegexFilter: findall, group_select 0 / -1, first non-empty group of a tuple, strip, fallback
# "[invalid]") and exact_match's normalisation of prediction and reference (regexes_to_ignore
# ",", "\$", "(?s).*#### ", "\.$", then ignore_case).
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
INVALID = "[invalid]"
IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")


def _regex_filter(text: str, regex: re.Pattern, group_select: int) -> str:
    """lm-eval's ``RegexFilter`` on one response."""
    match = regex.findall(text)
    if not match:
        return INVALID
    m = match[group_select]
    if isinstance(m, tuple):
        m = next((x for x in m if x), INVALID)
    return m.strip()


def lm_eval_normalise(text: str) -> str:
    """lm-eval's ``exact_match`` normalisation for GSM8K, applied to both sides."""
    for pat in IGNORE:
        text = re.sub(pat, "", text)
    return text.lower()


def extract_strict(text: str) -> str | None:
    """The number after ``#### `` (GSM8K's answer mark), normalised as lm-eval compares it;
    None when there is none ("[invalid]" in lm-eval)."""
    m = _regex_filter(text, STRICT, 0)
    return None if m == INVALID else lm_eval_normalise(m)


def extract_flexible(text: str) -> str | None:
    """The last number-like span (lm-eval's flexible-extract), normalised; None when none."""
    m = _regex_filter(text, FLEXIBLE, -1)
    return None if m == INVALID else lm_eval_normalise(m)


def exact_match(preds: list[str], golds: list[str], mode: str = "strict") -> float:
    """Share of responses whose extracted answer equals the gold answer, exactly as
    lm-evaluation-harness scores GSM8K (``golds``: the solution or its final number)."""
    if mode not in ("strict", "flexible"):
        raise ValueError(f"mode={mode!r}: expected 'strict' or 'flexible'")
    regex, group = (STRICT, 0) if mode == "strict" else (FLEXIBLE, -1)
    hits = [
        lm_eval_normalise(_regex_filter(p, regex, group)) == lm_eval_normalise(str(g))
        for p, g in zip(preds, golds)
    ]
    return sum(hits) / max(1, len(hits))


def label_accuracy(preds: list[str], golds: list[str], labels: list[str]) -> float:
    """Classification accuracy by label word: the first label word found in the response."""
    pats = [(lab, re.compile(rf"\b{re.escape(lab)}\b", re.IGNORECASE)) for lab in labels]

    def first_label(text: str) -> str | None:
        hits = [(m.start(), lab) for lab, p in pats if (m := p.search(text))]
        return min(hits)[1] if hits else None

    return sum(first_label(p) == g for p, g in zip(preds, golds)) / max(1, len(preds))


def win_rate(outcomes: list[float | None]) -> float | None:
    """Pairwise outcomes (1 = baseline better, 2 = ours better, 1.5 = tie) -> 0..100, 50 = tie.
    Failed pairs (None) are left out (count them beside the rate); None when every pair failed."""
    ok = [o for o in outcomes if o is not None]
    if outcomes and not ok:
        return None
    return 100.0 * sum(o - 1 for o in ok) / max(1, len(ok))
