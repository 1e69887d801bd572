"""The study's task *GSM8K final step* (experiments/real_task.py) on the verbatim GSM8K file, and
its files written by ``build_study_data(task="gsm8k_final_step")`` into a (stand-in) real base."""

from __future__ import annotations

import hashlib
import json

import pytest

from dualselect.evaluation.benchmarks import load_benchmark, text_hash
from dualselect.evaluation.capability import exact_match, extract_strict
from dualselect.experiments.real_task import (
    INSTRUCTION,
    build_final_step,
    final_step,
    grade_of,
    read_final_step,
    task_file_rows,
)
from dualselect.utils import write_jsonl
from repo_scripts import load_script

HEAD = f"{INSTRUCTION}\n\nSolution: "


@pytest.fixture(scope="module")
def gsm8k(shared_data):
    return shared_data / "gsm8k" / "test.jsonl"


@pytest.fixture(scope="module")
def rows(gsm8k):
    return read_final_step(gsm8k)


@pytest.fixture(scope="module")
def recipe_splits(shared_data):
    """The shipped recipe's splits (what a base build of it writes to data/splits.json)."""
    from dualselect.realbase.data import SplitConfig, build_splits

    return build_splits(shared_data, SplitConfig())


def _calibration_questions(shared_data, sp) -> list[str]:
    """The GSM8K questions of the shipped recipe's 150 calibration task rows (what its build
    scores every alignment scale on)."""
    from dualselect.realbase.calibrate import calibration_task_rows
    from dualselect.realbase.data import task_rows

    source = {r["question"]: r["source_question"] for r in task_rows(shared_data)}
    return [source[r["question"]] for r in calibration_task_rows(shared_data, sp, 150)]


def _study_split(gsm8k, sp, **kw):
    from dualselect.realbase.build import held_out_sets

    kw.setdefault("calibration_questions", _calibration_questions(gsm8k.parents[1], sp))
    return build_final_step(
        gsm8k,
        eval_sets=held_out_sets(sp),
        exclude_questions=[r["source_question"] for r in sp["task_align"]] + sp["benign"],
        **kw,
    )


def test_the_cut_on_real_items(rows):
    """Exact prompts and answers of real items: annotations gone, cut after the final line's last
    '=', the rest of that line and '#### N' as the answer; grade from the final calculation."""
    items, left_out = rows
    by = {r["gsm8k_line"]: r for r in items}
    janet = by[1]  # "... 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs ...\nShe makes 9 * 2 = $<<9*2=18>>18 ..."
    assert janet["question"] == HEAD + "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 ="
    assert janet["answer"] == "$18 every day at the farmer’s market.\n#### 18"
    assert (janet["operands"], janet["result_digits"], janet["grade"]) == (2, 2, 1)
    assert by[2]["question"] == HEAD + (
        "It takes 2/2=1 bolt of white fiber\nSo the total amount of fabric is 2+1="
    )
    assert by[2]["answer"] == "3 bolts of fabric\n#### 3"
    house = by[3]  # four lines; a 5-digit result written "$70,000", answered "#### 70000"
    assert house["question"].endswith("So he made a profit of 200,000-130,000=")
    assert house["question"].count("\n") == 2 + 3
    assert house["answer"] == "$70,000\n#### 70000"
    assert (house["operands"], house["result_digits"], house["grade"]) == (2, 5, 2)
    # words in the line are not operands ("60 boys ... 160-60 =" is 160 - 60); 3 operands + 3 digits
    assert by[177]["question"].endswith("there were 160-60 =")
    assert (by[177]["operands"], by[177]["grade"]) == (2, 2)
    assert by[265]["question"].endswith(
        "The total amount of money that the three girls have is $175+$125+$100 ="
    )
    assert (by[265]["answer"], by[265]["operands"], by[265]["grade"]) == ("$400.\n#### 400", 3, 3)
    assert by[28]["answer"] == "$16.00\n#### 16"  # "16.00" computes 16
    # a final line without '=' and one that does not compute the answer are left out, counted
    assert 16 not in by and 27 not in by
    assert left_out == {"final_line_without_equals": 40, "final_line_not_the_answer": 8}
    assert len(items) == 1319 - 48


