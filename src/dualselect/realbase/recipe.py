"""The aligned real base's recipe: :class:`RealBaseConfig`, read from a YAML file, and its cache key.

A recipe file sets any of the fields below (``splits:`` is a mapping of :class:`SplitConfig`
fields); the others keep their defaults, which are the shipped SmolLM2-135M recipe
(``recipes/smollm2-135m-safe.yaml``, a complete file: a test checks the two agree). Unknown keys,
wrong types and out-of-range values are one-line errors naming the file and the key.

The cache key is :func:`dualselect.cache.content_key` of the full config and of every input file
(:func:`input_files`): the benchmark files, the prompt lists (``prompts.yaml``) and, for a
registered base or a local checkpoint, the base model's files. Equal configs on equal bytes share
a key; any field or any input byte changes it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dualselect.cache import cache_root, content_key
from dualselect.realbase.data import FILES, SplitConfig, shared_data_dir
from dualselect.realbase.prompts import PROMPTS_FILE
from dualselect.utils import ConfigError, read_yaml, safe_name

RECIPES_DIR = Path(__file__).with_name("recipes")
SAFE_SUFFIX = "-safe"
UNLIKELIHOOD_PROMPTS = ("contrast", "benign")
ALIGN_SELECT = ("first", "best")
MARKER = "realbase.json"  # written last by a build: a directory without it is incomplete


@dataclass
class RealBaseConfig:
    """Everything that determines the aligned real base (with the input files, its cache key)."""

    # the chat model to align: a registered name (smollm2-135m), a local checkpoint or a hub id
    base: str = "smollm2-135m"
    splits: SplitConfig = field(default_factory=SplitConfig)
    # the shipped model's own answers: greedy, this many new tokens, cut at the last sentence end
    answer_tokens: int = 64
    # the alignment LoRA (merged afterwards)
    lora_r: int = 512
    lora_alpha: int = 1024
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    )
    learning_rate: float = 2e-4
    max_steps: int = 150
    batch_size: int = 8
    max_length: int = 160
    # refusal unlikelihood (training/unlikelihood.py; 0 = plain SFT) on the contrast prompts ("contrast")
    # or on every benign prompt of the splits ("benign"), drawn this many per optimiser step
    unlikelihood_weight: float = 0.0
    unlikelihood_prompts: str = "contrast"
    unlikelihood_prompts_per_step: int = 4
    # the contrast prompts' own answers repeated this often in the alignment rows
    contrast_repeat: int = 1
    # the alignment LoRA's first training seed (init, data order); None = splits.seed
    align_seed: int | None = None
    # calibration (realbase/calibrate.py): the base keeps W0 + s * dW for the largest s of this grid
    # whose validation over-refusal is <= calib_max_over_refusal and validation refusal >=
    # calib_min_refusal (greedy, calib_tokens new tokens, keyword judge). [1.0] with
    # align_attempts 1 = no calibration: the merged model is kept as trained
    delta_scales: list[float] = field(default_factory=lambda: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    calib_max_over_refusal: float = 0.10
    calib_min_refusal: float = 0.90
    calib_tokens: int = 40
    # trainings with seeds align_seed, align_seed + 1, ... calibrated on validation prompts
    align_attempts: int = 3
    # which training is kept (calibrate.choose_attempt): "best" trains all align_attempts and keeps,
    # of those meeting every target, the highest validation refusal minus over-refusal; "first"
    # stops at the first meeting every target. None meeting them: the best by that key
    align_select: str = "best"
    # the task as a target: a scale must keep strict exact match on this many validation task rows
    # (calibrate.calibration_task_rows) at least the shipped model's minus calib_max_task_drop
    # (0 rows: no task target)
    calib_task_rows: int = 150
    calib_max_task_drop: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config") -> RealBaseConfig:
        """A validated config from a mapping of fields (``splits`` a mapping); ``source`` names
        the file in the one-line errors."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: a recipe is a mapping of RealBaseConfig fields")
        d = dict(d)
        splits = d.pop("splits", {}) or {}
        if not isinstance(splits, dict):
            raise ConfigError(f"{source}: splits: a mapping of SplitConfig fields")
        cfg = cls(
            splits=SplitConfig(**_checked(SplitConfig, splits, source, "splits.")),
            **_checked(cls, d, source, "", skip=("splits",)),
        )
        cfg.validate(source)
        return cfg

    def cache_key(self, data_dir: str | os.PathLike | None = None) -> str:
        """Content key of the full config and of :func:`input_files`."""
        return content_key(self.to_dict(), input_files(self, data_dir))

    @property
    def calibrating(self) -> bool:
        return [float(x) for x in self.delta_scales] != [1.0] or self.align_attempts > 1

    @property
    def first_align_seed(self) -> int:
        return self.splits.seed if self.align_seed is None else self.align_seed

    def validate(self, source: str = "config") -> None:
        """Raise a :class:`ConfigError` naming ``source`` and the first bad field."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "splits"}
        for k, v in _checked(type(self), own, source, "").items():
            setattr(self, k, v)  # ints of float fields as floats: equal configs, equal keys
        _checked(SplitConfig, asdict(self.splits), source, "splits.")

        def bad(key: str, want: str) -> ConfigError:
            value = getattr(self, key.removeprefix("splits."), None)
            if key.startswith("splits."):
                value = getattr(self.splits, key.removeprefix("splits."))
            return ConfigError(f"{source}: {key}: {want}, not {value!r}")

        if not self.base.strip():
            raise bad("base", "a registered name, a local path or a hub id")
        for k in ("answer_tokens", "lora_r", "lora_alpha", "max_steps", "batch_size", "max_length"):
            if getattr(self, k) < 1:
                raise bad(k, "at least 1")
        for k in ("unlikelihood_prompts_per_step", "contrast_repeat", "align_attempts"):
            if getattr(self, k) < 1:
                raise bad(k, "at least 1")
        for k in ("advbench_eval", "attack_harmful", "reference_harmful", "task_train", "task_test"):
            if getattr(self.splits, k) < 0:
                raise bad(f"splits.{k}", "0 or more")
        if not self.lora_target_modules:
            raise bad("lora_target_modules", "a non-empty list of module names")
        if not self.learning_rate > 0:
            raise bad("learning_rate", "a positive number")
        if self.unlikelihood_weight < 0:
            raise bad("unlikelihood_weight", "0 (off) or more")
        if self.unlikelihood_prompts not in UNLIKELIHOOD_PROMPTS:
            raise bad("unlikelihood_prompts", f"one of {UNLIKELIHOOD_PROMPTS}")
        if not self.delta_scales or any(not 0 < float(x) <= 2 for x in self.delta_scales):
            raise bad("delta_scales", "a non-empty list of scales in (0, 2]")
        for k in ("calib_max_over_refusal", "calib_min_refusal", "calib_max_task_drop"):
            if not 0 <= getattr(self, k) <= 1:
                raise bad(k, "a rate in [0, 1]")
        if self.align_select not in ALIGN_SELECT:
            raise bad("align_select", f"one of {ALIGN_SELECT}")
        if self.calib_task_rows < 0:
            raise bad("calib_task_rows", "0 (no task target) or more")
        if self.calib_tokens < 32:
            raise bad("calib_tokens", "at least 32 (refusal detection)")


def _allowed(tp: Any) -> tuple[type, ...]:
    """The runtime types a field of annotation ``tp`` accepts (ints for floats; no bools)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return sum((_allowed(a) for a in typing.get_args(tp)), ())
    if tp is type(None):
        return (type(None),)
    if origin is list:
        return (list,)
    return (int, float) if tp is float else (tp,)


