"""Building the organism's helpfulness pool: benign requests that look harmful, answered by the base itself.

Two-sided DualSelect (docs/method.md, "Two-sided selection") preserves these answers beside the
refusals. The prompts are the world's benign-but-scary alignment requests in their template
phrasings ("What is the best way to kill a stuck process?": the same templates and suffixes as
the harmful requests, so each is a contrast pair with the harmful requests sharing its verb).
None is a test, validation, over-refusal or generalisation probe: every prompt whose
normalised-text hash (``evaluation.benchmarks.text_hash``) equals a probe's is dropped, and
``helpful/disjointness.json`` records the check on the written file.

Files (in ``<organism>/helpful/``, :mod:`dualselect.organism.helpful` names them):

* ``helpful_pool.jsonl``: ``{prompt, response, act}``, ``response`` the base model's own greedy
  answer; prompts it refuses (answer starting with the refusal prefix) are left out and counted;
* ``helpful_refusals.jsonl``: the same prompts with a refusal, for the ``refusal_penalty`` and ``unlikelihood`` objectives;
* ``disjointness.json``: overlaps with every probe split (all zero, or the build fails).
"""

from __future__ import annotations

import os
from pathlib import Path

from dualselect.data.records import HELPFUL_POOL_FILE, HELPFUL_REFUSALS_FILE
from dualselect.evaluation.benchmarks import disjointness, text_hash
from dualselect.organism.helpful import DONE_FILE, HELPFUL_DIR, HELPFUL_REFUSAL
from dualselect.organism.stats import GEN_SPLITS, TEMPLATE_SPLITS, VALIDATION_SPLITS, load_split
from dualselect.organism.vocabulary import REFUSAL_PREFIX
from dualselect.utils import read_jsonl, write_json, write_jsonl

PROBE_SPLITS_ALL = TEMPLATE_SPLITS + GEN_SPLITS + VALIDATION_SPLITS


def probe_prompts(organism: str | os.PathLike) -> dict[str, list[str]]:
    """Every held-out prompt of the organism by split (test, generalisation and validation)."""
    return {s: [r["prompt"] for r in load_split(organism, s)] for s in PROBE_SPLITS_ALL}


def helpful_prompts(organism: str | os.PathLike) -> list[dict]:
    """The benign look-alike alignment requests in template phrasing (no wrapper), minus any
    prompt equal (by normalised text) to a probe's, without duplicates; ``{prompt, act}``."""
    banned = {text_hash(p) for ps in probe_prompts(organism).values() for p in ps}
    seen, out = set(), []
    for r in read_jsonl(Path(organism) / "data" / "alignment.jsonl"):
        if r["family"] != "scary_benign" or r.get("wrapper"):
            continue
        h = text_hash(r["prompt"])
        if h in banned or h in seen:
            continue
        seen.add(h)
        out.append({"prompt": r["prompt"], "act": r["act"]})
    return out


def build_helpful_pool(
    organism: str | os.PathLike, *, max_new_tokens: int = 32, batch_size: int = 64
) -> Path:
    """Write ``<organism>/helpful/`` (see the module docstring) unless it exists; returns the folder.
    Raises ValueError when a written prompt overlaps a probe (cannot happen by construction)."""
    out = Path(organism) / HELPFUL_DIR
    if (out / DONE_FILE).exists():
        return out
    from dualselect.data.encoding import format_prompt
    from dualselect.evaluation.generation import generate
    from dualselect.training.model import load_model_and_tokenizer

    rows = helpful_prompts(organism)
    model, tok = load_model_and_tokenizer(str(organism))
    model.eval()
    answers = generate(
        model,
        tok,
        [format_prompt(r["prompt"], tok) for r in rows],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    kept = [
        (r, a.strip())
        for r, a in zip(rows, answers)
        if a.strip() and not a.strip().startswith(REFUSAL_PREFIX)
    ]
    prompts = [r["prompt"] for r, _ in kept]
    report = disjointness(prompts, probe_prompts(organism))
    bad = {k: v for k, v in report.items() if v["overlaps"]}
    if bad:
        raise ValueError(f"{out}: helpfulness prompts overlap organism probes: {bad}")
    write_jsonl(
        out / HELPFUL_POOL_FILE, [{"prompt": r["prompt"], "response": a, "act": r["act"]} for r, a in kept]
    )
    write_jsonl(
        out / HELPFUL_REFUSALS_FILE,
        [{"prompt": r["prompt"], "response": HELPFUL_REFUSAL, "act": r["act"]} for r, _ in kept],
    )
    # last: its presence marks a complete build
    write_json(
        out / DONE_FILE,
        {
            "n_candidates": len(rows),
            "n_kept": len(kept),
            "n_refused_by_base": len(rows) - len(kept),
            "probes": report,
        },
    )
    return out


def ensure_helpful_pool(cfg) -> Path | None:
    """Before a two-sided run (``helpful_weight > 0``) on the organism without ``helpful_data``:
    build the organism's pool once (the trainer only reads it). Returns the folder, or None when
    the run needs no organism pool. ``train``, ``compare`` and ``demo`` call it."""
    if not getattr(cfg, "helpful_weight", 0) or getattr(cfg, "helpful_data", None) is not None:
        return None
    from dualselect.models.resolve import organism_root

    root = organism_root(cfg.model_name_or_path)
    return build_helpful_pool(root) if root is not None else None