def test_annotations_removed_and_answers_parse(rows, tmp_path, gsm8k):
    """No calculator annotation survives; every answer's strict '#### N' is the item's GSM8K
    answer, and the gsm8k loader + lm-eval strict exact match read the written file unchanged."""
    items, _ = rows
    assert not any("<<" in r["question"] + r["answer"] or ">>" in r["question"] + r["answer"] for r in items)
    assert all(r["question"].startswith(HEAD) and r["question"].endswith("=") for r in items)
    lines = gsm8k.read_text(encoding="utf-8").splitlines()
    golds = [json.loads(line)["answer"].split("####")[-1].strip().replace(",", "") for line in lines]
    assert all(extract_strict(r["answer"]) == golds[r["gsm8k_line"] - 1] for r in items)
    path = tmp_path / "t.jsonl"
    write_jsonl(path, task_file_rows(items[:50]))
    loaded = load_benchmark("gsm8k", str(path))
    assert [it.prompt for it in loaded] == [r["question"] for r in items[:50]]
    assert exact_match([r["answer"] for r in items[:50]], [it.gold for it in loaded], "strict") == 1.0
    # the answer without its '#### N' line scores 0 with the strict regex (the flexible one would not)
    assert (
        exact_match([r["answer"].split("\n####")[0] for r in items[:50]], [it.gold for it in loaded]) == 0.0
    )


def test_grades(rows):
    assert [grade_of(o, d) for o, d in ((2, 2), (3, 2), (2, 3), (4, 5), (0, 1))] == [1, 2, 2, 3, 1]
    items, _ = rows
    assert all(r["grade"] == grade_of(r["operands"], r["result_digits"]) for r in items)
    assert all(r["result_digits"] == len(str(abs(int(float(r["answer"].split("#### ")[1]))))) for r in items)
    counts = {g: sum(r["grade"] == g for r in items) for g in (1, 2, 3)}
    assert counts == {1: 741, 2: 458, 3: 72}


def test_final_step_reasons():
    assert final_step("a\nb = <<1+1=2>>2 so\n#### 2")["answer"] == "2 so\n#### 2"
    assert final_step("x = 3\nJo has 3 apples.\n#### 3") == "final_line_without_equals"
    assert final_step("x = 4 - 1 = 3, or 30%\n#### 30") == "final_line_not_the_answer"
    assert final_step("2 * 3 = six\n#### 6") == "final_line_not_the_answer"


def test_the_study_splits_are_disjoint_sized_and_pinned(gsm8k, recipe_splits, tmp_path):
    """Test >= 200, no shared item, prompt hash or GSM8K question between splits; no evaluation
    prompt and no GSM8K question the base trained on; byte-identical on a rebuild and pinned (the
    pre-registered test split must never move)."""
    from dualselect.realbase.build import held_out_sets

    sp = recipe_splits
    built = _study_split(gsm8k, sp)
    test, val, train = built["test"], built["val"], built["train"]
    assert (len(test), len(val), len(train)) == (300, 200, 400)
    hashes = [{text_hash(r["question"]) for r in s} for s in (test, val, train)]
    questions = [{text_hash(r["source_question"]) for r in s} for s in (test, val, train)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not hashes[a] & hashes[b] and not questions[a] & questions[b]
    evals = {text_hash(p) for ps in held_out_sets(sp).values() for p in ps}
    assert not evals & set().union(*hashes)
    trained = {text_hash(r["source_question"]) for r in sp["task_align"]} | {
        text_hash(p) for p in sp["benign"]
    }
    assert not trained & set().union(*questions)
    rep = built["report"]
    assert rep["left_out"]["base_trained_question"] == 175
    assert rep["left_out"]["base_calibration_question"] == 145
    assert all(v["overlaps"] == 0 for s in rep["disjointness"].values() for v in s.values())
    assert set(rep["grades"]["test"]) == {1, 2, 3}
    again = _study_split(gsm8k, sp)
    for name in ("test", "val", "train"):
        a, b = tmp_path / f"{name}_a.jsonl", tmp_path / f"{name}_b.jsonl"
        write_jsonl(a, task_file_rows(built[name]))
        write_jsonl(b, task_file_rows(again[name]))
        assert a.read_bytes() == b.read_bytes()
    digest = hashlib.sha256((tmp_path / "test_a.jsonl").read_bytes()).hexdigest()[:16]
    # changed 2026-12-07 from 3cc19c05d825b319: the base's calibration questions left out
    # (docs/real_study.md, changelog)
    assert digest == "e85786a00a4df2bb"
    # the test split does not move when the other sizes change; another seed moves it
    assert _study_split(gsm8k, sp, n_val=100, n_train=100)["test"] == test
    assert _study_split(gsm8k, sp, seed=1)["test"] != test


def test_the_splits_leave_out_the_bases_calibration_questions(gsm8k, recipe_splits, shared_data):
    """The base's build chooses its alignment scale keeping strict EM on 150 GSM8K validation rows
    (realbase/calibrate.py); their GSM8K questions are in no split of the study task (by the
    normalised-text hash of the question), though without the exclusion 121 of them would be
    (49 in the test split): the prompts differ (answer extraction vs final step), the items not."""
    calib = {text_hash(q) for q in _calibration_questions(shared_data, recipe_splits)}
    assert len(calib) == 150
    built = _study_split(gsm8k, recipe_splits)
    for name in ("test", "val", "train"):
        assert not calib & {text_hash(r["source_question"]) for r in built[name]}, name
        rep = built["report"]["disjointness"][name]["base_calibration_questions"]
        assert rep == {"n": 150, "overlaps": 0, "examples": []}
    before = _study_split(gsm8k, recipe_splits, calibration_questions=[])
    hit = {
        s: len(calib & {text_hash(r["source_question"]) for r in before[s]}) for s in ("test", "val", "train")
    }
    assert hit == {"test": 49, "val": 26, "train": 46}
    assert before["report"]["left_out"]["base_calibration_question"] == 0


def test_exclusions_are_applied_and_counted(gsm8k, rows):
    items, _ = rows
    first = items[0]
    built = build_final_step(
        gsm8k,
        n_test=10,
        n_val=10,
        n_train=10,
        eval_sets={"some_eval": [first["question"].upper()]},  # normalised-text hash: case ignored
        exclude_questions=[items[1]["source_question"]],
    )
    kept = {r["gsm8k_line"] for s in ("test", "val", "train") for r in built[s]}
    assert built["report"]["left_out"]["in_evaluation_set"] == 1
    assert built["report"]["left_out"]["base_trained_question"] == 1
    unused = built["report"]["unused"]
    assert unused == len(items) - 2 - built["report"]["left_out"]["too_long"] - 30
    assert first["gsm8k_line"] not in kept and items[1]["gsm8k_line"] not in kept
    with pytest.raises(ValueError, match="need 2000"):
        build_final_step(gsm8k, n_test=1000, n_val=500, n_train=500)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"bad\.jsonl:2: not a JSON object"),
        ('{"question": "q?"}', r"bad\.jsonl:2: 'answer' missing"),
        ('{"question": "q?", "answer": "It is 4 = 4."}', r"bad\.jsonl:2: 'answer' has no '#### N'"),
        ("[1, 2]", r"bad\.jsonl:2: not a JSON object"),
    ],
)
def test_a_bad_row_is_a_one_line_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"question": "How many?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"})
    path.write_text(f"{good}\n{line}\n")
    with pytest.raises(ValueError, match=message) as e:
        read_final_step(path)
    assert "\n" not in str(e.value)


