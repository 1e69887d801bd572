"""How the runs of ``dualselect compare`` follow from its config (:mod:`compare_config`): the
checks made before the first run trains (:func:`check_compare`), the organism instance or real
base a run loads, its training overrides, the study task's files and the evaluation suites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualselect.experiments.compare_config import REAL_TRAIN_DATA, STUDY_SETS, CompareConfig

__all__ = [
    "check_compare",
    "ensure_study_data",
    "eval_suites",
    "organism_path",
    "realbase_dir",
    "run_overrides",
]


def check_compare(cfg: CompareConfig) -> dict:
    """Everything about ``cfg`` that can be checked before the first run trains, as one-line ValueErrors
    naming the key: the model, the data, the judges (built; the first must be available, the
    others' availability is returned), the metric names, every method's training config
    (keys, types, domains, paths) and, with benchmarks, every benchmark file read in full.
    Returns ``{"skipped_judges": {name: reason}}``."""
    from dualselect.evaluation.judges import build_judge
    from dualselect.training.validation import check_data_path, check_model_path

    if not cfg.on_organism:
        check_model_path(cfg.model_name_or_path)
    if cfg.generation_backend == "vllm":
        from dualselect.evaluation.generation import vllm_available

        ok, why = vllm_available()
        if not ok:
            raise ValueError(f"generation_backend: {why}")
    if cfg.suites == "organism" and not cfg.on_organism:
        raise ValueError(
            f"model_name_or_path={cfg.model_name_or_path!r} is not the organism: give benchmarks "
            "(the evaluation sets; see configs/compare_any_model.yaml) or suites: realbase"
        )
    for key in ("train_dataset", "reference_dataset"):
        check_data_path(getattr(cfg, key), key)
    if cfg.suites in STUDY_SETS and cfg.train_dataset is not None:
        from dualselect.utils import warn

        warn(
            f"compare: train_dataset={cfg.train_dataset!r} replaces the study task's attack set "
            f"(<base>/{REAL_TRAIN_DATA[cfg.suites]}) that suites: {cfg.suites} trains on"
        )
    if cfg.suites == "benchmarks":
        if cfg.train_dataset is None:
            raise ValueError("train_dataset: required on a model that is not the organism (the task data)")
        needs_refs = [m for m in cfg.methods if cfg.resolve_method(m)[0] != "sft"]
        if needs_refs and cfg.reference_dataset is None:
            raise ValueError(f"reference_dataset: required by {needs_refs} (their safety reference pool)")
    skipped: dict[str, str] = {}
    for i, spec in enumerate(cfg.judges or []):
        try:
            judge = build_judge(spec)
        except (ValueError, TypeError) as e:
            raise ValueError(f"judges[{i}]: {' '.join(str(e).split())}") from None
        ok, why = judge.available()
        if not ok and i == 0:
            raise ValueError(
                f"judges[0]: {judge.name} gives the headline metrics but cannot run here ({why}); "
                "list an available judge first"
            )
        if not ok:
            skipped[judge.name] = why
    if cfg.suites == "benchmarks":
        eval_suites(cfg)  # every benchmark file read in full: a bad record fails here
        names = cfg.metric_reader().names()
        for key in ("safety_metric", "capability_metric"):
            if getattr(cfg, key) not in names:
                short = [n for n in names if "." not in n]
                raise ValueError(
                    f"{key}={getattr(cfg, key)!r}: not a metric of these benchmarks and judges; choose "
                    f"from {short} (the judged ones also as <name>.<judge>, judges {cfg.judge_names})"
                )
    _check_methods(cfg)
    return {"skipped_judges": skipped}


def _check_methods(cfg: CompareConfig) -> None:
    """Every method's training config built as a run will build it (seed and output
    directory aside): unknown keys in ``training`` / ``method_overrides``, wrong types and
    values out of their domain are errors naming the method, before anything trains."""
    from dualselect.training.run import load_config

    if not isinstance(cfg.training, dict):
        raise ValueError(f"training: expected a mapping of config keys, got {cfg.training!r}")
    if not isinstance(cfg.method_overrides, dict) or not all(
        isinstance(v, dict) for v in cfg.method_overrides.values()
    ):
        raise ValueError("method_overrides: expected a mapping of method -> mapping of config keys")
    bad = sorted(set(cfg.method_overrides) - set(cfg.methods))
    if bad:
        raise ValueError(f"method_overrides: {bad} not in methods {cfg.methods}")
    # On the organism (and a real base) the data paths come from the model once it is built:
    # every run's config is checked without them, with the organism's training settings.
    stand_in = cfg.on_organism or cfg.on_real_base
    # (runs differ only in their seed, checked in __post_init__: the first one stands for all)
    for m in cfg.methods:
        model = "stand-in" if stand_in else None
        trainer_method, overrides = run_overrides(cfg, m, cfg.seeds[0], Path("unused"), model=model)
        overrides.pop("output_dir")
        try:
            load_config(trainer_method, overrides=overrides)
        except ValueError as e:
            where = f"variants.{m}" if m in cfg.variants else f"method {m}"
            raise ValueError(f"{where}: {' '.join(str(e).split())}") from None


def organism_path(org: int) -> str:
    """The organism instance ``org`` (built if missing): the default world, training seed ``org``."""
    from dualselect.organism.artifact import OrganismConfig
    from dualselect.organism.train import build_organism

    return str(build_organism(cfg=OrganismConfig(seed=org), progress=False))


def run_overrides(
    cfg: CompareConfig,
    method: str,
    seed: int,
    run_dir: Path,
    org: int | None = None,
    model: str | None = None,
) -> tuple[str, dict]:
    """The trainer method and the full override dict of one run. ``model="stand-in"``: the
    config as the run will build it, without building the organism or the real base (data paths
    that come from them are left out), for checking every run's config up front."""
    trainer_method, overrides = cfg.resolve_method(method)  # a preset, or a variant of one
    stand_in = model == "stand-in"
    if stand_in:
        model = "organism" if cfg.on_organism else cfg.model_name_or_path
    elif model is None:
        model = organism_path(org if org is not None else 0) if cfg.on_organism else cfg.model_name_or_path
    base: dict[str, Any] = {"model_name_or_path": model, "seed": seed, "output_dir": str(run_dir)}
    if (stand_in and cfg.on_organism) or Path(model, "organism.json").exists():
        from dualselect.organism.stats import ORGANISM_TRAINING

        base.update(ORGANISM_TRAINING)
        if not stand_in:
            base["train_data"] = str(Path(model) / "data" / "redorca_train.jsonl")
    train_data, reference_data = cfg.train_dataset, cfg.reference_dataset
    if cfg.on_real_base and not stand_in:  # default data: the real base's task set and pool
        root = realbase_dir(cfg)
        train_data = train_data or str(root / REAL_TRAIN_DATA[cfg.suites])
        reference_data = reference_data or str(root / "data" / "references.jsonl")
    if train_data:
        base["train_data"] = train_data
    if reference_data and trainer_method != "sft":
        base["reference_data"] = reference_data
    return trainer_method, {**base, **cfg.training, **overrides, **cfg.method_overrides.get(method, {})}


