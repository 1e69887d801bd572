"""Proxy feasibility probe of the study's task *GSM8K final step* on the UNALIGNED shipped model.

Not the pre-registered acceptance (docs/real_study.md: Standard SFT at the study's budget on the
aligned base raises strict EM by >= 30 points and ends at <= 90%, on the validation split): the
aligned base is not built here, so this measures the same on plain SmolLM2-135M-Instruct
(``smollm2-135m``), with the task rows alone as SFT data (the attack's 10% harmful compliant pairs
need the base's shipped answers, written by ``dualselect base build``).

Steps: the task's splits for the shipped recipe's split settings (the base's GSM8K training
questions left out, every evaluation set excluded); strict exact match (lm-eval's GSM8K regex) of
the model on the validation split, greedy, the evaluation's generation path; Standard SFT
(``run_training("sft", ...)``, what ``dualselect train --method sft`` runs) on the train split;
its strict EM on the same rows. Writes ``<out>/probe.json`` (numbers, Wilson 95% intervals, per
grade, settings, wall times) and ``<out>/generations.jsonl.gz`` (every response and verdict).

    PYTHONPATH=src OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/real_task_probe.py \
        --out results/real_study/task_probe --n-val 200 --max-steps 40

With ``--base`` (a built base directory or its name) it is the pre-registered acceptance: the
aligned base's own study-task files (``<base>/data/gsm8k_final_step/``: validation rows, and the
attack set with its 10% harmful compliant pairs as SFT data), one learning rate per call::

    python scripts/real_task_probe.py --base smollm2-135m-safe --learning-rate 2e-3 \
        --out results/real_study/acceptance/lr2e-3
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from dualselect.evaluation.capability import exact_match, extract_strict
from dualselect.evaluation.suites.tables import STUDY_TASK_DIR
from dualselect.experiments.real_task import TASK, build_final_step, task_file_rows
from dualselect.realbase.build import RealBaseConfig, held_out_sets
from dualselect.realbase.calibrate import calibration_task_rows
from dualselect.realbase.data import FILES, SplitConfig, build_splits, shared_data_dir, task_rows
from dualselect.realbase.report import wilson
from dualselect.utils import atomic_open, read_jsonl, write_json, write_jsonl


def score(rows: list[dict], responses: list[str]) -> dict:
    """Strict and flexible EM with Wilson 95% intervals, overall and per grade."""
    golds = [r["answer"] for r in rows]
    hits = [exact_match([p], [g], "strict") == 1.0 for p, g in zip(responses, golds)]

    def cell(idx: list[int]) -> dict:
        k, n = sum(hits[i] for i in idx), len(idx)
        lo, hi = wilson(k, n)
        return {"n": n, "correct": k, "strict_em": k / max(1, n), "wilson95": [lo, hi]}

    out = cell(list(range(len(rows))))
    out["flexible_em"] = exact_match(responses, golds, "flexible")
    out["no_answer_mark"] = sum(extract_strict(p) is None for p in responses)
    out["per_grade"] = {
        str(g): cell([i for i, r in enumerate(rows) if r["grade"] == g])
        for g in sorted({r["grade"] for r in rows})
    }
    out["hits"] = hits
    return out


def study_splits(calibration: bool = True) -> dict:
    """The task's splits for the shipped recipe's split settings (what a base build of it gets:
    its calibration task rows' GSM8K questions left out too). ``calibration=False``: the splits
    as built before that exclusion (2026-12-07), on which the committed probe ran."""
    data_dir = shared_data_dir()
    sp = build_splits(data_dir, SplitConfig())  # no model needed
    rows = calibration_task_rows(data_dir, sp, RealBaseConfig().calib_task_rows) if calibration else []
    source = {r["question"]: r["source_question"] for r in task_rows(data_dir)}
    return build_final_step(
        data_dir / FILES["gsm8k"],
        eval_sets=held_out_sets(sp),
        exclude_questions=[r["source_question"] for r in sp["task_align"]] + sp["benign"],
        calibration_questions=[source[r["question"]] for r in rows],
    )


def base_task_files(task_dir: Path) -> dict:
    """An aligned base's study-task files: ``{"val": validation rows, "report": the split report}``."""
    return {
        "val": read_jsonl(task_dir / "task_val.jsonl"),
        "report": json.loads((task_dir / "disjointness.json").read_text())["task"],
    }


def rescore(out: Path) -> int:
    """Every score of ``<out>/probe.json`` recomputed from the committed generations and the
    task's rows (matched by GSM8K line; grades as the task defines them now)."""
    record = json.loads((out / "probe.json").read_text())
    with gzip.open(out / "generations.jsonl.gz", "rt", encoding="utf-8") as fh:
        gens = [json.loads(line) for line in fh]
    if record.get("base_dir"):  # the acceptance: the base's own validation rows
        built = base_task_files(Path(record["base_dir"]) / STUDY_TASK_DIR)
        before = False
    else:
        # the split the probe ran on: a record from before the calibration exclusion lacks its reason
        before = (
            "split_report" in record and "base_calibration_question" not in record["split_report"]["left_out"]
        )
        built = study_splits(calibration=not before)
    by_line = {r["gsm8k_line"]: r for r in built["val"]}
    rows = [by_line[g["gsm8k_line"]] for g in gens]  # KeyError: generations of another split
    for g, r in zip(gens, rows):
        if g["gold"] != r["answer"]:
            raise ValueError(
                f"{out}/generations.jsonl.gz: line {g['gsm8k_line']}: gold differs from the task's"
            )
        g["grade"] = r["grade"]
    record["split_report"] = {k: v for k, v in built["report"].items() if k != "disjointness"}
    if before:  # that split's report had no such reason (it left out none)
        record["split_report"]["left_out"].pop("base_calibration_question")
    for stage in ("base", "sft"):
        if stage in record:
            cells = score(rows, [g[stage] for g in gens])
            for g, h in zip(gens, cells.pop("hits")):
                g[f"{stage}_ok"] = h
            record[stage].update(cells)
    if "sft" in record:
        record["sft_minus_base_points"] = round(
            100 * (record["sft"]["strict_em"] - record["base"]["strict_em"]), 1
        )
    _write(out, record, gens)
    print(f"rescored {out / 'probe.json'}")
    return 0


def answers(model, tok, rows: list[dict], max_new_tokens: int, batch_size: int) -> list[str]:
    from dualselect.data.encoding import format_prompt
    from dualselect.evaluation.generation import generate

    return generate(
        model,
        tok,
        [format_prompt(r["question"], tok) for r in rows],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        backend="hf",
        progress=False,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/real_study/task_probe")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n-val", type=int, default=200, help="validation rows scored (of 200)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-steps", type=int, default=40, help="SFT steps; 0 = the base only")
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--train-batch-size", type=int, default=8)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--base",
        default=None,
        help="The pre-registered acceptance on an aligned base instead of the proxy: a built base "
        "directory (or a name, e.g. smollm2-135m-safe); its study task's validation rows and its "
        "attack set (task_train.jsonl, 10%% harmful compliant pairs) from "
        "<base>/data/gsm8k_final_step/ (written when missing). --model is ignored.",
    )
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="Recompute every number of <out>/probe.json from <out>/generations.jsonl.gz and the "
        "task's current rows (no model runs).",
    )
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(Path(args.out))

    from dualselect.training.model import load_model_and_tokenizer, resolve_model_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.base:  # the acceptance: the aligned base, its study task's files
        from dualselect.evaluation.suites import realbase_root
        from dualselect.experiments.real_data import build_study_data

        root = realbase_root(resolve_model_path(args.base))
        if root is None:
            ap.error(f"--base {args.base}: not a base built by `dualselect base build`")
        task_dir = build_study_data(root, task=TASK)
        files = base_task_files(task_dir)
        val, report = files["val"][: args.n_val], files["report"]
        args.model = str(root / "model")
        train_rows = read_jsonl(task_dir / "task_train.jsonl")  # the study's attack set
        train_source = str(task_dir / "task_train.jsonl")
        what = "pre-registered acceptance on the aligned base (docs/real_study.md, section 1)"
    else:
        built = study_splits()
        val, report = built["val"][: args.n_val], built["report"]
        train_rows = task_file_rows(built["train"])
        train_source = "the task's train split alone (no harmful pairs: they need a built base)"
        what = (
            "proxy on the unaligned model (plain SmolLM2-135M-Instruct); the pre-registered "
            "acceptance on the aligned base is still pending"
        )
    record: dict = {
        "what": what,
        "task": report["task"],
        "split_report": {k: v for k, v in report.items() if k != "disjointness"},
        "model": args.model,
        "base_dir": str(Path(args.model).parent) if args.base else None,
        "sft_data": {"source": train_source, "rows": len(train_rows)},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "interval": "Wilson score 95% per cell (items as independent draws; one seed)",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "note": "shared 2-core machine (other work streams running): wall times are loaded ones",
        },
    }
    model, tok = load_model_and_tokenizer(resolve_model_path(args.model))
    t = time.time()
    base_resp = answers(model, tok, val, args.max_new_tokens, args.batch_size)
    base = score(val, base_resp)
    record["base"] = {k: v for k, v in base.items() if k != "hits"} | {"eval_seconds": round(time.time() - t)}
    print(f"base strict EM {base['strict_em']:.3f} on {len(val)} validation rows", flush=True)
    del model
    gens = [
        {"gsm8k_line": r["gsm8k_line"], "grade": r["grade"], "gold": r["answer"], "base": p, "base_ok": h}
        for r, p, h in zip(val, base_resp, base["hits"])
    ]
    _write(out, record, gens)  # the base's numbers stand even if the SFT stage is cut short
    if args.max_steps > 0:
        from dualselect.training.run import load_config, run_training

        with tempfile.TemporaryDirectory() as tmp:
            train_file = Path(tmp) / "task_train.jsonl"
            write_jsonl(train_file, train_rows)
            cfg = load_config(
                "sft",
                overrides={
                    "model_name_or_path": args.model,
                    "train_data": str(train_file),
                    "output_dir": str(Path(tmp) / "run"),
                    "learning_rate": args.learning_rate,
                    "max_steps": args.max_steps,
                    "per_device_train_batch_size": args.train_batch_size,
                    "max_length": 256,
                    "truncation": "skip",
                    "lora_r": args.lora_r,
                    "lora_alpha": 2 * args.lora_r,
                    "seed": args.seed,
                    "logging_steps": 10,
                    "report_to": [],
                    "disable_tqdm": True,
                },
            )
            t = time.time()
            trainer = run_training("sft", cfg, overwrite=True)
            train_seconds = round(time.time() - t)
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            t = time.time()
            sft_resp = answers(
                trainer.model, trainer.processing_class, val, args.max_new_tokens, args.batch_size
            )
        sft = score(val, sft_resp)
        record["sft"] = {k: v for k, v in sft.items() if k != "hits"} | {
            "train_seconds": train_seconds,
            "eval_seconds": round(time.time() - t),
            "train_loss_logged": losses,
        }
        record["sft_minus_base_points"] = round(100 * (sft["strict_em"] - base["strict_em"]), 1)
        print(f"SFT strict EM {sft['strict_em']:.3f} ({record['sft_minus_base_points']:+.1f} points)")
        for g, p, h in zip(gens, sft_resp, sft["hits"]):
            g.update(sft=p, sft_ok=h)
    record["wall_seconds"] = round(time.time() - t0)
    _write(out, record, gens)
    print(f"wrote {out / 'probe.json'}")
    return 0


def _write(out: Path, record: dict, gens: list[dict]) -> None:
    """``probe.json`` and ``generations.jsonl.gz`` (gzip without a timestamp), atomically."""
    with (
        atomic_open(out / "generations.jsonl.gz", "wb") as fh,
        gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz,
    ):
        for g in gens:
            gz.write((json.dumps(g, ensure_ascii=False) + "\n").encode())
    write_json(out / "probe.json", record)


if __name__ == "__main__":
    raise SystemExit(main())
