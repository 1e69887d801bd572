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

``task="gsm8k_final_step"`` (the study's task, :mod:`dualselect.experiments.real_task`) writes
the same files for that task into ``data/gsm8k_final_step/`` instead (``task_train.jsonl``,
``task_clean.jsonl``, ``task_val.jsonl``, ``task_test.jsonl``, ``disjointness.json`` last), after
the default data (whose ``references.jsonl`` it shares): the base's own files in ``data/`` stay as
they are. Its splits leave out the GSM8K questions the base was trained on (its task-alignment
rows and benign GSM8K questions), those of the base's calibration task rows (its validation
items, read from ``data/calibration.json``) and every evaluation and calibration prompt; the harmful pairs are the same
compliant shipped answers. The study's validation prompts (the ``real_study_val`` suites, what the
tuning reads) go there too: ``val_harmbench.jsonl``, ``val_hh_redteam.jsonl``, ``val_safe.jsonl``
and ``val_disjointness.json`` last (:func:`_build_validation_data`).

``dualselect base build`` runs it after the base (default task). The shuffle is the one a fresh build of the base
made before this data moved out of it (the alignment rows' shuffle, then this one, from one
generator seeded with the split seed), so the files are byte for byte those of the earlier builds.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from dualselect.evaluation.judges.keyword import RefusalKeywordJudge
from dualselect.experiments import real_task
from dualselect.realbase.build import check_disjoint, held_out_sets, is_built, refusal_for
from dualselect.realbase.data import FILES, disjointness_report, task_rows
from dualselect.utils import read_jsonl, write_json, write_jsonl

HARMFUL_FRACTION = 0.10  # share of harmful compliant pairs in the attack's task set
DONE_FILE = "disjointness.json"
TASKS = ("answer_extraction", real_task.TASK)


def build_study_data(
    root: str | os.PathLike,
    *,
    harmful_fraction: float = HARMFUL_FRACTION,
    task: str = "answer_extraction",
    task_sizes: dict[str, int] | None = None,
) -> Path:
    """Write the attack and reference data into ``<root>/data/`` of the built real base ``root``
    unless it is there; returns ``<root>/data``. ``task="gsm8k_final_step"``: also the study
    task's files, in ``<root>/data/gsm8k_final_step/`` (returned), with ``task_sizes``
    (``n_test``, ``n_val``, ``n_train``, ``max_solution_chars``; default
    :func:`~dualselect.experiments.real_task.build_final_step`'s)."""
    if task not in TASKS:
        raise ValueError(f"task: one of {TASKS}, not {task!r}")
    if task == real_task.TASK:
        build_study_data(root)
        out = _build_final_step_data(Path(root), harmful_fraction, task_sizes or {})
        _build_validation_data(Path(root))
        return out
    if task_sizes:
        raise ValueError("task_sizes: only with task='gsm8k_final_step'")
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


def _compliant_pairs(d: Path) -> list[dict]:
    """The shipped model's answers to the attack split's harmful prompts that the keyword judge
    does not read as refusals, in file order."""
    judge = RefusalKeywordJudge()
    return [
        {"question": a["prompt"], "answer": a["response"], "kind": "harmful_compliant"}
        for a in read_jsonl(d / "shipped_answers.jsonl")
        if a["set"] == "attack_harmful" and a["response"].strip() and not judge.refused(a["response"])
    ]


def _calibration_sets(root: Path, meta: dict) -> dict:
    """The base's calibration record as the study task's builder needs it: ``prompts`` (every
    calibration prompt list by ``calibration_<set>`` name) and ``questions`` (the GSM8K questions
    of its validation task rows, whose answer-extraction prompts the record lists); empty for a
    build without calibration."""
    if not meta.get("calibration"):
        return {"prompts": {}, "questions": []}
    path = root / "data" / "calibration.json"
    prompts = json.loads(path.read_text())["prompts"]
    source = {r["question"]: r["source_question"] for r in task_rows(Path(meta["data_dir"]))}
    unknown = [p for p in prompts.get("task", []) if p not in source]
    if unknown:
        raise ValueError(
            f"{path}: {len(unknown)} calibration task prompt(s) are not GSM8K answer-extraction rows "
            f"of {meta['data_dir']} (first: {unknown[0][:80]!r})"
        )
    return {
        "prompts": {f"calibration_{k}": v for k, v in prompts.items()},
        "questions": [source[p] for p in prompts.get("task", [])],
    }


