"""Config validation up front: value domains, types, paths and the run directory.

Everything here runs before a model is loaded, and every problem is reported in one line naming
where the value came from (``file.yaml: key`` or ``--flag``). ``field_errors`` is also called by
``SFTConfig.__post_init__`` so configs built in Python are held to the same domains.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dualselect.utils import ConfigError

# field -> (predicate, what the value must be). Checked for every config class that has the field.
# None is always accepted for optional fields (the default decides).
_gt0: Callable[[Any], bool] = lambda v: v > 0  # noqa: E731
_ge0: Callable[[Any], bool] = lambda v: v >= 0  # noqa: E731
_ge1: Callable[[Any], bool] = lambda v: v >= 1  # noqa: E731
_unit_open: Callable[[Any], bool] = lambda v: 0 <= v < 1  # noqa: E731
_frac: Callable[[Any], bool] = lambda v: 0 < v <= 1  # noqa: E731
DOMAINS: dict[str, tuple[Callable[[Any], bool], str]] = {
    # optimisation (TrainingArguments)
    "learning_rate": (_gt0, "> 0"),
    "weight_decay": (_ge0, ">= 0"),
    "max_grad_norm": (_ge0, ">= 0 (0 turns clipping off)"),
    "adam_beta1": (_unit_open, "in [0, 1)"),
    "adam_beta2": (_unit_open, "in [0, 1)"),
    "adam_epsilon": (_gt0, "> 0"),
    "warmup_steps": (_ge0, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "per_device_train_batch_size": (_ge1, ">= 1"),
    "per_device_eval_batch_size": (_ge1, ">= 1"),
    "gradient_accumulation_steps": (_ge1, ">= 1"),
    "num_train_epochs": (_gt0, "> 0"),
    "max_steps": (lambda v: v == -1 or v >= 1, ">= 1, or -1 to train num_train_epochs epochs"),
    "logging_steps": (_gt0, "> 0"),
    "save_steps": (_gt0, "> 0"),
    "save_total_limit": (_ge1, ">= 1"),
    "dataloader_num_workers": (_ge0, ">= 0"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    "data_seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    "neftune_noise_alpha": (_ge0, ">= 0 (null turns NEFTune off)"),
    "label_smoothing_factor": (_unit_open, "in [0, 1)"),
    # model, data, LoRA
    "max_length": (lambda v: v >= 2, ">= 2"),
    "lora_r": (lambda v: 1 <= v <= 65536, ">= 1 and <= 65536"),
    "lora_alpha": (_gt0, "> 0"),
    "lora_dropout": (_unit_open, "in [0, 1)"),
    # DualSelect (spec: docs/dualselect.md, symbols in parentheses)
    "selection_warmup_steps": (_ge1, ">= 1 (W: u is the sum of the warm-up gradients)"),
    "k_ref": (_ge1, ">= 1 (K_ref)"),
    "k_ref_fraction": (_frac, "in (0, 1]"),
    "k_task": (_ge1, ">= 1 (K_task)"),
    "task_token_fraction": (_frac, "in (0, 1]"),
    "mu_task": (_ge0, ">= 0 (mu_task)"),
    "mu_ref": (_ge0, ">= 0 (mu_ref)"),
    "nu": (_ge0, ">= 0 (nu)"),
    "tau_task": (_gt0, "> 0 (tau_task)"),
    "tau_ref": (_gt0, "> 0 (tau_ref)"),
    "eta": (_ge0, ">= 0 (eta, rho in the paper)"),
    "refresh_steps": (_ge1, ">= 1"),
    "refresh_angle": (lambda v: 0 < v <= 180, "in (0, 180] degrees"),
    "ref_pool_cap": (_ge1, ">= 1"),
    "refresh_prefilter": (_ge1, ">= 1 (M, candidates given per-sample gradients)"),
    "score_batch_size": (_ge1, ">= 1"),
    # baselines
    "alignment_steps": (_ge0, ">= 0"),
    "finetune_steps": (_ge1, ">= 1"),
    "rho": (_ge0, ">= 0"),
    "safety_fraction": (_frac, "in (0, 1]"),
    "kl_lambda": (_ge0, ">= 0"),
}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def field_errors(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, problem)`` for every value outside its domain (see ``DOMAINS``), every non-finite
    float, and the cross-field rules; ``values`` is a config or a ``{field: value}`` mapping."""
    if not isinstance(values, Mapping):
        values = {
            f.name: getattr(values, f.name) for f in dataclasses.fields(values) if hasattr(values, f.name)
        }
    errors: list[tuple[str, str]] = []
    for key, (ok, want) in DOMAINS.items():
        v = values.get(key)
        if v is None or key not in values:
            continue
        if not _num(v):
            errors.append((key, f"{key}={v!r}: expected a number {want}"))
        elif isinstance(v, float) and not math.isfinite(v):
            errors.append((key, f"{key}={v}: must be a finite number {want}"))
        elif not ok(v):
            errors.append((key, f"{key}={v}: must be {want}"))
    for key, v in values.items():
        if key not in DOMAINS and isinstance(v, float) and not math.isfinite(v):
            errors.append((key, f"{key}={v}: must be a finite number"))
    if values.get("save_strategy") in ("steps",) and values.get("save_steps") in (None, 0):
        errors.append(("save_steps", "save_strategy='steps' needs save_steps > 0"))
    return errors


