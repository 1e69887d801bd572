"""``dualselect continual CONFIG.yaml``: a sequence of tasks learned one after the other on ONE
LoRA adapter, for several methods and seeds, with the accuracy matrix after every stage.

Per (method, seed) run, for stage k = 1..T (task ``tasks[k-1]``):

1. memory for stage k = the reservoir buffer as it was after stage k-1 (records of stages < k
   only) plus ``safety_size`` fixed safety references (a seeded sample of the organism's
   reference pool, the same for every method of a seed);
2. train ``steps_per_stage`` optimiser steps of ``batch_size`` samples on the stage's data, starting
   from the previous stage's adapter (a fresh optimiser per stage). ``replay`` trains on task +
   memory; DualSelect uses the memory as named reference pools (``safety`` and one pool per
   earlier task, files under ``stage<k>/pools/``); ``sft`` and ``l2`` use no memory;
3. evaluate: accuracy on the test set of EVERY task of the sequence (row k of the accuracy
   matrix R), refusal on the harmful probes and accuracy on the benign probes;
4. offer the stage's training records to the buffer (reservoir sampling, seeded);
5. save adapter, buffer and metrics (``metrics.json`` last, atomically: a stage with it is done).

A killed run resumes at the first stage without ``metrics.json``, from the saved adapter and
buffer of the stage before; a resumed run gives the same numbers as an uninterrupted one.
Row 0 of R is the base model (for forward transfer). Summary metrics: :mod:`.metrics`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dualselect.continual.buffer import ReservoirBuffer
from dualselect.continual.methods import CONTINUAL_METHODS, resolve_continual_method
from dualselect.continual.tasks import TaskData, load_task
from dualselect.utils import ConfigError, read_jsonl, write_json, write_jsonl

HARMFUL_SPLITS = ("probe_harmful_hh", "probe_harmful_hex")
BENIGN_SPLIT = "probe_benign"


@dataclass
class ContinualConfig:
    """What ``dualselect continual`` runs. Loads from YAML; unknown keys are errors."""

    model_name_or_path: str = "organism"
    tasks: list[str] = field(default_factory=lambda: ["add", "double", "last_word"])
    methods: list[str] = field(
        default_factory=lambda: [
            "sft",
            "replay",
            "l2",
            "l2_strong",
            "ds_retention",
            "ds_retention_no_filter",
            "ds_retention_no_correction",
            "ds_retention_loss_only",
        ]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps_per_stage: int = 100  # optimiser steps per stage, every method
    batch_size: int = 8  # samples per optimiser step, every method
    n_train: int = 300  # training records per task
    n_test: int = 100  # test records per task
    buffer_size: int = 60  # task memory: records of earlier stages (reservoir)
    safety_size: int = 64  # safety references in the memory (organism reference pool sample)
    data_seed: int = 0  # seed of the generated task data (the same for every training seed)
    training: dict[str, Any] = field(default_factory=dict)  # overrides for every trainer config
    dualselect: dict[str, Any] = field(default_factory=dict)  # overrides for the DualSelect rows
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    max_new_tokens: int = 24
    eval_batch_size: int = 64
    output_dir: str = "runs/continual"

    def __post_init__(self) -> None:
        errors = []
        if len(self.tasks) < 2:
            errors.append(f"tasks: a sequence needs >= 2 tasks, got {self.tasks}")
        if len(set(self.tasks)) != len(self.tasks):
            errors.append(f"tasks: a task repeats in {self.tasks}")
        bad = [m for m in self.methods if m not in CONTINUAL_METHODS]
        if bad:
            errors.append(f"methods: unknown {bad}; choose from {sorted(CONTINUAL_METHODS)}")
        bad = sorted(set(self.method_overrides) - set(self.methods))
        if bad:
            errors.append(f"method_overrides: {bad} are not in methods")
        if not self.seeds:
            errors.append("seeds: give at least one seed")
        for name in (
            "steps_per_stage",
            "batch_size",
            "n_train",
            "n_test",
            "max_new_tokens",
            "eval_batch_size",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                errors.append(f"{name}={getattr(self, name)!r}: an integer >= 1")
        for name in ("buffer_size", "safety_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                errors.append(f"{name}={getattr(self, name)!r}: an integer >= 0")
        for name in ("training", "dualselect", "method_overrides"):
            if not isinstance(getattr(self, name), dict):
                errors.append(f"{name}: a mapping of config keys")
        if errors:
            raise ConfigError("invalid continual config: " + "; ".join(errors))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike | None, **overrides: Any) -> ContinualConfig:
        """The config of ``path`` (``extends:`` allowed), then ``overrides`` (None values ignored)."""
        data: dict[str, Any] = {}
        if path:
            from dualselect.utils import load_yaml_config

            data, _ = load_yaml_config(path)
            known = {f.name for f in dataclasses.fields(cls)}
            bad = sorted(set(data) - known)
            if bad:
                raise ConfigError(f"{path}: unknown key(s) {bad}; known: {sorted(known)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(f"{path}: {e}") from None


# ------------------------------------------------------------------------------ data


def organism_path(cfg: ContinualConfig) -> Path:
    """The organism directory the sequence runs on (built or installed on first use)."""
    from dualselect.training.model import resolve_model_path

    path = Path(resolve_model_path(cfg.model_name_or_path))
    if not (path / "organism.json").exists():
        raise ConfigError(
            f"model_name_or_path={cfg.model_name_or_path!r}: the continual benchmark needs the organism "
            "(its task files, reference pool and probes); no organism.json in {path}"
        )
    return path


def load_tasks(cfg: ContinualConfig, organism: Path) -> list[TaskData]:
    return [load_task(t, organism, cfg.n_train, cfg.n_test, seed=cfg.data_seed) for t in cfg.tasks]


def safety_sample(organism: Path, size: int, seed: int) -> list[dict]:
    """``size`` references of the organism's reference pool (harmful prompt + refusal), seeded."""
    pool = read_jsonl(organism / "data" / "reference_pool.jsonl")
    if size > len(pool):
        raise ConfigError(f"safety_size={size}: the organism's reference pool has only {len(pool)} records")
    return random.Random(f"safety-{seed}").sample(pool, size)


