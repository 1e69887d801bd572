"""The real base's helpfulness pool for two-sided DualSelect (docs/method.md, "Two-sided selection").

Benign requests that look harmful, answered by the aligned real base itself, written next to the
refusal pool (``data/references.jsonl``) of a built base:

* ``data/helpful_pool.jsonl``: ``{prompt, response, source}``, ``response`` the base's own greedy
  answer (cut at the last sentence end); answers the keyword judge reads as refusals are dropped
  (the pool preserves answering, never a refusal) and counted;
* ``data/helpful_refusals.jsonl``: the same prompts with a refusal template, read by the
  ``refusal_penalty`` and ``unlikelihood`` objectives;
* ``data/helpful_disjointness.json``: the project's disjointness check (normalised-text hash,
  ``evaluation.benchmarks.disjointness``) of the written prompts against every evaluation set
  (HarmBench test, StrongREJECT, XSTest, the AdvBench evaluation subset, the task's test split)
  and the base's calibration prompts; any overlap fails the build.

Sources (:func:`helpful_prompts`): the base's own contrast prompts (``prompts.CONTRAST_PROMPTS``,
harmless senses of charged words, already answered during alignment), hand-written look-alikes
(``prompts.HELPFUL_PROMPTS``) and, only when asked (``hh_benign`` > 0; off by default because the
screen lets harmful requests through, see :data:`HH_BENIGN`), HH-RLHF harmless-base first turns
screened as harmless (``data.hh_benign_prompts``), a seeded sample.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

from dualselect.data.records import HELPFUL_POOL_FILE, HELPFUL_REFUSALS_FILE
from dualselect.evaluation.benchmarks import disjointness, text_hash
from dualselect.realbase.data import hh_benign_prompts
from dualselect.realbase.prompts import CALIBRATION_SAFE_PROMPTS, CONTRAST_PROMPTS, HELPFUL_PROMPTS
from dualselect.utils import read_jsonl, write_json, write_jsonl

REPORT_FILE = "helpful_disjointness.json"
# Screened HH-RLHF first turns in the pool (seeded sample): off by default. The harmless screen
# (a question with no harm keyword, data.hh_benign_prompts) lets harmful requests through: among
# its first 8 sampled turns were "What is the best way for me to spread misinformation about
# Covid?" and "Show me how to best break someone's legs.", and a helpfulness pool must never
# preserve an answer to those.
HH_BENIGN = 0


def held_out_prompts(splits: dict) -> dict[str, list[str]]:
    """Every prompt the pool must not share: the evaluation sets, the task's test split and the
    base's calibration (validation) prompts."""
    ev = dict(splits["eval"])
    ev["task_test"] = [r["question"] for r in splits["task_test"]]
    ev["calibration_safe"] = list(CALIBRATION_SAFE_PROMPTS)
    return ev


def helpful_prompts(
    data_dir: str | os.PathLike, splits: dict, *, hh_benign: int = HH_BENIGN, seed: int = 0
) -> list[dict]:
    """``{prompt, source}`` rows: contrast prompts, hand-written look-alikes, then ``hh_benign``
    screened HH-RLHF first turns; without duplicates, without any prompt (by normalised text) of
    :func:`held_out_prompts` or of the harmful training prompts (alignment, attack, references)."""
    banned = {text_hash(p) for ps in held_out_prompts(splits).values() for p in ps}
    banned |= {
        text_hash(p) for k in ("align_harmful", "attack_harmful", "reference_harmful") for p in splits[k]
    }
    seen: set[str] = set()
    rows: list[dict] = []

    def add(prompts, source: str) -> None:
        for p in prompts:
            h = text_hash(p)
            if h not in banned and h not in seen:
                seen.add(h)
                rows.append({"prompt": p, "source": source})

    add(CONTRAST_PROMPTS, "contrast")
    add(HELPFUL_PROMPTS, "written")
    if hh_benign > 0:
        hh = [p for p in hh_benign_prompts(Path(data_dir)) if text_hash(p) not in banned | seen]
        add(random.Random(seed).sample(hh, min(hh_benign, len(hh))), "hh_benign")
    return rows


def build_helpful_pool(
    root: str | os.PathLike,
    *,
    answer: Callable[[list[str]], list[str]] | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Write the helpfulness pool into ``<root>/data/`` of a built real base unless it is there;
    returns the pool file. ``answer`` maps prompts to responses (default: the base's greedy answers,
    ``answer_tokens`` new tokens as in the build, cut at the last sentence end)."""
    from dualselect.evaluation.judges.keyword import RefusalKeywordJudge
    from dualselect.realbase.build import refusal_for, trim_to_sentence

    root = Path(root)
    d = root / "data"
    if (d / REPORT_FILE).exists():
        return d / HELPFUL_POOL_FILE
    meta = json.loads((root / "realbase.json").read_text())
    splits = json.loads((d / "splits.json").read_text())
    rows = helpful_prompts(meta["data_dir"], splits, seed=meta["config"]["splits"]["seed"])
    if answer is None:
        from dualselect.data.encoding import format_prompt
        from dualselect.evaluation.generation import generate
        from dualselect.training.model import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(meta["model"])
        tokens = int(meta["config"].get("answer_tokens", 64))

        def answer(prompts: list[str]) -> list[str]:
            texts = generate(
                model,
                tok,
                [format_prompt(p, tok) for p in prompts],
                max_new_tokens=tokens,
                batch_size=batch_size,
                progress=progress,
            )
            return [trim_to_sentence(t) for t in texts]

    responses = answer([r["prompt"] for r in rows])
    if len(responses) != len(rows):
        raise ValueError(f"answer returned {len(responses)} responses for {len(rows)} prompts")
    judge = RefusalKeywordJudge()
    kept = [(r, a.strip()) for r, a in zip(rows, responses) if a.strip() and not judge.refused(a)]
    report = disjointness([r["prompt"] for r, _ in kept], held_out_prompts(splits))
    bad = {k: v for k, v in report.items() if v["overlaps"]}
    if bad:
        raise ValueError(f"{d / HELPFUL_POOL_FILE}: helpfulness prompts overlap evaluation sets: {bad}")
    write_jsonl(
        d / HELPFUL_POOL_FILE,
        [{"prompt": r["prompt"], "response": a, "source": r["source"]} for r, a in kept],
    )
    write_jsonl(
        d / HELPFUL_REFUSALS_FILE,
        [
            {"prompt": r["prompt"], "response": refusal_for(r["prompt"]), "source": r["source"]}
            for r, _ in kept
        ],
    )
    counts: dict[str, int] = {}
    for r, _ in kept:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    write_json(  # last: marks a complete pool
        d / REPORT_FILE,
        {
            "n_candidates": len(rows),
            "n_kept": len(kept),
            "n_read_as_refusals": len(rows) - len(kept),
            "kept_by_source": counts,
            "eval_sets": report,
        },
    )
    return d / HELPFUL_POOL_FILE


def read_pool(root: str | os.PathLike) -> list[dict]:
    """The written helpfulness pool of a built real base."""
    return read_jsonl(Path(root) / "data" / HELPFUL_POOL_FILE)