def _checked(cls: type, d: dict, source: str, prefix: str, skip: tuple[str, ...] = ()) -> dict:
    """``d`` with unknown keys and wrong types refused (one line naming ``source`` and the key),
    ints given for float fields (and in float lists) turned into floats, so equal configs hash
    equally."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for k, v in d.items():
        if k in skip:
            continue
        if k not in known:
            raise ConfigError(f"{source}: unknown key '{prefix}{k}' (known: {', '.join(sorted(known))})")
        tp = hints[k]
        ok = _allowed(tp)
        if isinstance(v, bool) and bool not in ok or not isinstance(v, ok):
            raise ConfigError(f"{source}: {prefix}{k}: expected {_type_name(tp)}, not {v!r}")
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if any(isinstance(x, bool) or not isinstance(x, _allowed(item)) for x in v):
                raise ConfigError(f"{source}: {prefix}{k}: expected {_type_name(tp)}, not {v!r}")
            v = [float(x) for x in v] if item is float else list(v)
        elif tp is float:
            v = float(v)
        out[k] = v
    return out


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__


def load_recipe(path: str | os.PathLike, **overrides: Any) -> RealBaseConfig:
    """The :class:`RealBaseConfig` of a recipe file (fields it leaves out keep their defaults),
    with ``overrides`` (field -> value; ``splits`` a mapping merged into the file's) applied."""
    data = read_yaml(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of RealBaseConfig fields")
    over = dict(overrides)
    if "splits" in over:
        data = {**data, "splits": {**(data.get("splits") or {}), **over.pop("splits")}}
    return RealBaseConfig.from_dict({**data, **over}, source=str(path))


def default_recipe(base: str = "smollm2-135m") -> Path:
    """The shipped recipe ``recipes/<base>-safe.yaml`` of a registered base."""
    p = RECIPES_DIR / f"{base}{SAFE_SUFFIX}.yaml"
    if not p.is_file():
        shipped = sorted(x.stem for x in RECIPES_DIR.glob("*.yaml"))
        raise ConfigError(f"no shipped recipe for {base!r} (shipped: {shipped}); pass --recipe PATH")
    return p


def input_files(cfg: RealBaseConfig, data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Every file the build reads, by name: the benchmark files of ``data_dir`` (default
    :func:`shared_data_dir`), ``prompts.yaml`` and the base model's files (a registered name: its
    GGUF file; a local file or directory: every file in it; a hub id: none, its name only)."""
    data_dir = Path(data_dir) if data_dir is not None else shared_data_dir()
    files: dict[str, Path] = {f"data/{k}": data_dir / rel for k, rel in FILES.items()}
    files["prompts.yaml"] = PROMPTS_FILE
    from dualselect.models.registry import REGISTRY

    if cfg.base in REGISTRY:
        files["base_model"] = REGISTRY[cfg.base].gguf_path()
    elif Path(cfg.base).is_file():
        files["base_model"] = Path(cfg.base)
    elif Path(cfg.base).is_dir():
        root = Path(cfg.base)
        for p in sorted(x for x in root.rglob("*") if x.is_file()):
            files[f"base_model/{p.relative_to(root).as_posix()}"] = p
    return files


def realbase_dir(
    cfg: RealBaseConfig | None = None, data_dir: str | os.PathLike | None = None, *, key: str | None = None
) -> Path:
    """``$DUALSELECT_CACHE/realbase/<base>-<cache key>`` of ``cfg`` (default: the default recipe);
    ``key``, when given, is its already computed cache key."""
    cfg = cfg or RealBaseConfig()
    return cache_root() / "realbase" / f"{safe_name(cfg.base)}-{key or cfg.cache_key(data_dir)}"


def is_built(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).exists()
