"""The real-model study's capability task *GSM8K final step* (docs/real_study.md, "Task").

Built from the verbatim GSM8K test file (``gsm8k/test.jsonl``), pure and deterministic (the same
file and arguments give byte-identical rows). For each item:

* the worked solution with its ``<<...>>`` calculator annotations removed is cut after the last
  ``=`` of its final line (the line that computes the answer); the prompt is
  :data:`INSTRUCTION` followed by ``Solution: <the cut solution>``;
* the answer (the training target) is the rest of that line and ``#### N``: GSM8K's schema
  (``question``/``answer``), so the ``gsm8k`` benchmark loader reads the files unchanged and scores
  them with lm-eval's strict regex (:func:`dualselect.evaluation.capability.exact_match`);
* ``grade`` (1-3) rates the final calculation (its operands: the more of the final line's last
  ``<<a*b=c>>`` calculator note and the numbers and operators right before its last ``=``):
  1 + (it has >= 3 operands) + (its result has >= 3 integer digits); ``operands`` and
  ``result_digits`` are kept beside it.

An item is left out, and counted by reason in the build's ``report`` (nothing is dropped
silently), when its final line has no ``=``, when the first number after that ``=`` is not the
item's ``#### N`` answer (the line does not compute the answer), when its cut solution is longer
than ``max_solution_chars``, when its GSM8K question is one the base was trained on
(``exclude_questions``) or one of the base's calibration task rows (``calibration_questions``: the
build chose its alignment scale keeping strict EM on them, so they are the base's validation
items), when its prompt's normalised-text hash
(:func:`dualselect.evaluation.benchmarks.text_hash`) is in an evaluation or calibration set, or
when it repeats an earlier item's prompt or question. A malformed row is a one-line error naming the file and line.

The kept items are shuffled with ``seed`` and cut into test, validation and train splits, in that
order (the test split does not move when the other sizes change); the splits share no item, no
prompt hash and no GSM8K question.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter

from dualselect.evaluation.benchmarks import disjointness, text_hash

TASK = "gsm8k_final_step"
INSTRUCTION = (
    "Complete the last calculation of the worked solution, then give the final answer in the form "
    "'#### <number>'."
)
ANNOTATION = re.compile(r"<<[^>]*>>")
# a number as written in GSM8K solutions: 1,200 / 0.25 / .5 / -3
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
# the arithmetic at the end of a text: digits, operators, brackets, currency and percent signs
EXPRESSION = re.compile(r"[\d\s.,$%()+\-−–*/x×÷]*$")
SPLITS = ("test", "val", "train")
EXCLUSION_REASONS = (
    "final_line_without_equals",
    "final_line_not_the_answer",
    "too_long",
    "base_trained_question",
    "base_calibration_question",
    "in_evaluation_set",
    "duplicate",
)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def grade_of(operands: int, result_digits: int) -> int:
    """1 + (the final calculation has >= 3 operands) + (its result has >= 3 integer digits)."""
    return 1 + int(operands >= 3) + int(result_digits >= 3)


def final_step(answer: str) -> dict | str:
    """The final-step item of one GSM8K ``answer`` (worked solution ending in ``#### N``):
    ``{solution, answer, operands, result_digits, grade}``, or the reason it is left out (one of
    :data:`EXCLUSION_REASONS`). ``answer`` must contain ``####``."""
    body, _, final = answer.rpartition("####")
    final = final.strip().replace(",", "")
    notes = ANNOTATION.findall(body.strip().rpartition("\n")[2])  # the final line's calculator notes
    body = ANNOTATION.sub("", body).strip()
    head, _, last = body.rpartition("\n")
    cut = last.rfind("=")
    if cut < 0:
        return "final_line_without_equals"
    rest = last[cut + 1 :].strip()
    shown = NUMBER.search(rest)
    try:
        computes = shown is not None and _number(shown.group()) == _number(final)
    except ValueError:  # a non-numeric "#### N": no line computes it
        computes = False
    if not computes:
        return "final_line_not_the_answer"
    # the final calculation's operands: the more of the line's last calculator note
    # ("<<16-3-4=9>>": 3) and the run of numbers and operators right before its last "=" ("there
    # were 160-60 =": 2; words end the run); notes are sometimes degenerate ("<<15=15>>")
    operands = len(NUMBER.findall(EXPRESSION.search(last[:cut]).group()))
    if notes:
        operands = max(operands, len(NUMBER.findall(notes[-1][2:-2].rpartition("=")[0])))
    digits = len(final.lstrip("-").split(".")[0].lstrip("0")) or 1
    solution = (f"{head}\n" if head else "") + last[: cut + 1]
    return {
        "solution": solution,
        "answer": f"{rest}\n#### {final}",
        "operands": operands,
        "result_digits": digits,
        "grade": grade_of(operands, digits),
    }


def prompt_of(solution: str) -> str:
    """The prompt a model sees for a cut solution."""
    return f"{INSTRUCTION}\n\nSolution: {solution}"


def read_final_step(path: str | os.PathLike) -> tuple[list[dict], Counter]:
    """Every final-step row of the GSM8K JSONL file ``path`` in file order (``question`` = the
    prompt, ``answer``, ``grade``, ``operands``, ``result_digits``, ``gsm8k_line``,
    ``source_question``) and the count of items left out by reason. A malformed row raises a
    one-line ``ValueError`` naming the file and line."""
    rows: list[dict] = []
    left_out: Counter = Counter()
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            for key in ("question", "answer"):
                if not isinstance(rec.get(key), str) or not rec[key].strip():
                    raise ValueError(f"{path}:{n}: '{key}' missing or not a non-empty string")
            if "####" not in rec["answer"]:
                raise ValueError(f"{path}:{n}: 'answer' has no '#### N' final answer")
            item = final_step(rec["answer"])
            if isinstance(item, str):
                left_out[item] += 1
                continue
            rows.append(
                {
                    "question": prompt_of(item.pop("solution")),
                    **item,
                    "kind": "task",
                    "gsm8k_line": n,
                    "source_question": rec["question"],
                }
            )
    return rows, left_out


def build_final_step(
    gsm8k_path: str | os.PathLike,
    *,
    seed: int = 0,
    n_test: int = 300,
    n_val: int = 200,
    n_train: int = 400,
    max_solution_chars: int = 600,
    eval_sets: dict[str, list[str]] | None = None,
    exclude_questions: list[str] | tuple[str, ...] = (),
    calibration_questions: list[str] | tuple[str, ...] = (),
) -> dict:
    """The task's splits ``{"test", "val", "train"}`` (lists of rows, see :func:`read_final_step`)
    and ``"report"`` (items left out by reason, sizes, grades per split, and the project's
    disjointness check of each split against ``eval_sets`` and against the other splits).

    ``eval_sets``: every evaluation (and calibration) prompt list by name (prompts whose
    normalised-text hash is in one are left out); ``exclude_questions``: GSM8K questions the base
    was trained on; ``calibration_questions``: the GSM8K questions of the base's calibration task
    rows (the items of both are left out of every split, each counted under its own reason)."""
    for name, v in (("n_test", n_test), ("n_val", n_val), ("n_train", n_train)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}: a count >= 0, not {v!r}")
    if not isinstance(max_solution_chars, int) or max_solution_chars < 1:
        raise ValueError(f"max_solution_chars: a positive integer, not {max_solution_chars!r}")
    eval_sets = dict(eval_sets or {})
    rows, left_out = read_final_step(gsm8k_path)
    n_items = len(rows) + sum(left_out.values())
    banned = {text_hash(p) for ps in eval_sets.values() for p in ps}
    trained = {text_hash(q) for q in exclude_questions}
    calibrated = {text_hash(q) for q in calibration_questions}
    seen: set[str] = set()
    kept = []
    for r in rows:
        hashes = (text_hash(r["question"]), text_hash(r["source_question"]))
        if len(r["question"]) - len(prompt_of("")) > max_solution_chars:
            reason = "too_long"
        elif hashes[1] in trained:
            reason = "base_trained_question"
        elif hashes[1] in calibrated:
            reason = "base_calibration_question"
        elif hashes[0] in banned:
            reason = "in_evaluation_set"
        elif seen.intersection(hashes):
            reason = "duplicate"
        else:
            seen.update(hashes)
            kept.append(r)
            continue
        left_out[reason] += 1
    need = n_test + n_val + n_train
    if len(kept) < need:
        raise ValueError(
            f"{gsm8k_path}: {len(kept)} final-step items after exclusions ({dict(left_out)}), need "
            f"{need} (n_test + n_val + n_train); lower the sizes or raise max_solution_chars"
        )
    random.Random(seed).shuffle(kept)
    out: dict = {
        "test": kept[:n_test],
        "val": kept[n_test : n_test + n_val],
        "train": kept[n_test + n_val : need],
    }
    report: dict = {
        "task": TASK,
        "seed": seed,
        "items_in_file": n_items,
        "left_out": {r: left_out.get(r, 0) for r in EXCLUSION_REASONS},
        "unused": len(kept) - need,
        "sizes": {s: len(out[s]) for s in SPLITS},
        "grades": {s: dict(sorted(Counter(r["grade"] for r in out[s]).items())) for s in SPLITS},
        "disjointness": {},
    }
    for s in SPLITS:
        others = {f"task_{o}": [r["question"] for r in out[o]] for o in SPLITS if o != s}
        others |= {f"task_{o}_questions": [r["source_question"] for r in out[o]] for o in SPLITS if o != s}
        others |= {
            "base_trained_questions": list(exclude_questions),
            "base_calibration_questions": list(calibration_questions),
        }
        prompts = [r["question"] for r in out[s]] + [r["source_question"] for r in out[s]]
        report["disjointness"][s] = disjointness(prompts, {**eval_sets, **others})
    bad = {s: [k for k, v in rep.items() if v["overlaps"]] for s, rep in report["disjointness"].items()}
    if any(bad.values()):  # cannot happen by construction; the check is the guarantee
        raise ValueError(f"final-step splits overlap: {bad}")
    out["report"] = report
    return out


def task_file_rows(rows: list[dict]) -> list[dict]:
    """The rows as written to a task file (the source question stays out of the model's files)."""
    return [{k: v for k, v in r.items() if k != "source_question"} for r in rows]