def check_fields(cfg: Any) -> None:
    """Raise ``ValueError`` naming every field of ``cfg`` outside its domain (``__post_init__`` hook)."""
    errors = field_errors(cfg)
    if errors:
        raise ValueError(f"invalid {type(cfg).__name__}: " + "; ".join(msg for _, msg in errors))


def config_warnings(cfg: Any) -> list[str]:
    """Settings that are legal but probably not what was meant (printed before training)."""
    # (k_task >= the optimiser step's batch is warned about by DualSelectTrainer itself.)
    out = []
    cap, k_ref = getattr(cfg, "ref_pool_cap", None), getattr(cfg, "k_ref", None)
    if cap is not None and k_ref is not None and getattr(cfg, "k_ref_fraction", None) is None and k_ref > cap:
        out.append(f"k_ref={k_ref} > ref_pool_cap={cap}: clipped to {cap}, every scored reference is kept")
    return out


def pool_warnings(cfg: Any, pool_size: int) -> list[str]:
    """K_ref against the reference pool actually loaded (after skips and ``ref_pool_cap``)."""
    k_ref = getattr(cfg, "k_ref", None)
    if k_ref is None or getattr(cfg, "k_ref_fraction", None) is not None:
        return []
    scored = min(pool_size, getattr(cfg, "ref_pool_cap", None) or pool_size)
    if k_ref > scored:
        return [
            f"k_ref={k_ref} > the {scored} references scored per refresh (pool {pool_size}): "
            f"clipped to {scored}, so every scored reference is selected"
        ]
    return []


def warn(msg: str) -> None:
    """A config warning: one line on stderr (and through ``logging`` for log files)."""
    import logging

    logging.getLogger("dualselect").warning(msg)
    print(f"warning: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------ types


def _field_types(cfg_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cfg_cls)
    except Exception:  # noqa: BLE001 - an unresolvable hint is simply not type-checked
        return {}


def coerce_value(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (``int``, ``float``, ``bool``, ``str``,
    ``list[str]`` and their optionals); returns it converted where YAML is ambiguous (``1e-3`` is
    a string in YAML 1.1, an int is a valid float). Raises ``TypeError`` with what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        simple = [a for a in args if a is not type(None)]
        if len(simple) == 1:
            return coerce_value(key, value, simple[0])
        return value  # a union of several types: left to the config class
    if value is None:
        raise TypeError("must not be empty (null)")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value):
            return float(value)
        raise TypeError(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"expected a string, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str) and item is str:
            return [value]
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
        return [coerce_value(key, v, item) if item is not Any else v for v in value]
    return value  # enums, dicts, ...: the config class checks them


def coerce_types(cfg_cls: type, values: dict[str, Any], origin: Mapping[str, str]) -> dict[str, Any]:
    """Every value of ``values`` checked against ``cfg_cls``'s annotations; errors name the source."""
    hints = _field_types(cfg_cls)
    out, errors = {}, []
    for k, v in values.items():
        try:
            out[k] = coerce_value(k, v, hints[k]) if k in hints else v
        except TypeError as e:
            errors.append(f"{where(k, origin)}: {e}")
    if errors:
        raise ConfigError("; ".join(errors))
    return out


def where(key: str, origin: Mapping[str, str]) -> str:
    """``file.yaml: key``, ``--key`` or ``key`` (overrides), for error messages."""
    src = origin.get(key)
    if src == "flag":
        return f"--{key}"
    if src and src != "overrides":
        return f"{src}: {key}"
    return key


# ------------------------------------------------------------------------------ paths

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".tsv", ".txt", ".arrow")
MIN_FREE_MB_ENV = "DUALSELECT_MIN_FREE_MB"
MIN_FREE_MB = 100.0  # default of $DUALSELECT_MIN_FREE_MB


def env_min_free_mb() -> float:
    """``$DUALSELECT_MIN_FREE_MB`` (default 100): a finite number >= 0, else a ConfigError naming
    the variable (``nan`` would turn the free-space check off without a word)."""
    raw = os.environ.get(MIN_FREE_MB_ENV)
    if raw is None or not raw.strip():
        return MIN_FREE_MB
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{MIN_FREE_MB_ENV}={raw!r}: expected a number of megabytes >= 0")
    return value


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).suffix.lower() in DATA_SUFFIXES


