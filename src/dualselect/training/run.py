"""One entry point for every training method: config from YAML and/or flags, train, save.

A run directory holds the adapter (``adapter_model.safetensors``), the resolved config
(``config.yaml``), the training log (``log.json``) and, for selection methods, their logs.

Nothing is silent: the config is checked (types, value domains, model/data paths, a writable
output directory with free space) before a model loads; a directory holding another run is
refused unless ``overwrite``; a diverging run stops at the first non-finite gradient or weight,
saves no adapter and says so in ``log.json``; the adapter is written to a temporary directory and
moved into place, so a failed save leaves no partial run, and ``run_manifest.json``, written last,
marks the run complete (``eval`` and ``export`` refuse a run without it).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from dualselect.training.validation import (
    FieldErrors,
    check_paths,
    coerce_types,
    config_warnings,
    pool_warnings,
    prepare_run_dir,
)
from dualselect.utils import ConfigError, load_yaml_config, warn, write_json, write_yaml

# The built-in trainers: name -> (config class, trainer class) as "module:Class", imported on
# first use.
TRAINERS: dict[str, tuple[str, str]] = {
    "sft": ("dualselect.training.sft:SFTConfig", "dualselect.training.sft:SFTTrainer"),
    "dualselect": (
        "dualselect.training.dualselect_config:DualSelectConfig",
        "dualselect.training.dualselect_trainer:DualSelectTrainer",
    ),
    "safeinstr": (
        "dualselect.training.safeinstr:SafeInstrConfig",
        "dualselect.training.safeinstr:SafeInstrTrainer",
    ),
    "lisa": ("dualselect.training.lisa:LisaConfig", "dualselect.training.lisa:LisaTrainer"),
    "kl": ("dualselect.training.kl_preservation:KLConfig", "dualselect.training.kl_preservation:KLTrainer"),
    "l2_prev": ("dualselect.training.l2_prev:L2PrevConfig", "dualselect.training.l2_prev:L2PrevTrainer"),
}


def _import(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


class _Methods(MutableMapping):
    """name -> (config class, trainer class): the built-in ``TRAINERS`` (imported when first
    read, so that help and config errors need no torch) plus any registered at run time."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[type, type]] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        for name, (cfg_ref, trainer_ref) in TRAINERS.items():
            if name not in self._data:
                self._data[name] = (_import(cfg_ref), _import(trainer_ref))
        self._loaded = True

    def __getitem__(self, name: str) -> tuple[type, type]:
        if name not in self._data:
            self._load()
        return self._data[name]

    def __setitem__(self, name: str, value: tuple[type, type]) -> None:
        self._data[name] = value

    def __delitem__(self, name: str) -> None:
        self._load()
        del self._data[name]

    def __contains__(self, name: object) -> bool:
        return name in self._data or name in TRAINERS

    def __iter__(self):
        self._load()
        return iter(self._data)

    def __len__(self) -> int:
        self._load()
        return len(self._data)

    def names(self) -> set[str]:
        """Every method name, without importing a trainer."""
        return set(self._data) | set(TRAINERS)


METHODS = _Methods()

__all__ = [
    "METHODS",
    "ConfigError",
    "default_train_data",
    "load_config",
    "method_names",
    "resolve_method",
    "run_training",
]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _flag_keys(argv: list[str]) -> set[str]:
    """Config keys given as ``--key``, ``--key=value`` or ``--no_key`` in ``argv``."""
    keys = set()
    for a in argv:
        if a.startswith("--"):
            k = a[2:].split("=", 1)[0].replace("-", "_")
            keys.add(k)
            if k.startswith("no_"):
                keys.add(k[3:])
    return keys