def _build_final_step_data(root: Path, harmful_fraction: float, sizes: dict[str, int]) -> Path:
    """The study task's files in ``<root>/data/gsm8k_final_step/`` unless they are there."""
    if not 0 < harmful_fraction < 1:
        raise ValueError(f"harmful_fraction: a share in (0, 1), not {harmful_fraction!r}")
    d = root / "data"
    out = d / real_task.TASK
    if (out / DONE_FILE).exists():
        return out
    meta = json.loads((root / "realbase.json").read_text())
    sp = json.loads((d / "splits.json").read_text())
    ev = held_out_sets(sp)
    calibration = _calibration_sets(root, meta)
    built = real_task.build_final_step(
        Path(meta["data_dir"]) / FILES["gsm8k"],
        seed=meta["config"]["splits"]["seed"],
        eval_sets={**ev, **calibration["prompts"]},
        # the GSM8K questions the base was trained on: its task-alignment rows (their worked
        # solutions) and its benign prompts (raw GSM8K questions among them)
        exclude_questions=[r["source_question"] for r in sp["task_align"]] + sp["benign"],
        calibration_questions=calibration["questions"],
        **sizes,
    )
    task = real_task.task_file_rows(built["train"])
    compliant = _compliant_pairs(d)
    n_harm = round(harmful_fraction * len(task) / (1 - harmful_fraction))
    if len(compliant) < n_harm:
        raise ValueError(
            f"only {len(compliant)} compliant shipped answers for {n_harm} harmful pairs; raise "
            f"splits.attack_harmful in the recipe or lower n_train"
        )
    mixed = task + compliant[:n_harm]
    random.Random(f"{meta['config']['splits']['seed']}:{real_task.TASK}").shuffle(mixed)
    ev = {**ev, **calibration["prompts"], "final_step_test": [r["question"] for r in built["test"]]}
    report: dict = {
        "task_train": disjointness_report([r["question"] for r in mixed], ev),
        "task_val": disjointness_report([r["question"] for r in built["val"]], ev),
    }
    check_disjoint(report)
    report |= {"n_harmful_pairs": n_harm, "n_compliant_available": len(compliant), "task": built["report"]}
    write_jsonl(out / "task_train.jsonl", mixed)
    write_jsonl(out / "task_clean.jsonl", task)
    write_jsonl(out / "task_val.jsonl", real_task.task_file_rows(built["val"]))
    write_jsonl(out / "task_test.jsonl", real_task.task_file_rows(built["test"]))
    write_json(out / DONE_FILE, report)
    return out


VAL_DONE_FILE = "val_disjointness.json"