def _is_named_model(name: str) -> bool:
    """``organism``, or a short name of the real-model registry (``dualselect.models``, when
    present), with or without the ``-safe`` suffix of its aligned base."""
    if name == "organism":
        return True
    try:
        from dualselect.models.registry import is_registered  # type: ignore[import-not-found]
    except ImportError:
        return False
    return bool(is_registered(name) or (name.endswith("-safe") and is_registered(name[: -len("-safe")])))


def check_model_path(name: str, key: str = "model_name_or_path") -> None:
    """A local model directory must hold a ``config.json`` (or an adapter); a hub id must be in
    the local cache when ``HF_HUB_OFFLINE`` is set. ``organism``, registered short names and
    ``.gguf`` files are fine."""
    if _is_named_model(name):
        return
    p = Path(name).expanduser()
    if p.exists():
        if p.is_file() and p.suffix.lower() == ".gguf":
            return
        if not p.is_dir():
            raise ConfigError(f"{key}={name!r}: not a directory (a model directory or hub id)")
        if not ((p / "config.json").exists() or (p / "adapter_config.json").exists()):
            raise ConfigError(f"{key}={name!r}: not a model directory (no config.json)")
        return
    is_hub_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) is not None and not name.startswith(".")
    if not is_hub_id:
        raise ConfigError(f"{key}={name!r}: no such directory")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(name, "config.json")
        except Exception:  # noqa: BLE001 - a malformed id is reported below
            hit = None
        if not isinstance(hit, str):
            raise ConfigError(
                f"{key}={name!r}: no such directory, and not in the local hub cache (HF_HUB_OFFLINE is set)"
            )


def check_data_path(name: str | None, key: str) -> None:
    """A data source that is plainly a local file (a path or a data-file suffix) must exist."""
    if name is None or not isinstance(name, str):
        return
    p = Path(name).expanduser()
    if p.exists():
        return
    if _looks_local(name):
        raise ConfigError(f"{key}={name!r}: no such file or directory")


def check_output_dir(
    path: str | os.PathLike, key: str = "output_dir", min_free_mb: float | None = None
) -> None:
    """The output directory (or its nearest existing parent) must be a writable directory with at
    least ``min_free_mb`` free (default ``$DUALSELECT_MIN_FREE_MB`` or 100). Nothing is created."""
    need = env_min_free_mb() if min_free_mb is None else min_free_mb
    p = Path(path).expanduser()
    anc = p
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{key}={str(path)!r}: {anc} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=anc, prefix=".dualselect-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{key}={str(path)!r}: cannot write in {anc}: {e.strerror or e}") from None
    free = shutil.disk_usage(anc).free / 2**20
    if free < need:
        raise ConfigError(
            f"{key}={str(path)!r}: only {free:.0f} MB free on {anc} (need at least {need:.0f} MB; "
            "set DUALSELECT_MIN_FREE_MB to change)"
        )