def load_config(
    method: str,
    yaml_path: str | None = None,
    argv: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
):
    """Build ``method``'s config: a preset's settings, YAML values, ``overrides``, then CLI flags
    (each wins over the ones before). ``method`` is a trainer (``METHODS``) or a named preset
    (``training/presets.py``: baselines and ablations, as ``compare`` and ``demo`` accept).

    Every problem is a one-line :class:`ConfigError` naming the file and key (or the flag):
    YAML that does not parse, is not a mapping, repeats a key or carries a python tag; unknown
    keys; values of the wrong type; values outside their domain (each field's metadata; ``validation.check_fields``).
    A YAML file may ``extends:`` base files (relative paths; cycles are errors).
    """
    trainer_method, preset = resolve_method(method)
    cfg_cls = METHODS[trainer_method][0]
    argv = list(argv or [])
    values: dict[str, Any] = dict(preset)  # a preset's settings come first: YAML and flags win
    origin: dict[str, str] = {k: f"preset {method}" for k in preset}
    if yaml_path:
        data, file_origin = load_yaml_config(yaml_path)
        origin.update(file_origin)
        file_method = data.pop("method", None)
        if file_method is not None and file_method not in (method, trainer_method):
            warn(
                f"{origin.get('method', yaml_path)}: method {file_method!r} is overridden by --method {method}"
            )
        values.update(data)
    for k in overrides or {}:
        origin[k] = "overrides"
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(cfg_cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        sources = sorted({origin.get(k, "overrides") for k in unknown})
        raise ConfigError(
            f"{', '.join(sources)}: unknown key(s) {unknown} for method {method!r} "
            f"(see `dualselect train --method {method} --help`)"
        )
    values = coerce_types(cfg_cls, values, origin)
    parser = config_parser(cfg_cls)
    parser.set_defaults(**values)
    namespace, rest = parser.parse_known_args(args=argv)
    if rest:
        raise ConfigError(
            f"unrecognized arguments: {' '.join(rest)} (see `dualselect train --method {method} --help`)"
        )
    for k in _flag_keys(argv) & known:
        origin[k] = "flag"
    inputs = {k: v for k, v in vars(namespace).items() if k in known}
    try:
        return cfg_cls(**inputs)  # the one check of every value (SFTConfig.__post_init__)
    except FieldErrors as e:
        raise ConfigError("; ".join(_with_source(key, msg, origin) for key, msg in e.errors)) from None
    except (ValueError, TypeError) as e:
        srcs = sorted({s for s in origin.values() if s not in ("flag", "overrides")})
        raise ConfigError(f"{', '.join(srcs) + ': ' if srcs else ''}{_one_line(e)}") from None


def config_parser(cfg_cls: type):
    """``HfArgumentParser`` for ``cfg_cls`` that raises a one-line :class:`ConfigError` instead of
    printing usage and exiting; the ``domain`` metadata key (ours, not argparse's) is left out."""
    import copy
    import types

    from transformers import HfArgumentParser

    class _Parser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, field):
            if "domain" in field.metadata:
                field = copy.copy(field)
                field.metadata = types.MappingProxyType(
                    {k: v for k, v in field.metadata.items() if k != "domain"}
                )
            HfArgumentParser._parse_dataclass_field(parser, field)

        def error(self, message: str) -> None:  # argparse would print the whole usage and exit
            raise ConfigError(_one_line(message))

    return _Parser(cfg_cls, allow_abbrev=False)  # --learning_rat is not --learning_rate


def method_names() -> list[str]:
    """Every name ``train --method``, ``compare`` and ``demo`` accept: trainers and presets."""
    from dualselect.training.presets import PRESETS

    return sorted(METHODS.names() | set(PRESETS))


def resolve_method(method: str) -> tuple[str, dict[str, Any]]:
    """``(trainer method, preset settings)`` for a trainer or preset name; ConfigError otherwise."""
    from dualselect.training.presets import PRESETS

    if method in PRESETS:
        trainer_method, preset, _ = PRESETS[method]
        return trainer_method, dict(preset)
    if method in METHODS:
        return method, {}
    raise ConfigError(f"unknown method {method!r}; choose from {method_names()}")