def realbase_dir(cfg: CompareConfig) -> Path:
    """The built real base behind ``model_name_or_path`` (e.g. ``smollm2-135m-safe``)."""
    from dualselect.evaluation.suites import realbase_root
    from dualselect.training.model import resolve_model_path

    path = Path(resolve_model_path(cfg.model_name_or_path))
    root = realbase_root(path)
    if root is None:
        raise ValueError(f"suites: {cfg.suites} needs a real base model (e.g. smollm2-135m-safe); got {path}")
    return root


def ensure_study_data(cfg: CompareConfig) -> Path | None:
    """With ``suites: real_study`` or ``real_study_val``, the study task's files in the real base
    (its attack set, its splits, the validation prompts;
    :func:`~dualselect.experiments.real_data.build_study_data` with ``task="gsm8k_final_step"``, a
    few seconds, no model), written when missing; returns their directory (None for another suite
    set)."""
    if cfg.suites not in STUDY_SETS:
        return None
    from dualselect.experiments.real_data import build_study_data
    from dualselect.experiments.real_task import TASK

    return build_study_data(realbase_dir(cfg), task=TASK)


def eval_suites(cfg: CompareConfig, model: str | None = None) -> dict:
    """The evaluation suites every run on ``model`` is scored on (same for every seed); ``model``
    defaults to the first organism instance, or the model behind ``cfg.model_name_or_path`` off
    the organism."""
    from dualselect.evaluation.suites import resolve_suites

    if cfg.on_real_base:  # the base's suites, whatever name the runs load it by
        model = str(realbase_dir(cfg))
    elif model is None:
        model = organism_path(cfg.instances()[0]) if cfg.on_organism else cfg.model_name_or_path
    return resolve_suites(cfg.suites, model, benchmarks=cfg.benchmarks, limits=cfg.suite_limits, seed=0)