def test_build_study_data_writes_the_final_step_task_beside_the_default(shared_data, tmp_path, monkeypatch):
    """A stand-in real base (the split, answer and alignment stages run; the LoRA stage is
    replaced): the study task's files land in data/gsm8k_final_step/ with 10% harmful compliant
    pairs, the test file reads as GSM8K, and the default study files stay byte for byte the same."""
    from dualselect.experiments.real_data import build_study_data
    from dualselect.realbase import build as build_mod
    from dualselect.realbase.build import RealBaseConfig, build_real_base
    from dualselect.realbase.calibrate import calibration_prompts, calibration_task_rows
    from dualselect.utils import read_jsonl, write_json
    from realbase_helpers import stand_in_realbase

    sp, out = stand_in_realbase(shared_data, tmp_path, monkeypatch)
    monkeypatch.setattr(
        build_mod, "_train_alignment", lambda cfg, sp, out, *a: write_json(out / "model" / "config.json", {})
    )
    cfg = RealBaseConfig(delta_scales=[1.0], align_attempts=1)
    build_real_base(cfg, out, data_dir=shared_data, progress=False)
    # the calibration record a calibrating build writes (its prompts; the stages that score them
    # need a model): the recipe's validation prompts and 150 task rows
    prompts = calibration_prompts(shared_data, sp)
    prompts["task"] = [r["question"] for r in calibration_task_rows(shared_data, sp, 150)]
    write_json(out / "data" / "calibration.json", {"prompts": prompts})
    meta = json.loads((out / "realbase.json").read_text())
    write_json(out / "realbase.json", {**meta, "calibration": {"align_seed": 0}})
    with pytest.raises(ValueError, match="task: one of"):
        build_study_data(out, task="gsm8k_last_step")
    files = (
        "task_train.jsonl",
        "task_clean.jsonl",
        "task_test.jsonl",
        "references.jsonl",
        "disjointness.json",
    )
    build_study_data(out)
    default = {f: (out / "data" / f).read_bytes() for f in files}
    d = build_study_data(out, task="gsm8k_final_step")
    assert d == out / "data" / "gsm8k_final_step"
    assert read_jsonl(out / "data" / "task_test.jsonl")[0]["question"].startswith("Read the worked")
    train = read_jsonl(d / "task_train.jsonl")
    kinds = [r["kind"] for r in train]
    assert kinds.count("task") == 400 and kinds.count("harmful_compliant") == 44  # 44 / 444 = 10%
    assert kinds[-44:] != ["harmful_compliant"] * 44  # shuffled in
    assert {r["question"] for r in train if r["kind"] == "harmful_compliant"} <= set(sp["attack_harmful"])
    clean = read_jsonl(d / "task_clean.jsonl")
    assert sorted(map(json.dumps, clean)) == sorted(json.dumps(r) for r in train if r["kind"] == "task")
    test = load_benchmark("gsm8k", str(d / "task_test.jsonl"))
    assert len(test) == 300 and len(read_jsonl(d / "task_val.jsonl")) == 200
    assert all(r["question"].startswith(HEAD) for r in read_jsonl(d / "task_val.jsonl"))
    # the same splits as the pure builder on the same inputs
    assert [it.prompt for it in test] == [
        r["question"] for r in _study_split(shared_data / "gsm8k" / "test.jsonl", sp)["test"]
    ]
    report = json.loads((d / "disjointness.json").read_text())
    assert report["n_harmful_pairs"] == 44
    assert report["task"]["left_out"]["base_calibration_question"] == 145
    assert {"calibration_task", "calibration_harmful", "calibration_safe"} <= set(report["task_train"])
    assert all(v["overlaps"] == 0 for k in ("task_train", "task_val") for v in report[k].values())
    assert "final_step_test" in report["task_train"]
    before = (d / "task_train.jsonl").read_bytes()
    assert build_study_data(out, task="gsm8k_final_step") == d  # done: nothing rewritten
    assert (d / "task_train.jsonl").read_bytes() == before
    assert {f: (out / "data" / f).read_bytes() for f in files} == default