def _with_source(key: str, msg: str, origin: dict[str, str]) -> str:
    """``msg`` prefixed with the file that set ``key``, or the flag that did."""
    src = origin.get(key)
    if src == "flag":
        return f"--{key}: {msg}"
    return f"{src}: {msg}" if src and src != "overrides" else msg


def default_train_data(cfg) -> str | None:
    """``train_data``, or with the organism (by name or directory) its RedOrca-style task set."""
    if cfg.train_data is not None:
        return cfg.train_data
    from dualselect.training.model import named_models

    return named_models().default_train_data(cfg.model_name_or_path)


# Keys that may differ when a run resumes without changing what it trains: where and how often it
# logs, saves and evaluates. Any other difference from the checkpoint's config needs
# ``allow_resume_changes`` (``--resume-with-changes``); a different method is always refused.
RESUME_FREE_KEYS = frozenset(
    {
        "output_dir",
        "resume_from_checkpoint",
        "logging_steps",
        "logging_strategy",
        "logging_first_step",
        "logging_nan_inf_filter",
        "save_steps",
        "save_strategy",
        "save_total_limit",
        "save_on_each_node",
        "save_only_model",
        "report_to",
        "run_name",
        "disable_tqdm",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "dataloader_num_workers",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "dataloader_pin_memory",
        "skip_memory_metrics",
        "eval_data",
        "eval_split",
        "eval_strategy",
        "eval_steps",
        "eval_delay",
        "eval_on_start",
        "per_device_eval_batch_size",
        "eval_accumulation_steps",
    }
)


def _resolved_config(method: str, cfg, data: str | None) -> dict[str, Any]:
    """What ``config.yaml`` records: the method name and every config field, data resolved."""
    resolved = {"method": method, **{k: v for k, v in cfg.to_dict().items() if not k.startswith("_")}}
    resolved["train_data"] = data
    return resolved


