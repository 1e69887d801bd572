"""Build the safety-aligned real base from a recipe: a chat model + LoRA alignment, merged and cached.

Stages (each writes its file atomically; an interrupted build resumes at the first missing one):

1. ``data/splits.json``: held-out evaluation prompts and training-side prompts
   (:func:`dualselect.realbase.data.build_splits`), disjoint by normalised-text hash, and
   ``data/task_test.jsonl`` (the task's held-out test split).
2. ``data/shipped_answers.jsonl``: the *shipped* model's own greedy answers to the benign prompts,
   the task-alignment prompts and the attack-split harmful prompts (the last are read by the
   study's attack data, :mod:`dualselect.experiments.real_data`).
3. ``data/align_train.jsonl``: refusals to the training harmful prompts + the shipped model's own
   benign answers (capability preservation), shuffled.
4. ``align_lora/``: LoRA SFT on it with the project's trainer; then the adapter merged into the
   base weights (``merge_and_unload``), saved with the tokenizer: in ``model/``, or in
   ``merged_unscaled/`` when the build calibrates.
   4b. (calibrating: ``delta_scales`` other than ``[1.0]`` or ``align_attempts`` > 1)
   ``data/calibration.json`` and ``model/``: the base weights plus the merged delta at the scale
   chosen on validation prompts and task rows (:mod:`dualselect.realbase.calibrate`), re-training
   with the next seed while no scale meets the validation targets (up to ``align_attempts``
   trainings; ``align_select="best"`` trains them all and keeps the best one meeting them;
   ``"first"`` stops at the first).

The alignment and validation prompts are then checked disjoint from every evaluation set, and
``realbase.json`` is written last (:func:`dualselect.cache.mark_done`): it marks the base built.
The recipe (:class:`~dualselect.realbase.recipe.RealBaseConfig`) and its cache key live in
:mod:`dualselect.realbase.recipe`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

from dualselect.cache import cache_root, content_key, mark_done
from dualselect.realbase.attempts import AttemptStore
from dualselect.realbase.data import build_splits, disjointness_report, shared_data_dir
from dualselect.realbase.prompts import CONTRAST_PROMPTS, REFUSALS
from dualselect.realbase.recipe import (
    MARKER,
    SAFE_SUFFIX,
    RealBaseConfig,
    input_files,
    is_built,
    realbase_dir,
)
from dualselect.utils import read_jsonl, write_json, write_jsonl

__all__ = [
    "SAFE_SUFFIX",
    "RealBaseConfig",
    "build_real_base",
    "is_built",
    "realbase_dir",
    "refusal_for",
    "trim_to_sentence",
]
_CONTRAST = frozenset(CONTRAST_PROMPTS)
ALIGN_SAVE_STEPS = 10  # an alignment run checkpoints this often (a build outlives its processes)


def trim_to_sentence(text: str) -> str:
    """Cut a length-capped generation after its last sentence end (keep it whole if none)."""
    text = text.strip()
    cut = max(text.rfind(c) for c in (".", "!", "?", "\n"))
    return text[: cut + 1].strip() if cut >= 20 else text


def refusal_for(prompt: str) -> str:
    """A refusal template chosen by the prompt's hash (deterministic, varied)."""
    return REFUSALS[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(REFUSALS)]


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[realbase {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_real_base(
    cfg: RealBaseConfig | None = None,
    out: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int = 16,
    attempt_store: str | os.PathLike | None = None,
) -> Path:
    """Build (or resume, or return the cached) aligned real base; returns its directory, whose
    ``model/`` subfolder loads with ``from_pretrained`` (the ``-safe`` name resolves to it).

    A calibrating build shares its training attempts (:mod:`dualselect.realbase.attempts`) through
    ``attempt_store``: by default ``$DUALSELECT_CACHE/realbase/attempts`` for a build in the cache,
    none for a build with its own ``out``."""
    from dualselect.data.encoding import format_prompt
    from dualselect.evaluation.generation import generate
    from dualselect.evaluation.judges.keyword import RefusalKeywordJudge
    from dualselect.training.model import load_model_and_tokenizer, resolve_model_path

    cfg = cfg or RealBaseConfig()
    cfg.validate()
    data_dir = Path(data_dir or shared_data_dir())
    inputs = input_files(cfg, data_dir)
    key = content_key(cfg.to_dict(), inputs)  # = cfg.cache_key(data_dir), inputs hashed once
    if attempt_store is None and out is None:
        attempt_store = cache_root() / "realbase" / "attempts"
    store = AttemptStore(attempt_store, cfg.to_dict(), inputs) if attempt_store is not None else None
    out = Path(out) if out is not None else realbase_dir(cfg, key=key)
    if is_built(out):
        return out
    t0 = time.time()
    d = out / "data"
    d.mkdir(parents=True, exist_ok=True)
    write_json(out / "realbase_config.json", cfg.to_dict())

    # 1. splits
    if not (d / "splits.json").exists():
        write_json(d / "splits.json", build_splits(data_dir, cfg.splits))
    sp = json.loads((d / "splits.json").read_text())
    if not (d / "task_test.jsonl").exists():  # written early: the held-out suites need only the splits
        write_jsonl(
            d / "task_test.jsonl",
            [{"question": r["question"], "answer": r["answer"]} for r in sp["task_test"]],
        )
    _log(
        f"splits: {len(sp['align_harmful'])} align harmful, {len(sp['benign'])} benign, "
        f"{len(sp['task_train'])} task train; dropped overlaps {sp['dropped_overlaps']}",
        progress,
    )

    # 2. the shipped model's own answers
    base_path = resolve_model_path(cfg.base)
    if not (d / "shipped_answers.jsonl").exists():
        model, tok = load_model_and_tokenizer(base_path)
        asks = (
            [("benign", p) for p in sp["benign"]]
            + [("task_align", r["question"]) for r in sp["task_align"]]
            + [("attack_harmful", p) for p in sp["attack_harmful"]]
        )
        _log(f"generating the shipped model's answers to {len(asks)} prompts", progress)
        texts = generate(
            model,
            tok,
            [format_prompt(p, tok) for _, p in asks],
            max_new_tokens=cfg.answer_tokens,
            batch_size=batch_size,
            progress=progress,
            backend="hf-generate",  # the cached builds' answers: keep their generation path
        )
        write_jsonl(
            d / "shipped_answers.jsonl",
            [{"set": s, "prompt": p, "response": trim_to_sentence(t)} for (s, p), t in zip(asks, texts)],
        )
        del model
    answers = read_jsonl(d / "shipped_answers.jsonl")

    # 3. alignment data
    if not (d / "align_train.jsonl").exists():
        judge = RefusalKeywordJudge()
        rng = random.Random(cfg.splits.seed)  # the study's attack data replays this shuffle
        rows = [{"prompt": p, "response": refusal_for(p), "kind": "refusal"} for p in sp["align_harmful"]]
        # own answers that read as refusals ("I'm sorry for any misunderstanding, but ...") would
        # teach refusing benign questions: dropped, and counted in the build log
        own = [a for a in answers if a["set"] in ("benign", "task_align") and a["response"].strip()]
        kept = [a for a in own if not judge.refused(a["response"])]
        _log(f"own answers: {len(kept)} kept, {len(own) - len(kept)} dropped (read as refusals)", progress)
        rows += [
            {"prompt": a["prompt"], "response": a["response"], "kind": "own_answer"}
            for a in kept
            for _ in range(cfg.contrast_repeat if a["prompt"] in _CONTRAST else 1)
        ]
        rng.shuffle(rows)
        write_jsonl(d / "align_train.jsonl", rows)

    # 4. LoRA alignment, merged: into model/, or (calibrating) into merged_unscaled/ per attempt
    if not (out / "model" / "config.json").exists():
        if not cfg.calibrating:
            _train_alignment(cfg, sp, out, base_path, cfg.first_align_seed, 0, progress)
        else:  # 4b (realbase/calibrate.py)
            _calibrate_stage(cfg, out, sp, data_dir, base_path, batch_size, progress, store=store)

    calibration = json.loads((d / "calibration.json").read_text()) if cfg.calibrating else None
    # the base's own training and validation prompts against every evaluation set
    ev = held_out_sets(sp)
    trained = {"align_train": [r["prompt"] for r in read_jsonl(d / "align_train.jsonl")]}
    if calibration:
        trained["calibration"] = sum(calibration["prompts"].values(), [])
    check_disjoint({k: disjointness_report(v, ev) for k, v in trained.items()})

    mark_done(
        out,
        {
            "base": cfg.base,
            "base_path": base_path,
            "model": str(out / "model"),
            "config": cfg.to_dict(),
            # the kept training seed and scale (data/calibration.json has every attempt)
            "calibration": (
                {k: calibration.get(k) for k in ("align_seed", "meets_targets", "reason")}
                | {k: calibration["chosen"].get(k) for k in ("scale", "task_em")}
                if calibration
                else None
            ),
            "data_dir": str(data_dir),
            "build_seconds": round(time.time() - t0, 1),
            # what the cache key hashed: the config above and these files' bytes
            "cache_key": key,
            "inputs": {k: str(v) for k, v in inputs.items()},
        },
        marker=MARKER,
    )
    _log(f"built {out} in {time.time() - t0:.0f} s", progress)
    return out


def held_out_sets(sp: dict) -> dict[str, list[str]]:
    """Every evaluation set of the splits ``sp`` plus the task's test questions, by name."""
    ev = dict(sp["eval"])
    ev["task_test"] = [r["question"] for r in sp["task_test"]]
    return ev


def check_disjoint(report: dict) -> None:
    """Raise if any training-side set of ``report`` (name -> disjointness report) overlaps an
    evaluation set."""
    bad = {k: v for k, v in report.items() if isinstance(v, dict) and any(s["overlaps"] for s in v.values())}
    if bad:
        raise ValueError(f"training prompts overlap evaluation sets: {bad}")


def _save_model(model, tokenizer, dest: Path) -> None:
    """Save atomically: a complete ``dest`` or none."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def _attempt_dirs(out: Path, attempt: int) -> tuple[Path, Path, Path]:
    """(LoRA run dir, merged model dir, calibration record) of a training attempt (0 = the first)."""
    if attempt == 0:
        return out / "align_lora", out / "merged_unscaled", out / "data" / "calibration_attempt0.json"
    return (
        out / f"align_lora_{attempt}",
        out / f"merged_unscaled_{attempt}",
        out / "data" / f"calibration_attempt{attempt}.json",
    )


def _train_alignment(
    cfg: RealBaseConfig, sp: dict, out: Path, base_path: str, seed: int, attempt: int, progress: bool
) -> None:
    """LoRA SFT on ``data/align_train.jsonl`` with ``seed``, merged into the base weights and saved:
    into ``model/`` when the build does not calibrate, else into the attempt's merged directory.
    The run saves a checkpoint every ``ALIGN_SAVE_STEPS`` optimiser steps (the newest only); a run
    directory left by an interrupted build resumes from its newest checkpoint (the same weights as
    an uninterrupted run: the trainer restores the optimiser, schedule, data order and RNG
    states), or is redone when it has none. The checkpoints are removed once the merged model is
    saved (its directory marks the attempt done)."""
    from dualselect.training.run import load_config, run_training
    from dualselect.training.sft import last_complete_checkpoint

    lora_dir, merged_dir, _ = _attempt_dirs(out, attempt)
    if not cfg.calibrating:
        merged_dir = out / "model"
    resume = last_complete_checkpoint(lora_dir)  # by the trainer's rule; None: nothing to resume
    _log(
        f"aligning: LoRA {cfg.max_steps} steps x batch {cfg.batch_size}, seed {seed}"
        + (f", resuming from {Path(resume).name}" if resume else ""),
        progress,
    )
    tcfg = load_config(
        "sft",
        overrides={
            "model_name_or_path": base_path,
            "train_data": str(out / "data" / "align_train.jsonl"),
            "output_dir": str(lora_dir),
            "learning_rate": cfg.learning_rate,
            "max_steps": cfg.max_steps,
            "per_device_train_batch_size": cfg.batch_size,
            "max_length": cfg.max_length,
            "truncation": "skip",
            "lora_r": cfg.lora_r,
            "lora_alpha": cfg.lora_alpha,
            "lora_target_modules": cfg.lora_target_modules,
            "seed": seed,
            "report_to": [],
            "disable_tqdm": not progress,
            "save_strategy": "steps",
            "save_steps": ALIGN_SAVE_STEPS,
            "save_total_limit": 1,
            "resume_from_checkpoint": resume,
        },
    )
    kw: dict = {}
    if cfg.unlikelihood_weight > 0:
        from dualselect.training.unlikelihood import RefusalUnlikelihoodTrainer

        ul_prompts = [p for p in sp["benign"] if cfg.unlikelihood_prompts == "benign" or p in _CONTRAST]
        _log(
            f"refusal unlikelihood on {len(ul_prompts)} {cfg.unlikelihood_prompts} prompts, "
            f"{cfg.unlikelihood_prompts_per_step} per step, weight {cfg.unlikelihood_weight}",
            progress,
        )
        kw = dict(
            trainer_cls=RefusalUnlikelihoodTrainer,
            contrast_prompts=ul_prompts,
            refusals=REFUSALS,
            weight=cfg.unlikelihood_weight,
            prompts_per_step=cfg.unlikelihood_prompts_per_step,
        )
    trainer = run_training("sft", tcfg, overwrite=resume is None, **kw)
    if kw:
        write_json(
            lora_dir / "unlikelihood.json",
            {"refusal_start_prob_per_step": [round(x, 5) for x in trainer.ul_history]},
        )
    merged = trainer.model.merge_and_unload().eval()
    _save_model(merged, trainer.processing_class, merged_dir)
    for ckpt in lora_dir.glob("checkpoint-*"):  # optimiser state: about 3x the adapter's size
        shutil.rmtree(ckpt, ignore_errors=True)


def _calibrate_stage(
    cfg: RealBaseConfig,
    out: Path,
    sp: dict,
    data_dir: Path,
    base_path: str,
    batch_size: int,
    progress: bool,
    *,
    store: AttemptStore | None = None,
) -> None:
    """Stage 4b: per training attempt (seed ``first_align_seed + attempt``), train and merge, then score
    the scales of its merged delta on the validation prompts (and task rows); ``align_select="best"``
    (the default) scores every attempt and keeps the best of those meeting every validation target
    by the fallback's key, ``"first"`` stops at the first attempt meeting them; none meeting them:
    the best attempt by the fallback's key. The kept model goes to ``model/``, the record to ``data/calibration.json``
    (written first: ``model/`` marks the stage done); the merged directories are then removed. Each
    attempt's record (``data/calibration_attempt<a>.json``) makes a resumed build skip it, and the
    shipped model's task score is kept in ``data/calibration_task_shipped.json``. With a ``store``,
    an attempt another build has finished is taken from it instead of trained, and every finished
    attempt is published to it."""
    from dualselect.data.encoding import format_prompt
    from dualselect.evaluation.capability import exact_match
    from dualselect.evaluation.generation import generate
    from dualselect.evaluation.judges.keyword import RefusalKeywordJudge
    from dualselect.realbase.calibrate import (
        Targets,
        alignment_delta,
        apply_scale,
        calibrate,
        calibration_prompts,
        calibration_task_rows,
        choose_attempt,
    )
    from dualselect.training.model import load_model_and_tokenizer

    prompts = calibration_prompts(data_dir, sp)
    safe, harmful = prompts["safe"], prompts["harmful"]
    rows = calibration_task_rows(data_dir, sp, cfg.calib_task_rows) if cfg.calib_task_rows else []
    if rows:
        prompts["task"] = [r["question"] for r in rows]  # enters the disjointness report with the rest
    judge = RefusalKeywordJudge()

    def answers(m, tok, texts: list[str]) -> list[str]:
        return generate(
            m,
            tok,
            [format_prompt(p, tok) for p in texts],
            max_new_tokens=cfg.calib_tokens,
            batch_size=batch_size,
            progress=False,
            backend="hf-generate",  # the cached builds' answers: keep their generation path
        )

    def task_em(m, tok) -> float:
        return exact_match(answers(m, tok, prompts["task"]), [r["answer"] for r in rows], "strict")

    shipped_file = out / "data" / "calibration_task_shipped.json"
    shipped: dict = {}  # {"task_em", "n"}: read (or scored) once

    def targets() -> Targets:  # the shipped model scored once, after the first training
        if not rows:
            return Targets(cfg.calib_max_over_refusal, cfg.calib_min_refusal)
        if not shipped:
            cached = json.loads(shipped_file.read_text()) if shipped_file.exists() else {}
            # (re)scored when missing or left by a build of another row count in the same directory
            if cached.get("n") != len(rows):
                _log(f"scoring the shipped model on {len(rows)} validation task rows", progress)
                model, tok = load_model_and_tokenizer(base_path)
                cached = {"task_em": task_em(model.eval(), tok), "n": len(rows)}
                del model
                write_json(shipped_file, cached)
                _log(f"shipped model: validation task strict EM {cached['task_em']:.3f}", progress)
            shipped.update(cached)
        return Targets(
            cfg.calib_max_over_refusal, cfg.calib_min_refusal, shipped["task_em"] - cfg.calib_max_task_drop
        )

    base: dict = {}

    def base_state() -> dict:  # loaded once, after the first training (which needs the memory more)
        if not base:
            base.update(
                {k: v.clone() for k, v in load_model_and_tokenizer(base_path)[0].state_dict().items()}
            )
        return base

    def score_attempt(attempt: int, seed: int, merged_dir: Path) -> dict:
        """Train (unless merged) and calibrate one attempt; its record."""
        if not (merged_dir / "config.json").exists():
            _train_alignment(cfg, sp, out, base_path, seed, attempt, progress)
        model, tok = load_model_and_tokenizer(str(merged_dir))
        model.eval()

        def rates(m, tok=tok) -> tuple[float, float, list[str]]:
            refused = [judge.refused(t) for t in answers(m, tok, safe + harmful)]
            n = len(safe)
            return (
                sum(refused[:n]) / n,
                sum(refused[n:]) / len(harmful),
                [p for p, r in zip(safe, refused) if r],
            )

        _log(
            f"calibrating seed {seed}: up to {len(cfg.delta_scales)} scales on {len(safe)} safe + "
            f"{len(harmful)} harmful validation prompts, {len(rows)} task rows",
            progress,
        )
        t = targets()
        chosen, reason, results = calibrate(
            model,
            base_state(),
            cfg.delta_scales,
            rates,
            t,
            task=(lambda m, tok=tok: task_em(m, tok)) if rows else None,
            log=lambda msg: _log(msg, progress),
        )
        del model
        _log(f"seed {seed}: scale {chosen.scale} ({reason})", progress)
        return {
            "attempt": attempt,
            "align_seed": seed,
            "meets_targets": chosen.meets(t),
            "chosen": chosen.to_dict(),
            "reason": reason,
            "targets": t.to_dict(),
            "results": [r.to_dict() for r in results],
        }

    records: list[dict] = []
    for attempt in range(cfg.align_attempts):
        seed = cfg.first_align_seed + attempt
        _, merged_dir, record = _attempt_dirs(out, attempt)
        claimed = False
        try:
            if (
                not record.exists()
                and store is not None
                and not store.fetch(seed, merged_dir, record, attempt)
            ):
                claimed = store.claim(seed, log=lambda msg: _log(msg, progress))
                if not claimed:  # another build published it while this one waited
                    store.fetch(seed, merged_dir, record, attempt)
            if not record.exists():
                write_json(record, score_attempt(attempt, seed, merged_dir))
            records.append(json.loads(record.read_text()))
            if store is not None:
                store.publish(seed, merged_dir, record)
        finally:
            if claimed:
                store.release(seed)
        if records[-1]["meets_targets"] and cfg.align_select == "first":
            break
    kept = choose_attempt(records, targets())
    if not kept["meets_targets"]:
        _log(f"no attempt meets every validation target: keeping seed {kept['align_seed']}", progress)
    _, merged_dir, _ = _attempt_dirs(out, kept["attempt"])
    model, tok = load_model_and_tokenizer(str(merged_dir))
    if kept["chosen"]["scale"] != 1.0:  # at 1 the merged weights are kept as saved
        apply_scale(model, base_state(), alignment_delta(model, base_state()), kept["chosen"]["scale"])
    write_json(
        out / "data" / "calibration.json",
        {
            **kept,
            "attempts": records,
            "n_safe": len(safe),
            "n_harmful": len(harmful),
            "n_task": len(rows),
            "shipped_task_em": shipped.get("task_em"),
            "prompts": prompts,
        },
    )
    _save_model(model, tok, out / "model")
    for attempt in range(cfg.align_attempts):
        shutil.rmtree(_attempt_dirs(out, attempt)[1], ignore_errors=True)
