"""One entry point for every training method: config from YAML and/or flags, train, save.

A run directory holds the adapter (``adapter_model.safetensors``), the resolved config
(``config.yaml``), the training log (``log.json``) and, for selection methods, their logs.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import yaml

from dualselect.training.sft import SFTConfig, SFTTrainer
from dualselect.utils import write_json, write_yaml

# name -> (config class, trainer class). Methods register themselves in training/__init__.py.
METHODS: dict[str, tuple[type, type]] = {"sft": (SFTConfig, SFTTrainer)}


class ConfigError(ValueError):
    """A config file or flag is wrong; the message names the file and the key."""


def load_config(
    method: str,
    yaml_path: str | None = None,
    argv: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
):
    """Build ``METHODS[method]``'s config: YAML values, then ``overrides``, then CLI flags win."""
    from transformers import HfArgumentParser

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    cfg_cls = METHODS[method][0]
    values: dict[str, Any] = {}
    if yaml_path:
        try:
            data = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{yaml_path}: cannot read config: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{yaml_path}: top level must be a mapping of config keys")
        data.pop("method", None)
        values.update(data)
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        where = yaml_path or "overrides"
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for method {method!r} "
            f"(see `dualselect train --method {method} --help`)"
        )
    parser = HfArgumentParser(cfg_cls)
    parser.set_defaults(**values)
    try:
        (cfg,) = parser.parse_args_into_dataclasses(args=argv or [])
    except ValueError as e:
        raise ConfigError(f"{yaml_path or 'config'}: {e}") from e
    return cfg


def default_train_data(cfg) -> str | None:
    """With the organism and no data given, train on its RedOrca-style task set."""
    if cfg.train_data is None and cfg.model_name_or_path == "organism":
        from dualselect.organism.build import build_organism

        return str(build_organism() / "data" / "redorca_train.jsonl")
    return cfg.train_data


def run_training(method: str, cfg, **trainer_kwargs: Any):
    """Train ``method`` with ``cfg`` and save the run. Returns the trainer."""
    cfg_cls, trainer_cls = METHODS[method]
    data = default_train_data(cfg)
    if data is None:
        raise ConfigError("no training data: set train_data (a file, dataset directory or hub name)")
    t0 = time.time()
    trainer = trainer_cls(model=cfg.model_name_or_path, args=cfg, train_dataset=data, **trainer_kwargs)
    # resume_from_checkpoint (a TrainingArguments field): a checkpoint directory, or "true"/"last"
    # for the newest checkpoint-N in output_dir; the method state is restored with it
    resume = cfg.resume_from_checkpoint
    if isinstance(resume, str) and resume.strip().lower() in ("true", "last"):
        resume = True
    trainer.train(resume_from_checkpoint=resume or None)
    out = Path(cfg.output_dir)
    trainer.save_model(str(out))
    tokens = trainer.global_supervised_tokens()  # every process takes part in the sum
    if not trainer.args.should_save:  # several processes: the main one writes the run files
        return trainer
    resolved = {"method": method, **{k: v for k, v in cfg.to_dict().items() if not k.startswith("_")}}
    resolved["train_data"] = data
    write_yaml(out / "config.yaml", resolved)
    log = {
        "wall_seconds": round(time.time() - t0, 2),
        "optimizer_steps": trainer.state.global_step,
        "supervised_tokens": tokens,
        "log_history": trainer.state.log_history,
    }
    if hasattr(trainer, "state_counts"):
        log["state_counts"] = trainer.state_counts  # Lisa: steps spent in each state
    write_json(out / "log.json", log)
    return trainer