def check_resume_config(
    out: Path, resume: Any, resolved: dict[str, Any], allow_changes: bool = False
) -> dict[str, Any] | None:
    """Compare a resumed run's config with the one recorded beside its checkpoint (``config.yaml``
    of the run directory holding it). A different method is refused; different training
    hyperparameters are refused unless ``allow_changes``, and are then returned as
    ``{"checkpoint", "changed": {key: {"before", "after"}}}`` for ``config.yaml``. None without a
    recorded config (a warning: nothing can be compared)."""
    import yaml

    ckpt = Path(resume) if _resume_arg(resume) is not True else out
    run_dir = ckpt.parent if ckpt.name.startswith("checkpoint-") else ckpt
    recorded_path = run_dir / "config.yaml"
    try:
        recorded = yaml.safe_load(recorded_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        warn(f"resume_from_checkpoint: no config.yaml in {run_dir}; the resumed config is not checked")
        return None
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{recorded_path}: cannot read the checkpoint's config ({_one_line(e)})") from None
    if not isinstance(recorded, dict) or "method" not in recorded:
        raise ConfigError(f"{recorded_path}: not a run's config (no method)")
    if recorded["method"] != resolved["method"]:
        raise ConfigError(
            f"resume_from_checkpoint: the checkpoint in {run_dir} was trained with method "
            f"{recorded['method']!r}, not {resolved['method']!r}; resume with --method {recorded['method']}"
        )
    history = recorded.get("resumed") or []
    changed = {
        k: {"before": recorded.get(k), "after": resolved.get(k)}
        for k in sorted(set(recorded) | set(resolved))
        if k not in RESUME_FREE_KEYS and k not in ("method", "resumed") and recorded.get(k) != resolved.get(k)
    }
    if changed and not allow_changes:
        diff = ", ".join(f"{k}: {v['before']!r} -> {v['after']!r}" for k, v in changed.items())
        raise ConfigError(
            f"resume_from_checkpoint: the config differs from the checkpoint's ({recorded_path}): {diff}; "
            "resume with the same values, or pass --resume-with-changes (allow_resume_changes=True) "
            "to change them (both are recorded in config.yaml)"
        )
    return {"resumed": [*history, {"checkpoint": str(resume), "changed": changed}]}


def run_training(
    method: str,
    cfg,
    *,
    overwrite: bool = False,
    trainer_cls: type | None = None,
    allow_resume_changes: bool = False,
    **trainer_kwargs: Any,
):
    """Train ``method`` with ``cfg`` and save the run. Returns the trainer. ``trainer_cls`` replaces
    the method's trainer with a subclass of it (e.g. the real base's alignment objective).

    Before any model loads: the config's value domains, model/data paths and output directory are
    checked, the directory is locked against a second training process, and an output directory
    that is not empty is refused unless ``overwrite`` (the files the previous run's manifest lists
    are then removed) or ``cfg.resume_from_checkpoint`` is set. A resumed run's config is
    compared with the checkpoint's (:func:`check_resume_config`): another method is refused, other
    hyperparameters need ``allow_resume_changes`` and are recorded (before and after) in
    ``config.yaml``. A run that saves checkpoints writes ``config.yaml`` before training, so its
    checkpoints can be checked on resume. A run that diverges raises
    :class:`~dualselect.training.callbacks.TrainingDiverged` and saves no adapter. The run's
    ``run_manifest.json`` (``training/rundir.py``) is written last and marks it complete.
    """
    method_cls = METHODS[resolve_method(method)[0]][1]
    if trainer_cls is None:
        trainer_cls = method_cls
    elif not issubclass(trainer_cls, method_cls):
        raise TypeError(f"trainer_cls {trainer_cls.__name__} is not a subclass of {method_cls.__name__}")
    check_paths(cfg)
    from dualselect.training.rundir import RunLock

    out = Path(cfg.output_dir)
    main = getattr(cfg, "process_index", 0) == 0
    lock = RunLock(out) if main else None
    # The main process locks the directory, removes a previous run (with overwrite) and starts the
    # run's manifest; the other processes of a distributed run learn the outcome and stop with it.
    _on_main_then_agree(lambda: _start_run(cfg, out, lock, overwrite), main)
    try:
        return _train_and_save(method, cfg, out, trainer_cls, trainer_kwargs, allow_resume_changes)
    finally:
        if lock is not None:
            from dualselect.training.rundir import drop_manifest_if_unused

            drop_manifest_if_unused(out)  # failed before writing anything: no run here
            lock.release()


def _start_run(cfg, out: Path, lock, overwrite: bool) -> None:
    from dualselect.training.rundir import start_manifest

    resume = bool(getattr(cfg, "resume_from_checkpoint", None))
    lock.acquire()
    try:
        prepare_run_dir(out, overwrite=overwrite, resume=resume)
        start_manifest(out, resume=resume)
    except BaseException:
        lock.release()
        raise


def _on_main_then_agree(fn, main: bool) -> None:
    """Run ``fn`` on the main process; in a distributed run every process then raises the
    ConfigError it raised (or none does), so no process waits for a peer that stopped."""
    err: str | None = None
    if main:
        try:
            fn()
        except ConfigError as e:
            err = str(e)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            box = [err]
            dist.broadcast_object_list(box, src=0)
            err = box[0]
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if err is not None:
        raise ConfigError(err)


def _train_and_save(
    method: str, cfg, out: Path, trainer_cls: type, trainer_kwargs: dict, allow_resume_changes: bool = False
):
    from dualselect.training.callbacks import DivergenceCallback, TrainingDiverged, assert_finite_params
    from dualselect.training.rundir import base_fingerprint, finish_manifest

    resume = getattr(cfg, "resume_from_checkpoint", None)
    for msg in config_warnings(cfg):
        warn(msg)
    data = default_train_data(cfg)
    if data is None:
        raise ConfigError("no training data: set train_data (a file, dataset directory or hub name)")
    resolved = _resolved_config(method, cfg, data)
    if _resume_arg(resume) is not None:
        resolved.update(check_resume_config(out, resume, resolved, allow_resume_changes) or {})
    main_process = getattr(cfg, "process_index", 0) == 0
    if main_process and (resume or getattr(cfg, "save_strategy", "no") not in ("no", None)):
        write_yaml(out / "config.yaml", resolved)  # what the checkpoints were trained with
    t0 = time.time()
    trainer = trainer_cls(model=cfg.model_name_or_path, args=cfg, train_dataset=data, **trainer_kwargs)
    if getattr(trainer, "reference_dataset", None) is not None and hasattr(cfg, "k_ref"):
        for msg in pool_warnings(cfg, len(trainer.reference_dataset)):
            warn(msg)
    trainer.add_callback(DivergenceCallback())
    try:
        try:
            # resume_from_checkpoint (a TrainingArguments field): a checkpoint directory, or
            # "true"/"last" for the newest complete checkpoint-N in output_dir; the method state
            # comes with it
            trainer.train(resume_from_checkpoint=_resume_arg(resume))
        except ValueError as e:
            from dualselect.selection.scoring import NonFiniteScores

            if not isinstance(e, NonFiniteScores):
                raise
            raise TrainingDiverged(
                f"at optimiser step {trainer.state.global_step + 1}, DualSelect's {e}",
                step=trainer.state.global_step,
            ) from None
        assert_finite_params(trainer.model)
    except TrainingDiverged as e:
        _close_progress_bars(trainer)
        ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2] or 0))
        e.last_good_checkpoint = str(ckpts[-1]) if ckpts else None
        log = {
            "status": "diverged",
            "error": str(e),
            "diverged_at_step": e.step,
            "last_good_checkpoint": e.last_good_checkpoint,
        }
        if e.last_good_checkpoint:
            e.args = (f"{e.args[0]} Last good checkpoint: {e.last_good_checkpoint}",)
        if trainer.args.should_save:  # this process's count: no collective on the way out
            _write_log(out, trainer, t0, log, trainer.supervised_tokens)
            finish_manifest(out, "diverged")
        raise
    if trainer.args.world_size > 1:  # every process takes part in saving; the main one writes
        trainer.save_model(str(out))
    else:
        _save_model_atomically(trainer, out)
    tokens = trainer.global_supervised_tokens()  # every process takes part in the sum
    if not trainer.args.should_save:  # several processes: the main one writes the run files
        return trainer
    write_yaml(out / "config.yaml", resolved)
    _write_log(out, trainer, t0, {"status": "completed"}, tokens)
    # last: the run is complete (eval and export check it), with the base it was trained on
    finish_manifest(
        out, "complete", base_fingerprint=base_fingerprint(trainer.model, trainer.processing_class)
    )
    return trainer