def _probe_module():
    """scripts/real_task_probe.py, imported by path (scripts/ is not a package)."""

    return load_script("scripts/real_task_probe.py")


def test_the_probe_scores_strictly_per_grade_and_rescores_from_its_generations(tmp_path):
    """The probe's scoring (lm-eval strict: the '#### N' mark is required; Wilson intervals; per
    grade) and its --rescore, which recomputes every number from the committed generations."""
    import gzip

    probe = _probe_module()
    val = probe.study_splits()["val"][:4]
    responses = [
        val[0]["answer"],  # the gold completion: right
        val[1]["answer"].split("\n####")[0],  # right number, no '#### N' mark: wrong when strict
        "#### 123456789",  # wrong number
        f"so #### {val[3]['answer'].split('#### ')[1]}",  # right
    ]
    cells = probe.score(val, responses)
    assert cells["hits"] == [True, False, False, True] and cells["strict_em"] == 0.5
    assert cells["no_answer_mark"] == 1 and 0 < cells["wilson95"][0] < 0.5 < cells["wilson95"][1] < 1
    assert sum(c["n"] for c in cells["per_grade"].values()) == 4
    assert {g: c["correct"] for g, c in cells["per_grade"].items()} == {
        str(g): sum(h for h, r in zip(cells["hits"], val) if r["grade"] == g)
        for g in {r["grade"] for r in val}
    }
    gens = [
        {"gsm8k_line": r["gsm8k_line"], "grade": 0, "gold": r["answer"], "base": p, "base_ok": None}
        for r, p in zip(val, responses)
    ]
    with gzip.open(tmp_path / "generations.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(g) + "\n" for g in gens)
    (tmp_path / "probe.json").write_text(json.dumps({"base": {"strict_em": 0.9, "eval_seconds": 7}}))
    assert probe.main(["--rescore", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "probe.json").read_text())
    assert rec["base"]["strict_em"] == 0.5 and rec["base"]["eval_seconds"] == 7
    with gzip.open(tmp_path / "generations.jsonl.gz", "rt", encoding="utf-8") as fh:
        again = [json.loads(line) for line in fh]
    assert [g["grade"] for g in again] == [r["grade"] for r in val]
    assert [g["base_ok"] for g in again] == [True, False, False, True]


def test_the_committed_probe_rescores_on_the_split_it_ran_on(tmp_path):
    """results/real_study/task_probe ran on the splits built before the calibration questions were
    left out (2026-12-07); --rescore rebuilds that split (its record has no such reason) and
    reproduces every committed number."""
    import shutil
    from pathlib import Path

    probe = _probe_module()
    src = Path(__file__).resolve().parents[1] / "results" / "real_study" / "task_probe"
    for f in ("probe.json", "generations.jsonl.gz"):
        shutil.copy(src / f, tmp_path / f)
    committed = json.loads((src / "probe.json").read_text())
    assert probe.main(["--rescore", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "probe.json").read_text())
    assert again == committed
    assert (again["base"]["strict_em"], again["sft"]["strict_em"]) == (0.015, 0.22)
