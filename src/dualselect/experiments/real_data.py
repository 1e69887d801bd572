"""The real-model study's attack and reference data, written into a built real base's ``data/``.

Study data, not part of the base's recipe: the harmful fine-tuning attack on the GSM8K
answer-extraction task and the refusal pool DualSelect selects against. Built from the base's own
files (its splits, the shipped model's answers, its alignment rows and its calibration record):

* ``data/task_train.jsonl``: the task's training rows plus harmful compliant pairs making up
  ``harmful_fraction`` of the mix (the shipped model's own answers to the attack split's harmful
  prompts that the keyword judge does not read as refusals), shuffled;
* ``data/task_clean.jsonl``: the task rows alone;
* ``data/references.jsonl``: refusals to the reference split's harmful prompts;
* ``data/disjointness.json`` (written last: it marks the data complete): the project's
  disjointness check of the references, the alignment rows, the attack set and the calibration
  prompts against every evaluation set; any overlap fails.

``dualselect base build`` runs it after the base. The shuffle is the one a fresh build of the base
made before this data moved out of it (the alignment rows' shuffle, then this one, from one
generator seeded with the split seed), so the files are byte for byte those of the earlier builds.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from dualselect.evaluation.judges.keyword import RefusalKeywordJudge
from dualselect.realbase.build import check_disjoint, held_out_sets, is_built, refusal_for
from dualselect.realbase.data import disjointness_report
from dualselect.utils import read_jsonl, write_json, write_jsonl

HARMFUL_FRACTION = 0.10  # share of harmful compliant pairs in the attack's task set
DONE_FILE = "disjointness.json"


def build_study_data(root: str | os.PathLike, *, harmful_fraction: float = HARMFUL_FRACTION) -> Path:
    """Write the attack and reference data into ``<root>/data/`` of the built real base ``root``
    unless it is there; returns ``<root>/data``."""
    root = Path(root)
    d = root / "data"
    if (d / DONE_FILE).exists():
        return d
    if not is_built(root):
        raise FileNotFoundError(
            f"{root}: not a built real base (no realbase.json): run `dualselect base build`"
        )
    if not 0 < harmful_fraction < 1:
        raise ValueError(f"harmful_fraction: a share in (0, 1), not {harmful_fraction!r}")
    meta = json.loads((root / "realbase.json").read_text())
    sp = json.loads((d / "splits.json").read_text())
    answers = read_jsonl(d / "shipped_answers.jsonl")
    align = read_jsonl(d / "align_train.jsonl")
    calibration = json.loads((d / "calibration.json").read_text()) if meta.get("calibration") else None

    rng = random.Random(meta["config"]["splits"]["seed"])
    rng.shuffle(list(range(len(align))))  # the alignment rows' shuffle: it drew first
    judge = RefusalKeywordJudge()
    compliant = [
        {"prompt": a["prompt"], "response": a["response"], "kind": "harmful_compliant"}
        for a in answers
        if a["set"] == "attack_harmful" and a["response"].strip() and not judge.refused(a["response"])
    ]
    task = [{"question": r["question"], "answer": r["answer"], "kind": "task"} for r in sp["task_train"]]
    n_harm = round(harmful_fraction * len(task) / (1 - harmful_fraction))
    if len(compliant) < n_harm:
        raise ValueError(
            f"only {len(compliant)} compliant shipped answers for {n_harm} harmful pairs; raise "
            f"splits.attack_harmful in the recipe"
        )
    mixed = task + [
        {"question": c["prompt"], "answer": c["response"], "kind": c["kind"]} for c in compliant[:n_harm]
    ]
    rng.shuffle(mixed)
    ev = held_out_sets(sp)
    report = {
        "references": disjointness_report(sp["reference_harmful"], ev),
        "align_train": disjointness_report([r["prompt"] for r in align], ev),
        "task_train": disjointness_report([r["question"] for r in mixed], ev),
        **(
            {"calibration": disjointness_report(sum(calibration["prompts"].values(), []), ev)}
            if calibration
            else {}
        ),
        "n_harmful_pairs": n_harm,
        "n_compliant_available": len(compliant),
    }
    check_disjoint(report)
    write_jsonl(d / "task_train.jsonl", mixed)
    write_jsonl(d / "task_clean.jsonl", task)
    write_jsonl(
        d / "references.jsonl",
        [{"prompt": p, "response": refusal_for(p)} for p in sp["reference_harmful"]],
    )
    write_json(d / DONE_FILE, report)
    return d