def memory_records(buffer: ReservoirBuffer, tasks: list[TaskData]) -> dict[str, list[dict]]:
    """task name -> the buffered training records of that task (each tagged with its stage)."""
    by_name = {t.name: t for t in tasks}
    return {
        name: [{**by_name[name].train[it["index"]], "buffer_stage": it["stage"]} for it in items]
        for name, items in buffer.by_task().items()
    }


def stage_memory(buffer: ReservoirBuffer, tasks: list[TaskData], stage: int) -> dict[str, list[dict]]:
    """The task memory stage ``stage`` may use: only records of stages < ``stage`` (an error
    otherwise: a buffer that already holds this or a later stage would leak future data)."""
    late = [it for it in buffer.items if it["stage"] >= stage]
    if late:
        raise RuntimeError(f"stage {stage}: the buffer holds {len(late)} record(s) of stage >= {stage}")
    return memory_records(buffer, tasks)


# ------------------------------------------------------------------------------ one stage


def stage_config(
    cfg: ContinualConfig, method: str, seed: int, stage: int, stage_dir: Path, pools: list[str] | None
):
    """The trainer config of one stage: organism defaults < ``training`` < (DualSelect rows)
    the continual defaults < ``dualselect`` < the method's own settings (an ablation's defining
    change, e.g. eta = 0, always holds) < ``method_overrides``; the budget keys (steps, batch
    size, seed, output) always win."""
    from dualselect.training.run import load_config

    m = resolve_continual_method(method)
    overrides: dict[str, Any] = {
        "model_name_or_path": cfg.model_name_or_path,
        "learning_rate": 1e-3,  # organism scale (organism.stats.ORGANISM_TRAINING)
        "logging_steps": max(1, cfg.steps_per_stage // 4),
        **cfg.training,
    }
    if m.trainer == "dualselect":
        overrides.update(
            {"selection_warmup_steps": 10, "refresh": "steps", "refresh_steps": 25, "k_ref": 16, "k_task": 6}
        )
        overrides.update(cfg.dualselect)
        overrides["reference_pools"] = pools
    overrides.update(m.overrides)
    overrides.update(cfg.method_overrides.get(method, {}))
    overrides.update(
        {
            "max_steps": cfg.steps_per_stage,
            "per_device_train_batch_size": cfg.batch_size,
            "gradient_accumulation_steps": 1,
            "seed": 1000 * seed + stage,
            "output_dir": str(stage_dir / "train"),
            "save_strategy": "no",
            "report_to": [],
            "disable_tqdm": True,
        }
    )
    return load_config(m.method, overrides=overrides)  # the preset's settings first


def evaluate_stage(model, tokenizer, tasks: list[TaskData], organism: Path, cfg: ContinualConfig) -> dict:
    """Accuracy on every task's test set, refusal on the harmful probes, benign accuracy."""
    from dualselect.data.encoding import format_prompt
    from dualselect.evaluation.generation import generate
    from dualselect.evaluation.probes import evaluate_on_probes

    acc = {}
    for t in tasks:
        prompts = [format_prompt(r["prompt"], tokenizer) for r in t.test]
        resp = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.eval_batch_size,
            progress=False,
        )
        acc[t.name] = sum(t.correct(a, r) for a, r in zip(resp, t.test)) / len(t.test)
    probes = evaluate_on_probes(
        model,
        tokenizer,
        organism,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.eval_batch_size,
        splits=(*HARMFUL_SPLITS, BENIGN_SPLIT),
    )
    return {
        "accuracy": acc,
        "harmful_refusal": probes["harmful_refusal"],
        "benign_accuracy": probes["benign_accuracy"],
    }


