"""`dualselect compare`: methods x seeds on one model and data, evaluated alike, one table.

Every (method, seed) run lives in ``OUT/runs/<method>/seed<k>/``; its ``metrics.json`` is written
last and atomically, so an interrupted compare resumes where it stopped and never redoes a
finished run. Each run trains and evaluates in a fresh spawned process, so its wall time and peak
memory (max RSS) are its own.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dualselect.training.presets import PRESETS, resolve_preset
from dualselect.utils import write_json

DEFAULT_METHODS = [
    "sft",
    "dualselect",
    "dualselect_paper",
    "ds_eta_0.05",
    "safeinstr",
    "static_refs",
    "random_refs",
    "category_refs",
    "task_filter_only",
    "pcgrad_fixed",
    "lisa",
    "kl",
    "ds_no_filter",
    "ds_no_refresh",
    "ds_no_correction",
    "ds_hard",
    "ds_loss_only",
    "ds_compat_only",
]
QUICK = {
    "methods": ["sft", "dualselect", "safeinstr", "static_refs"],
    "seeds": [0, 1],
    "training": {"max_steps": 40},
}


@dataclass
class CompareConfig:
    """What to compare. Loads from YAML; unknown keys are errors."""

    model_name_or_path: str = "organism"
    train_data: str | None = None
    reference_data: str | None = None
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    training: dict[str, Any] = field(default_factory=dict)  # overrides for every method
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_new_tokens: int = 64
    judges: list[str] = field(default_factory=lambda: ["ground_truth", "keyword"])
    safety_metric: str = "harmful_refusal"
    capability_metric: str = "task_exact_match"
    # "matched capability": at most this many points (of 100) below Standard SFT's mean capability
    matched_capability_within: float = 3.0
    # evaluation suites: "organism" (its probes, ground truth) or "realbase" (the real model's
    # held-out benchmark files: HarmBench standard, StrongREJECT, AdvBench, XSTest safe, task test;
    # see docs/real_model.md), with fixed-seed per-suite subsets and the generation batch size
    suites: str = "organism"
    suite_limits: dict[str, int] = field(default_factory=dict)
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in PRESETS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(PRESETS)}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.suites not in ("organism", "realbase"):
            raise ValueError(f"suites={self.suites!r}: expected 'organism' or 'realbase'")
        if not 0 <= self.matched_capability_within <= 100:
            raise ValueError("matched_capability_within: points of capability, between 0 and 100")

    @classmethod
    def from_yaml(cls, path: str | None, quick: bool = False) -> CompareConfig:
        data: dict[str, Any] = {}
        if path:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{path}: top level must be a mapping")
            known = {f.name for f in dataclasses.fields(cls)}
            bad = sorted(set(data) - known)
            if bad:
                raise ValueError(f"{path}: unknown key(s) {bad}; known: {sorted(known)}")
        if quick:
            for k, v in QUICK.items():
                if k == "training":
                    data["training"] = {**data.get("training", {}), **v}
                else:
                    data.setdefault(k, v)
        return cls(**data)


def run_overrides(cfg: CompareConfig, method: str, seed: int, run_dir: Path) -> tuple[str, dict]:
    """The trainer method and the full override dict of one run."""
    trainer_method, overrides = resolve_preset(method)
    base: dict[str, Any] = {
        "model_name_or_path": cfg.model_name_or_path,
        "seed": seed,
        "output_dir": str(run_dir),
    }
    if cfg.model_name_or_path == "organism" or Path(cfg.model_name_or_path, "organism.json").exists():
        from dualselect.organism.stats import ORGANISM_TRAINING

        base.update(ORGANISM_TRAINING)
    train_data, reference_data = cfg.train_data, cfg.reference_data
    if cfg.suites == "realbase":  # default data: the real base's attack task set and refusal pool
        root = _realbase_root(cfg)
        train_data = train_data or str(root / "data" / "task_train.jsonl")
        reference_data = reference_data or str(root / "data" / "references.jsonl")
    if train_data:
        base["train_data"] = train_data
    if reference_data and trainer_method != "sft":
        base["reference_data"] = reference_data
    return trainer_method, {**base, **cfg.training, **overrides, **cfg.method_overrides.get(method, {})}


def _realbase_root(cfg: CompareConfig) -> Path:
    """The built real base behind ``model_name_or_path`` (e.g. ``smollm2-135m-safe``)."""
    from dualselect.training.model import resolve_model_path

    path = Path(resolve_model_path(cfg.model_name_or_path))
    root = path.parent if path.name == "model" else path
    if not (root / "realbase.json").exists():
        raise ValueError(f"suites: realbase needs a real base model (e.g. smollm2-135m-safe); got {path}")
    return root


def _eval_suites(cfg: CompareConfig) -> dict:
    """The evaluation suites every run of this comparison is scored on (same for every seed)."""
    if cfg.suites == "realbase":
        from dualselect.realbase.suites import real_suites

        return real_suites(_realbase_root(cfg), cfg.suite_limits, seed=0)
    from dualselect.evaluation.harness import organism_suites
    from dualselect.organism.build import build_organism

    organism = str(build_organism()) if cfg.model_name_or_path == "organism" else cfg.model_name_or_path
    return organism_suites(organism)


def _run_one(cfg_dict: dict, method: str, seed: int, run_dir: str) -> None:
    """Child process: train, evaluate, write metrics.json (last, atomically)."""
    import resource

    from dualselect.organism.build import build_organism
    from dualselect.organism.stats import probe_metrics
    from dualselect.training.run import load_config, run_training

    cfg = CompareConfig(**cfg_dict)
    trainer_method, overrides = run_overrides(cfg, method, seed, Path(run_dir))
    t0 = time.time()
    trainer = run_training(trainer_method, load_config(trainer_method, overrides=overrides))
    train_s = time.time() - t0
    from dualselect.evaluation.harness import evaluate
    from dualselect.evaluation.judges import build_judge

    suites = _eval_suites(cfg)
    ev = evaluate(
        {method: (trainer.model, trainer.processing_class)},
        suites,
        [build_judge(j) for j in cfg.judges],
        Path(run_dir) / "eval",
        base=None,
        sft=None,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.eval_batch_size,
        seed=seed,
    )
    if cfg.suites == "realbase":
        from dualselect.realbase.suites import headline_metrics

        metrics = headline_metrics(ev["methods"][method], judge="keyword")
    else:
        organism = str(build_organism()) if cfg.model_name_or_path == "organism" else cfg.model_name_or_path
        gens = _generations(Path(run_dir), method)
        metrics = probe_metrics(
            {s: [gens[(s, it.id)] for it in items] for s, items in suites.items()}, organism
        )
    metrics["incoherence_rate"] = ev["methods"][method]["incoherence_rate"]
    metrics.update(
        {
            "train_seconds": round(train_s, 2),
            "wall_seconds": round(time.time() - t0, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "optimizer_steps": trainer.state.global_step,
            "supervised_tokens": trainer.supervised_tokens,
        }
    )
    write_json(Path(run_dir) / "metrics.json", {"method": method, "seed": seed, "metrics": metrics})


def _generations(run_dir: Path, method: str) -> dict:
    from dualselect.evaluation.generation import read_generations

    rows = read_generations(run_dir / "eval" / "generations" / f"{method}.jsonl")
    return {(r["benchmark"], r["id"]): r["response"] for r in rows}


def _add_safety_avg(cfg: CompareConfig, out: Path, runs: dict) -> None:
    """Safety Avg. vs Standard SFT per judge and seed: pairwise win rates against SFT's answers of
    the same seed, averaged over the harmful probe sets."""
    from dualselect.evaluation.capability import win_rate
    from dualselect.evaluation.judges import PairwiseJudge, build_judge
    from dualselect.evaluation.judges.pairwise import safety_backend

    suites = {k: v for k, v in _eval_suites(cfg).items() if v and v[0].kind == "harmful"}
    meta = {it.prompt: it.meta for items in suites.values() for it in items}
    judges = [j for j in map(build_judge, cfg.judges) if j.available()[0]]
    for si, seed in enumerate(cfg.seeds):
        sft = _generations(out / "runs" / "sft" / f"seed{seed}", "sft")
        for m in cfg.methods:
            if m == "sft":  # the reference: 50 by definition
                runs[m][si].update({f"safety_avg_{j.name}": 50.0 for j in judges})
                continue
            ours = _generations(out / "runs" / m / f"seed{seed}", m)
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
                runs[m][si][f"safety_avg_{judge.name}"] = sum(wins) / len(wins)


def run_compare(cfg: CompareConfig, out: str | Path, progress: bool = True) -> dict:
    """Run every missing (method, seed), then aggregate and write the tables and plot."""
    from tqdm.auto import tqdm

    from dualselect.experiments.table import aggregate, write_tables

    out = Path(out)
    if cfg.model_name_or_path == "organism":
        from dualselect.organism.build import build_organism

        build_organism()  # once, before the children need it
    elif cfg.suites == "realbase":
        _realbase_root(cfg)  # builds the aligned real base once (resumable), before the children
    write_json(out / "compare_config.json", dataclasses.asdict(cfg))
    todo = [
        (m, s)
        for m in cfg.methods
        for s in cfg.seeds
        if not (out / "runs" / m / f"seed{s}" / "metrics.json").exists()
    ]
    ctx = mp.get_context("spawn")
    for method, seed in tqdm(todo, desc="compare: runs", disable=not progress):
        run_dir = out / "runs" / method / f"seed{seed}"
        p = ctx.Process(target=_run_one, args=(dataclasses.asdict(cfg), method, seed, str(run_dir)))
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(
                f"run {method} seed {seed} failed (exit code {p.exitcode}); see above. "
                f"Finished runs are kept: re-run the same command to resume."
            )
    runs = {}
    for m in cfg.methods:
        runs[m] = [
            json.loads((out / "runs" / m / f"seed{s}" / "metrics.json").read_text())["metrics"]
            for s in cfg.seeds
        ]
    if "sft" in cfg.methods:
        _add_safety_avg(cfg, out, runs)
    table = aggregate(
        runs,
        safety=cfg.safety_metric,
        capability=cfg.capability_metric,
        matched_within=cfg.matched_capability_within,
    )
    write_tables(table, out, safety=cfg.safety_metric, capability=cfg.capability_metric)
    return table