def _close_progress_bars(trainer) -> None:
    """End the Trainer's progress bar line, so the error that follows starts a line of its own."""
    from transformers.trainer_callback import ProgressCallback

    for cb in trainer.callback_handler.callbacks:
        bar = getattr(cb, "training_bar", None) if isinstance(cb, ProgressCallback) else None
        if bar is not None:
            bar.close()
            cb.training_bar = None


def _resume_arg(resume: Any) -> Any:
    if resume in (None, "", False):
        return None
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        return True
    return resume


def _write_log(out: Path, trainer, t0: float, extra: dict[str, Any], tokens: int) -> None:
    log = {
        **extra,
        "wall_seconds": round(time.time() - t0, 2),
        "optimizer_steps": trainer.state.global_step,
        "supervised_tokens": tokens,
        "log_history": trainer.state.log_history,
    }
    if hasattr(trainer, "state_counts"):
        log["state_counts"] = trainer.state_counts  # Lisa: steps spent in each state
    write_json(out / "log.json", log)


def _save_model_atomically(trainer, out: Path) -> None:
    """``trainer.save_model`` into a temporary sibling directory, then each file moved into
    ``out`` (``os.replace``): a failed save (disk full, permissions) leaves no partial file."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".save-"))
    try:
        trainer.save_model(str(tmp))
        for entry in sorted(tmp.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
