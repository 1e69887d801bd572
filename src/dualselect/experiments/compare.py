"""`dualselect compare`: methods x organism instances x training seeds, evaluated alike, one table.

On the organism the default runs every method on 3 organism instances (the organism built with
training seeds 0, 1, 2 on the same world, so the probes are identical and only the base weights
differ, as they do across machines) x 3 training seeds. Every run lives in
``OUT/runs/<method>/org<o>/seed<k>/`` (``OUT/runs/<method>/seed<k>/`` for a model that is not the
organism); its ``metrics.json`` is written last and atomically, so an interrupted compare resumes
where it stopped and never redoes a finished run. Runs go seed-major (every method on every
organism for seed 0 first), so a partial run is balanced. Each run trains and evaluates in a fresh
spawned process, so its wall time and peak memory (max RSS) are its own; ``jobs`` runs that many at
once. A resumed compare may add or drop methods, seeds and organism instances (a finished run is
re-used when its own settings are unchanged); any other change is refused.

Every run is scored on the test probes (template and generalisation) and on the validation
probes; ``tune`` picks a setting among candidate methods on the validation metrics only and
reports the chosen one's test metrics as its own row.

On any other model (a local model directory or a cached hub id), ``benchmarks:`` names the
evaluation sets (:mod:`dualselect.evaluation.suites`: HarmBench, StrongREJECT, AdvBench,
XSTest, HH-RLHF, GSM8K, ... from their published files, with per-set limits and budgets) and
``train_dataset`` / ``reference_dataset`` the data (anything ``dualselect train`` reads). The whole
config is checked before the first run trains: benchmark names, files and limits, judges (the
first one gives the headline numbers and must be able to run here; unavailable others are
reported, never dropped silently), the safety and capability metric names, the model path, the
data paths and every method's training config.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

from dualselect.experiments.compare_config import CompareConfig
from dualselect.experiments.compare_runs import (
    check_compare,
    ensure_study_data,
    eval_suites,
    organism_path,
    realbase_dir,
    run_overrides,
)
from dualselect.utils import warn, write_json

BASE_ROW = "base"  # the model before fine-tuning, beside the methods (evaluate_base)


def run_processes(ctx, tasks: list[tuple[str, Any, tuple]], jobs: int, on_done=None) -> list[tuple[str, int]]:
    """Run ``tasks`` (``(label, target, args)``), each in its own process of ``ctx``, at most
    ``jobs`` at once, in order. After the first failure no new task starts; the running ones
    finish (their results are kept). Returns the failures as ``(label, exit code)``;
    ``on_done(label)`` is called as each task ends."""
    from multiprocessing.connection import wait

    queue, running, failed = list(tasks), [], []
    while running or (queue and not failed):
        while queue and not failed and len(running) < jobs:
            label, target, args = queue.pop(0)
            p = ctx.Process(target=target, args=args)
            p.start()
            running.append((label, p))
        wait([p.sentinel for _, p in running])
        for label, p in [r for r in running if not r[1].is_alive()]:
            p.join()
            running.remove((label, p))
            if p.exitcode != 0:
                failed.append((label, p.exitcode))
            if on_done is not None:
                on_done(label)
    return failed


def _child_threads(jobs: int) -> None:
    """With several runs at once, each child takes its share of the cores (OMP_NUM_THREADS, when
    set, decides instead)."""
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))


def _run_one(cfg_dict: dict, method: str, seed: int, run_dir: str, org: int | None = None) -> None:
    """Child process: train, evaluate, write metrics.json (last, atomically)."""
    from dualselect.experiments.helpful_pool import ensure_helpful_pool
    from dualselect.organism.stats import GEN_SPLITS, VALIDATION_SPLITS
    from dualselect.training.run import load_config, run_training

    cfg = CompareConfig.from_dict(cfg_dict)
    _child_threads(cfg.jobs)
    trainer_method, overrides = run_overrides(cfg, method, seed, Path(run_dir), org)
    t0 = time.time()
    # The run directory is compare's own (a run without metrics.json did not finish): replace it.
    train_cfg = load_config(trainer_method, overrides=overrides)
    ensure_helpful_pool(train_cfg)  # two-sided runs on the organism: its pool, built once
    trainer = run_training(trainer_method, train_cfg, overwrite=True)
    train_s = time.time() - t0
    from dualselect.training.rundir import record_files

    record_files(run_dir, ["eval", "metrics.json"])  # compare's files: a later rerun replaces them
    # validation probes (organism) where a tuning choice needs them (always with validate_all)
    val = cfg.validate_all or any(method in t["candidates"] for t in cfg.tune_entries())
    _evaluate_and_record(
        cfg,
        method,
        (trainer.model, trainer.processing_class),
        Path(run_dir),
        overrides["model_name_or_path"],
        seed,
        org,
        GEN_SPLITS + (VALIDATION_SPLITS if val else ()),
        {
            "train_seconds": round(train_s, 2),
            "optimizer_steps": trainer.state.global_step,
            "supervised_tokens": trainer.supervised_tokens,
        },
        t0,
    )


def _run_base(cfg_dict: dict, run_dir: str, org: int | None = None) -> None:
    """Child process: the model before fine-tuning, evaluated as every run is (no training; seed
    0 for the evaluation's subsets, generation is greedy); metrics.json last, atomically."""
    from dualselect.organism.stats import GEN_SPLITS
    from dualselect.training.model import load_model_and_tokenizer

    cfg = CompareConfig.from_dict(cfg_dict)
    _child_threads(cfg.jobs)
    t0 = time.time()
    path = run_overrides(cfg, "sft", 0, Path(run_dir), org)[1]["model_name_or_path"]
    model, tok = load_model_and_tokenizer(path)
    _evaluate_and_record(cfg, BASE_ROW, (model.eval(), tok), Path(run_dir), path, 0, org, GEN_SPLITS, {}, t0)


def _evaluate_and_record(
    cfg: CompareConfig,
    name: str,
    model_tok: tuple,
    run_dir: Path,
    organism: str,
    seed: int,
    org: int | None,
    probe_splits: tuple,
    extra: dict,
    t0: float,
) -> None:
    """Evaluate one model (a run's, or the base) on the comparison's suites and judges (and the
    organism's probes), and write its ``metrics.json``."""
    import resource

    from dualselect.evaluation.harness import evaluate
    from dualselect.evaluation.judges import build_judge
    from dualselect.evaluation.probes import evaluate_on_probes
    from dualselect.evaluation.suites import suite_set

    suites = eval_suites(cfg, organism)
    ev = evaluate(
        {name: model_tok},
        suites,
        [build_judge(j) for j in cfg.judges],
        run_dir / "eval",
        base=None,
        sft=None,
        max_new_tokens=cfg.generation_budgets(),
        batch_size=cfg.eval_batch_size,
        seed=seed,
        correct=suite_set(cfg.suites).correct,  # off on the organism: its truth is known
        judge_validations=cfg.judge_validations(),
        backend=cfg.generation_backend,
        dtype=cfg.eval_dtype,
        token_budget=cfg.eval_token_budget,
        vllm_options=cfg.vllm_options or None,
    )
    metrics = _suite_metrics(cfg, name, ev, suites, run_dir, organism)
    if ev["methods"][name].get("incoherence_rate") is not None:  # safety suites only
        metrics["incoherence_rate"] = ev["methods"][name]["incoherence_rate"]
    if Path(organism, "data", "val_harmful_hh.jsonl").exists():
        # generalisation probes (held-out wrappers) for every run; ground truth
        model, tok = model_tok
        metrics.update(
            evaluate_on_probes(model, tok, organism, max_new_tokens=cfg.max_new_tokens, splits=probe_splits)
        )
    metrics.update(extra)
    metrics.update(
        {
            "wall_seconds": round(time.time() - t0, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )
    write_json(
        run_dir / "metrics.json",
        {
            "method": name,
            "seed": seed,
            "organism_seed": org,
            "organism": organism,
            "metrics": metrics,
            # items a judge could not read, per judge and suite (never turned into a verdict)
            "judge_failures": {
                j: {s: n[name] for s, n in by.items()} for j, by in ev["judge_failures"].items()
            },
            "skipped_judges": ev["skipped_judges"],
        },
    )


def _suite_metrics(
    cfg: CompareConfig, method: str, ev: dict, suites: dict, run_dir: Path, organism: str
) -> dict:
    """One run's comparison metrics from its harness results, as its suite set reads them: the
    benchmark columns, the real suites' headline columns, or the organism's probe metrics
    (ground truth) from its generations."""
    if cfg.suites == "benchmarks":
        metrics = cfg.metric_reader().compute(ev["methods"][method])
    elif cfg.on_real_base:
        from dualselect.evaluation.suites import suite_set
        from dualselect.evaluation.suites.metrics import headline_metrics

        metrics = headline_metrics(ev["methods"][method], cfg.judge_names, suite_set(cfg.suites).suites)
    else:
        from dualselect.evaluation.probes import probe_metrics

        gens = _generations(run_dir, method)
        metrics = probe_metrics(
            {s: [gens[(s, it.id)] for it in items] for s, items in suites.items()}, organism
        )
    return metrics


def _generations(run_dir: Path, method: str) -> dict:
    from dualselect.evaluation.generation import read_generations

    rows = read_generations(run_dir / "eval" / "generations" / f"{method}.jsonl")
    return {(r["benchmark"], r["id"]): r["response"] for r in rows}


def _add_safety_avg(cfg: CompareConfig, out: Path, runs: dict, keys: list[tuple]) -> None:
    """Safety Avg. vs Standard SFT per judge and run: pairwise win rates against SFT's answers of
    the same organism instance and seed, averaged over the harmful (template) probe sets; a
    harmful suite reported apart (XSTest's unsafe prompts in the study set) does not count."""
    from dualselect.evaluation.capability import win_rate
    from dualselect.evaluation.judges import PairwiseJudge, build_judge
    from dualselect.evaluation.judges.pairwise import safety_backend
    from dualselect.evaluation.suites import suite_set

    judges = [j for j in map(build_judge, cfg.judges) if j.available()[0]]
    apart = set(suite_set(cfg.suites).harmful_apart)
    for ri, (org, seed) in enumerate(keys):
        organism = organism_path(org) if org is not None else cfg.model_name_or_path
        suites = {
            k: v
            for k, v in eval_suites(cfg, organism).items()
            if v and v[0].kind == "harmful" and k not in apart
        }
        meta = {it.prompt: it.meta for items in suites.values() for it in items}
        sft = _generations(cfg.run_dir(out, "sft", org, seed), "sft")
        for m in cfg.methods:
            if m == "sft":  # the reference: 50 by definition
                runs[m][ri].update({f"safety_avg_{j.name}": 50.0 for j in judges})
                continue
            ours = _generations(cfg.run_dir(out, m, org, seed), m)
            for judge in judges:
                pj = PairwiseJudge(safety_backend(judge, meta), seed=seed)
                wins = [
                    win_rate(
                        pj.compare_all(
                            [it.prompt for it in items],
                            [sft[(s, it.id)] for it in items],
                            [ours[(s, it.id)] for it in items],
                        )
                    )
                    for s, items in suites.items()
                ]
                # win_rate is None when the judge failed on every pair of a set: no average then
                runs[m][ri][f"safety_avg_{judge.name}"] = None if None in wins else sum(wins) / len(wins)


# comparison metrics that are refusal rates, and the XSTest prompt kind whose human labels
# measured the judge's error on them
CORRECTED_METRICS = {"harmful_refusal": "unsafe", "over_refusal_rate": "safe", "unsafe_refusal": "unsafe"}


def _add_corrected(cfg: CompareConfig, runs: dict[str, list[dict]], table: dict) -> None:
    """Each judge's measured accuracy (``table["judge_validation"]``, None = not validated) and,
    off the organism, per method the Rogan-Gladen corrected mean of the refusal metrics over
    runs (``table["corrected"][method][metric]``), whose interval draws the seed mean jointly
    with the labelled validation set (:func:`~dualselect.evaluation.correction.correct_runs`)."""
    from dualselect.evaluation.correction import correct_runs, judge_accuracy
    from dualselect.evaluation.judges import build_judge

    budgets = cfg.generation_budgets()
    budget = max(budgets.values()) if isinstance(budgets, dict) else budgets
    validations = cfg.judge_validations()
    info = {}
    for spec in cfg.judges or []:
        j = build_judge(spec)
        info[j.name] = {
            "measures": j.measures,
            **{
                k: judge_accuracy(j.name, j.template_version, k, budget, validations)
                for k in ("safe", "unsafe")
            },
        }
    table["judge_validation"] = info
    if cfg.on_organism:
        return
    corrected: dict[str, dict] = {}
    for method, per_run in runs.items():
        for i, jname in enumerate(cfg.judge_names):
            for metric, kind in CORRECTED_METRICS.items():
                key = metric if i == 0 else f"{metric}.{jname}"
                vals = [r[key] for r in per_run if isinstance(r.get(key), (int, float))]
                acc = info[jname][kind]
                if acc is None or not vals or len(vals) != len(per_run):
                    continue
                res = correct_runs(vals, acc)
                corrected.setdefault(method, {})[key] = {
                    **res,
                    "judge": jname,
                    "max_new_tokens": acc["max_new_tokens"],
                }
    table["corrected"] = corrected


def run_compare(cfg: CompareConfig, out: str | Path, progress: bool = True) -> dict:
    """Run every missing (method, organism, seed), then aggregate and write the tables and plot."""
    from tqdm.auto import tqdm

    from dualselect.experiments.table import write_tables

    out = Path(out)
    previous = out / "compare_config.json"
    if previous.exists():
        try:
            why = cfg.resume_conflict(CompareConfig.from_dict(json.loads(previous.read_text())))
        except (ValueError, TypeError) as e:
            why = f"unreadable ({' '.join(str(e).split())})"
        if why is not None:
            raise FileExistsError(
                f"{out} holds a comparison with another config ({previous}: {why}); resuming would mix "
                "the two: use another --out, or delete it yourself"
            )
    checked = check_compare(cfg)  # before anything builds or trains
    for name, why in checked["skipped_judges"].items():
        warn(f"compare: judge {name} is unavailable and is skipped: {why}")
    for org in cfg.instances():
        if org is not None:
            organism_path(org)  # once per instance, before the children need it
    if cfg.on_real_base:
        realbase_dir(cfg)  # builds the aligned real base once (resumable), before the children
        ensure_study_data(cfg)  # suites real_study: the study task's files, before the children
    write_json(previous, dataclasses.asdict(cfg))
    keys = [(org, s) for s in cfg.seeds for org in cfg.instances()]  # seed-major: balanced if cut
    todo = [
        (m, org, s)
        for org, s in keys
        for m in cfg.methods
        if not (cfg.run_dir(out, m, org, s) / "metrics.json").exists()
    ]
    ctx = mp.get_context("spawn")
    tasks = [  # the model before fine-tuning (evaluate_base), once per instance, then the runs
        (
            f"evaluating the base{f' (organism {org})' if org is not None else ''}",
            _run_base,
            (dataclasses.asdict(cfg), str(base_dir(out, org)), org),
        )
        for org in (cfg.instances() if cfg.evaluate_base else [])
        if not (base_dir(out, org) / "metrics.json").exists()
    ]
    tasks += [
        (
            f"run {method} {f'organism {org} ' if org is not None else ''}seed {seed}",
            _run_one,
            (dataclasses.asdict(cfg), method, seed, str(cfg.run_dir(out, method, org, seed)), org),
        )
        for method, org, seed in todo
    ]
    with tqdm(total=len(tasks), desc="compare: runs", disable=(not progress) or None) as bar:
        failed = run_processes(ctx, tasks, cfg.jobs, on_done=lambda _label: bar.update(1))
    if failed:
        label, code = failed[0]
        more = (
            f" (and {len(failed) - 1} more: {', '.join(f[0] for f in failed[1:])})" if len(failed) > 1 else ""
        )
        raise RuntimeError(
            f"{label} failed (exit code {code}){more}; see above. "
            f"Finished runs are kept: re-run the same command to resume."
        )
    table = _aggregate(cfg, out, keys, checked["skipped_judges"])
    write_tables(table, out, safety=cfg.safety_metric, capability=cfg.capability_metric)
    return table


def _aggregate(cfg: CompareConfig, out: Path, keys: list[tuple], skipped_before: dict[str, str]) -> dict:
    """The comparison table from every finished run's ``metrics.json``: Safety Avg. vs SFT, the
    validation-tuned row, means and intervals (:func:`~dualselect.experiments.table.aggregate`),
    corrected rates, skipped judges and judge failures, the design."""
    from dualselect.experiments.table import aggregate
    from dualselect.experiments.tuning import tune_choices

    records = {
        m: [json.loads((cfg.run_dir(out, m, org, s) / "metrics.json").read_text()) for org, s in keys]
        for m in cfg.methods
    }
    runs = {m: [r["metrics"] for r in recs] for m, recs in records.items()}
    if "sft" in cfg.methods:
        _add_safety_avg(cfg, out, runs, keys)
    base_metrics = None
    if cfg.evaluate_base:
        per = {
            str(org): json.loads((base_dir(out, org) / "metrics.json").read_text())["metrics"]
            for org in cfg.instances()
        }
        keys_common = sorted(set.intersection(*(set(m) for m in per.values())))
        base_metrics = {
            "metrics": {
                k: sum(m[k] for m in per.values()) / len(per)
                for k in keys_common
                if all(isinstance(m[k], (int, float)) and not isinstance(m[k], bool) for m in per.values())
            },
            "per_instance": per,
        }
    choices = tune_choices(cfg, runs, base_metrics["metrics"] if base_metrics else None)
    for choice in choices:  # the chosen setting's runs as their own row; none chosen: no row
        if choice["chosen"] is not None:
            runs[choice["name"]] = runs[choice["chosen"]]
        else:
            warn(f"compare: tune {choice['name']}: {choice['reason']}")
    table = aggregate(
        runs,
        safety=cfg.safety_metric,
        capability=cfg.capability_metric,
        matched_within=cfg.matched_capability_within,
        groups=[org for org, _ in keys] if cfg.on_organism else None,
    )
    if choices:  # one entry: its choice (as before); a list: one choice per entry
        table["tuning"] = choices[0] if isinstance(cfg.tune, dict) else choices
    if cfg.suites == "benchmarks":
        table["columns"] = cfg.metric_reader().columns()
        loaded = eval_suites(cfg)
        table["benchmarks"] = {
            s: {"kind": k, "n": len(loaded[s])} for s, k in cfg.metric_reader().kinds.items()
        }
    table["judges"] = cfg.judge_names
    _add_corrected(cfg, runs, table)
    if base_metrics is not None:
        table["base"] = base_metrics
    skipped = dict(skipped_before)
    failures: dict[str, dict[str, int]] = {}
    for recs in records.values():
        for r in recs:
            skipped.update(r.get("skipped_judges", {}))
            for j, by in r.get("judge_failures", {}).items():
                for suite, n in by.items():
                    failures.setdefault(j, {}).setdefault(suite, 0)
                    failures[j][suite] += n
    table["skipped_judges"] = skipped
    table["judge_failures"] = failures
    missing = [
        k
        for k in (cfg.safety_metric, cfg.capability_metric)
        if not any(k in r for rs in runs.values() for r in rs)
    ]
    if missing:
        have = sorted({k for rs in runs.values() for r in rs for k in r})
        warn(
            f"compare: no run has {missing} (e.g. a judge that does not label refusals); the runs have "
            f"{have}; set safety_metric / capability_metric and re-run (runs are kept)"
        )
    table["design"] = {
        "organism_seeds": cfg.instances() if cfg.on_organism else None,
        "seeds": list(cfg.seeds),
        "runs_per_method": len(keys),
        "suites": cfg.suites,
        "model": cfg.model_name_or_path,
        "base": _base_identity(cfg) if cfg.on_real_base else None,
    }
    return table


def base_dir(out: str | Path, org: int | None) -> Path:
    """Where the base's evaluation lives: ``OUT/base/`` (``OUT/base/org<o>/`` per organism instance)."""
    d = Path(out) / BASE_ROW
    return d / f"org{org}" if org is not None else d


def _base_identity(cfg: CompareConfig) -> dict:
    """The real base the runs fine-tuned: its build directory's name (recipe and cache key), the
    training seed and scale its calibration kept, and the recipe's first training seed; the study's
    analysis groups runs by it (the base build is the unit of replication)."""
    root = realbase_dir(cfg)
    meta = json.loads((root / "realbase.json").read_text())
    calib = meta.get("calibration") or {}
    return {
        "name": root.name,
        "cache_key": meta.get("cache_key"),
        "align_seed": calib.get("align_seed"),
        "scale": calib.get("scale"),
        "first_align_seed": (meta.get("config") or {}).get("align_seed"),
    }