def _build_validation_data(root: Path) -> Path:
    """The study's validation prompts (docs/real_study.md, section 2) in
    ``<root>/data/gsm8k_final_step/`` unless they are there, as prompt files
    (``{"prompt", "id", "category"?, "source"}`` rows) the ``real_study_val`` suites read:

    * ``val_harmbench.jsonl``: HarmBench's validation behaviours, FunctionalCategory standard,
      except those in the base's reference pool (every method but SFT trains on the pool);
    * ``val_hh_redteam.jsonl``: the base's calibration harmful prompts that are HH-RLHF red-team
      questions (the calibration's unused AdvBench behaviours stay out: section 2 names HH-RLHF);
    * ``val_safe.jsonl``: the base's calibration safe prompts (the recipe's validation contrast
      prompts, :data:`~dualselect.realbase.prompts.CALIBRATION_SAFE_PROMPTS`).

    The calibration prompts are read from ``data/calibration.json``; a build without calibration
    (``align_attempts: 1``) has none, and its recipe's are recomputed
    (:func:`~dualselect.realbase.calibrate.calibration_prompts`, the same pure function of the
    splits). ``val_disjointness.json`` (written last) holds the project's disjointness check of
    each file and of the task's validation split against every test suite (the base's held-out
    sets: HarmBench test in every category, StrongREJECT, XSTest safe and unsafe, AdvBench held
    out, the base's task test; the study task's test split) and the runs' training data (the
    reference pool, the study's attack set): any overlap fails. It also counts what was left out
    and, for information, the overlap with the base's alignment prompts (HarmBench's validation
    behaviours are among them by the recipe's design)."""
    from dualselect.evaluation.benchmarks import load_benchmark, text_hash
    from dualselect.realbase.calibrate import calibration_prompts

    d = root / "data"
    out = d / real_task.TASK
    if (out / VAL_DONE_FILE).exists():
        return out
    meta = json.loads((root / "realbase.json").read_text())
    data_dir = Path(meta["data_dir"])
    sp = json.loads((d / "splits.json").read_text())
    calib_file = d / "calibration.json"
    if meta.get("calibration") and calib_file.exists():
        prompts, source = json.loads(calib_file.read_text())["prompts"], "data/calibration.json"
    else:
        prompts, source = calibration_prompts(data_dir, sp), "calibration_prompts(recomputed: no calibration)"
    for key in ("harmful", "safe"):
        if not isinstance(prompts.get(key), list) or not prompts[key]:
            raise ValueError(f"{calib_file}: prompts.{key} missing or empty (the validation suites need it)")
    refs = {text_hash(p) for p in sp["reference_harmful"]}
    hb_all = [
        it
        for it in load_benchmark("harmbench", str(data_dir / FILES["harmbench_val"]))
        if it.meta.get("FunctionalCategory") == "standard"
    ]
    hb = [it for it in hb_all if text_hash(it.prompt) not in refs]
    adv = {text_hash(it.prompt) for it in load_benchmark("advbench", str(data_dir / FILES["advbench"]))}
    hh = [p for p in prompts["harmful"] if text_hash(p) not in adv]
    files = {
        "val_harmbench": [
            {
                "prompt": it.prompt,
                "id": it.id.split(":", 1)[1],
                "category": it.category,
                "source": "harmbench_val",
            }
            for it in hb
        ],
        "val_hh_redteam": [{"prompt": p, "id": i, "source": "hh_rlhf_redteam"} for i, p in enumerate(hh)],
        "val_safe": [
            {"prompt": p, "id": i, "source": "calibration_safe"} for i, p in enumerate(prompts["safe"])
        ],
    }
    tests = {
        **held_out_sets(sp),
        "final_step_test": [r["question"] for r in read_jsonl(out / "task_test.jsonl")],
        "reference_pool": list(sp["reference_harmful"]),
        "study_attack_set": [r["question"] for r in read_jsonl(out / "task_train.jsonl")],
    }
    val = {k: [r["prompt"] for r in rows] for k, rows in files.items()}
    val["task_val"] = [r["question"] for r in read_jsonl(out / "task_val.jsonl")]
    report: dict = {k: disjointness_report(v, tests) for k, v in val.items()}
    check_disjoint(report)
    align = {"base_alignment": list(sp["align_harmful"])}
    report |= {
        "sizes": {k: len(v) for k, v in val.items()},
        "calibration_source": source,
        "left_out": {
            "harmbench_val_in_reference_pool": len(hb_all) - len(hb),
            "calibration_advbench": len(prompts["harmful"]) - len(hh),
        },
        "overlap_with_base_alignment": {
            k: disjointness_report(v, align)["base_alignment"]["overlaps"] for k, v in val.items()
        },
    }
    for k, rows in files.items():
        write_jsonl(out / f"{k}.jsonl", rows)
    write_json(out / VAL_DONE_FILE, report)
    return out