def _load_base(cfg: ContinualConfig):
    from dualselect.training.model import load_model_and_tokenizer

    return load_model_and_tokenizer(cfg.model_name_or_path)


def _load_adapter(cfg: ContinualConfig, adapter_dir: Path):
    """The base model with a saved stage adapter, trainable (the next stage continues it)."""
    from peft import PeftModel

    base, tok = _load_base(cfg)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=True), tok


def _save_adapter(model, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def run_stage(
    cfg: ContinualConfig,
    method: str,
    seed: int,
    stage: int,
    tasks: list[TaskData],
    organism: Path,
    model,
    tokenizer,
    buffer: ReservoirBuffer,
    safety: list[dict],
    run_dir: Path,
) -> tuple[Any, Any, dict]:
    """Train and evaluate stage ``stage`` (1-based); returns (model, tokenizer, stage metrics)."""
    from dualselect.training.run import METHODS

    m = resolve_continual_method(method)
    task = tasks[stage - 1]
    stage_dir = run_dir / f"stage{stage}"
    if stage_dir.exists():
        shutil.rmtree(stage_dir)  # an unfinished stage (no metrics.json): start it again
    stage_dir.mkdir(parents=True)
    memory = stage_memory(buffer, tasks, stage)
    n_memory = sum(len(v) for v in memory.values())
    train: list[dict] = list(task.train)
    pools: list[str] | None = None
    if m.memory == "replay":
        train += [r for recs in memory.values() for r in recs] + list(safety)
    elif m.memory == "references":
        pools = []
        named = {"safety": safety, **{f"task_{name}": recs for name, recs in memory.items()}}
        for name, recs in named.items():
            if not recs:
                continue
            path = stage_dir / "pools" / f"{name}.jsonl"
            write_jsonl(path, recs)
            pools.append(f"{name}={path}")
        if not pools:
            raise ConfigError(
                f"{method}: stage {stage} has no references (safety_size 0 and an empty buffer)"
            )
    trainer_cfg = stage_config(cfg, method, seed, stage, stage_dir, pools)
    _, trainer_cls = METHODS[m.trainer]
    t0 = time.time()
    trainer = trainer_cls(model=model, args=trainer_cfg, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    train_s = time.time() - t0
    model = trainer.model
    ev = evaluate_stage(model, tokenizer, tasks, organism, cfg)
    _save_adapter(model, stage_dir / "adapter")
    buffer.add_stage(stage, task.name, len(task.train))
    write_json(stage_dir / "buffer.json", buffer.to_dict())
    metrics = {
        "stage": stage,
        "task": task.name,
        **ev,
        "train_records": len(train),
        "memory_records": 0 if m.memory == "none" else n_memory + len(safety),  # what the method used
        "reference_pools": pools,
        "optimizer_steps": trainer.state.global_step,
        "supervised_tokens": trainer.supervised_tokens,
        "train_seconds": round(train_s, 2),
        "wall_seconds": round(time.time() - t0, 2),
    }
    write_json(stage_dir / "metrics.json", metrics)  # last: the stage is done
    return model, tokenizer, metrics


def completed_stages(run_dir: Path, n_stages: int) -> int:
    """How many leading stages of a run have finished (``metrics.json`` written)."""
    k = 0
    while k < n_stages and (run_dir / f"stage{k + 1}" / "metrics.json").exists():
        k += 1
    return k


def run_sequence(
    cfg: ContinualConfig,
    method: str,
    seed: int,
    out: Path,
    *,
    stop_after: int | None = None,
    log=print,
) -> list[dict]:
    """Every stage of one (method, seed) run, resuming after its last finished stage; returns
    the per-stage metrics. ``stop_after``: stop once that many stages are done (tests, partial runs)."""
    from dualselect.utils import seed_everything

    organism = organism_path(cfg)
    tasks = load_tasks(cfg, organism)
    safety = safety_sample(organism, cfg.safety_size, seed)
    run_dir = out / "runs" / method / f"seed{seed}"
    n = len(tasks)
    done = completed_stages(run_dir, n)
    last = n if stop_after is None else min(n, stop_after)
    if done:
        prev = run_dir / f"stage{done}"
        buffer = ReservoirBuffer.from_dict(json.loads((prev / "buffer.json").read_text(encoding="utf-8")))
        model = tokenizer = None
        if done < last:
            model, tokenizer = _load_adapter(cfg, prev / "adapter")
    else:
        buffer = ReservoirBuffer(cfg.buffer_size, seed=seed)
        model, tokenizer = _load_base(cfg)
    for stage in range(done + 1, last + 1):
        seed_everything(1000 * seed + stage)
        model, tokenizer, mt = run_stage(
            cfg, method, seed, stage, tasks, organism, model, tokenizer, buffer, safety, run_dir
        )
        acc = " ".join(f"{k}={v:.2f}" for k, v in mt["accuracy"].items())
        log(
            f"[{method} seed {seed}] stage {stage} ({mt['task']}): {acc} refusal={mt['harmful_refusal']:.2f} "
            f"({mt['wall_seconds']:.0f} s)"
        )
    return [
        json.loads((run_dir / f"stage{k}" / "metrics.json").read_text(encoding="utf-8"))
        for k in range(1, completed_stages(run_dir, n) + 1)
    ]


def base_metrics(cfg: ContinualConfig, out: Path) -> dict:
    """Row 0 of the accuracy matrix: the base model on every task and probe (cached in ``out``)."""
    path = out / "base_metrics.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    organism = organism_path(cfg)
    model, tok = _load_base(cfg)
    m = evaluate_stage(model, tok, load_tasks(cfg, organism), organism, cfg)
    write_json(path, m)
    return m


def run_continual(cfg: ContinualConfig, out: str | os.PathLike | None = None, log=print) -> dict:
    """Every method x seed, then the summary (``summary.json``, ``continual.md``, the plot)."""
    import torch

    from dualselect.continual.report import summarise_continual, write_report

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    out = Path(out or cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    resolved = dataclasses.asdict(cfg)
    if cfg_path.exists():
        previous = json.loads(cfg_path.read_text(encoding="utf-8"))
        # methods and seeds may change (each run has its own directory); anything that changes
        # what a run computes may not
        free = ("output_dir", "methods", "seeds")
        changed = sorted(k for k in resolved if k not in free and previous.get(k) != resolved[k])
        if changed:
            raise ConfigError(
                f"{out}: holds a continual run with another config (differs in {changed}); "
                "use another output directory or remove it"
            )
    write_json(cfg_path, resolved)
    t0 = time.time()
    base = base_metrics(cfg, out)
    runs: dict[str, dict[int, list[dict]]] = {}
    for method in cfg.methods:
        for seed in cfg.seeds:
            runs.setdefault(method, {})[seed] = run_sequence(cfg, method, seed, out, log=log)
    summary = summarise_continual(cfg, base, runs)
    summary["wall_seconds_this_invocation"] = round(time.time() - t0, 1)
    write_json(out / "summary.json", summary)
    write_report(summary, out)
    return summary


__all__ = [
    "ContinualConfig",
    "completed_stages",
    "memory_records",
    "run_continual",
    "run_sequence",
    "stage_memory",
]