def check_paths(cfg: Any) -> None:
    """Model, data and output paths of a training config, before anything loads."""
    model = getattr(cfg, "model_name_or_path", None)
    if isinstance(model, str):
        check_model_path(model)
    for key in ("train_data", "reference_data"):
        check_data_path(getattr(cfg, key, None), key)
    for entry in getattr(cfg, "reference_pools", None) or []:
        name, _, path = str(entry).partition("=")
        check_data_path(path or None, f"reference_pools[{name}]")
    if getattr(cfg, "output_dir", None):
        check_output_dir(cfg.output_dir)


# ------------------------------------------------------------------------------ run directory


def run_artifacts(out: Path) -> list[Path]:
    """The entries of ``out`` that a previous run wrote: the ones its manifest lists (see
    ``training/rundir.py``); without a manifest, the files only a run writes (an older run)."""
    from dualselect.training.rundir import (
        MANIFEST,
        RUN_MARKER_GLOBS,
        RUN_MARKERS,
        manifest_entries,
        read_manifest,
    )

    m = read_manifest(out)
    if m is not None:  # the files that say "a run" first, for messages
        order = {name: i for i, name in enumerate(RUN_MARKERS)}
        listed = sorted(manifest_entries(out, m), key=lambda p: (order.get(p.name, len(order)), p.name))
        return [*listed, out / MANIFEST]
    found = [out / f for f in RUN_MARKERS if (out / f).exists()]
    for g in RUN_MARKER_GLOBS:
        found += sorted(out.glob(g))
    config = out / "config.yaml"
    if not found and config.is_file():  # a run that died before its log: config.yaml has `method`
        try:
            import yaml

            found = [config] if "method" in (yaml.safe_load(config.read_text(encoding="utf-8")) or {}) else []
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
            found = []
    return found


def _names(paths: list[Path] | list[str], n: int = 5) -> str:
    names = [p if isinstance(p, str) else p.name for p in paths]
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def prepare_run_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> list[str]:
    """Refuse an output directory that is not empty, unless ``overwrite`` (then the previous
    run's files, the ones its ``run_manifest.json`` lists, are removed and named) or ``resume``
    (continue from its checkpoints). A file no run wrote is never deleted, and never written
    over: a directory holding one whose name a run writes (README.md, tokenizer.json, ...) is
    refused even with ``overwrite``, and so is a run without a manifest (an older version).
    Returns the names removed."""
    from dualselect.training.rundir import LOCK, MANIFEST, is_run_name, note, read_manifest

    out = Path(out)
    if not out.exists():
        return []
    if not out.is_dir():
        raise ConfigError(f"output_dir={str(out)!r}: is a file, not a directory")
    entries = sorted(e for e in out.iterdir() if e.name != LOCK)
    if not entries or resume:
        return []
    manifest = read_manifest(out)
    ours = run_artifacts(out)
    if not overwrite:
        what = "holds another run" if ours else "is not empty"
        raise ConfigError(
            f"output_dir={str(out)!r} {what} ({_names(ours or entries)}); choose another output_dir, "
            "or pass --overwrite to replace the run (only the files its run_manifest.json lists are removed)"
        )
    if manifest is None and ours:
        raise ConfigError(
            f"output_dir={str(out)!r} holds a run without {MANIFEST} (written by an older dualselect: "
            f"{_names(ours)}); --overwrite cannot tell its files from yours, so nothing was removed: "
            "delete them yourself or choose another output_dir"
        )
    others = [e for e in entries if e not in ours]
    clash = [e for e in others if is_run_name(e.name)]
    if clash:
        raise ConfigError(
            f"output_dir={str(out)!r} holds {_names(clash)}, which no run wrote and a run writes: "
            "nothing was removed; move them or choose another output_dir"
        )
    for p in ours:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    removed = [p.name for p in ours if p.name != MANIFEST]
    if removed:
        note(f"output_dir {out}: removed the previous run's {len(removed)} entries: {_names(removed, 8)}")
    if others:
        note(f"output_dir {out}: kept {len(others)} entries no run wrote: {_names(others)}")
    return removed
