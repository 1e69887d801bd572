"""Config fields as plain data (name, type, default, help, group), cached on disk.

``dualselect train --help`` and the config checks of :func:`precheck` read this instead of
importing the config classes (which import torch and transformers: seconds on a small CPU). The
cache is rebuilt, by importing the classes once, whenever the dualselect sources of
``training/``, the transformers version or Python change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import typing
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dualselect.cache import cache_root
from dualselect.utils import ConfigError, load_yaml_config, write_json

SIMPLE = {"int": int, "float": float, "bool": bool, "str": str}


def _type_name(tp: Any) -> tuple[str, bool]:
    """(``int|float|bool|str|list[str]|other``, optional?) for an annotation."""
    origin = typing.get_origin(tp)
    optional = False
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            return "other", optional
        tp, origin = args[0], typing.get_origin(args[0])
    if origin is list and typing.get_args(tp) == (str,):
        return "list[str]", optional
    name = getattr(tp, "__name__", "")
    return (name if name in SIMPLE else "other"), optional


def _jsonable(v: Any) -> tuple[Any, bool]:
    v = getattr(v, "value", v)  # enums: their value
    try:
        json.dumps(v)
        return v, True
    except TypeError:
        return repr(v), False


def build_spec(cfg_cls: type) -> dict[str, Any]:
    """The fields of ``cfg_cls`` grouped by the class of its MRO that defines them (most
    derived first), each with type, default and help."""
    try:
        hints = typing.get_type_hints(cfg_cls)
    except Exception:  # noqa: BLE001 - an unresolvable hint is "other"
        hints = {}
    from dualselect.training.validation import field_domains

    all_fields = {f.name: f for f in dataclasses.fields(cfg_cls) if f.init}
    domains = field_domains(cfg_cls)
    fields: dict[str, Any] = {}
    groups: list[list[Any]] = []
    for klass in cfg_cls.__mro__:
        own = [n for n in vars(klass).get("__annotations__", {}) if n in all_fields and n not in fields]
        if not own:
            continue
        if klass is cfg_cls:
            title = f"{klass.__name__}: the method's own fields"
        elif klass.__module__.startswith("transformers"):
            title = f"{klass.__name__} (transformers): optimiser, schedule, logging, checkpoints"
        else:
            title = f"{klass.__name__}: shared fields (model, data, LoRA, the spec's training defaults)"
        groups.append([title, own])
        for n in own:
            f = all_fields[n]
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            default, exact = _jsonable(default)
            tp, optional = _type_name(hints[n]) if n in hints else ("other", True)
            fields[n] = {
                "type": tp,
                "optional": optional,
                "default": default,
                "default_exact": exact,
                "help": " ".join(str(f.metadata.get("help", "")).split()),
                **domains.get(n, {"domain": None, "choices": None}),
            }
    return {"class": cfg_cls.__name__, "groups": groups, "fields": fields}


def _cache_path() -> Path:
    src = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(src.glob("*.py")):  # every trainer of the registry lives in training/
        st = p.stat()
        h.update(f"{p.name}:{st.st_mtime_ns}:{st.st_size}".encode())
    try:
        tv = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        tv = "none"
    h.update(f"{tv}:{sys.version_info[:3]}".encode())
    return cache_root() / "fieldspec" / f"{h.hexdigest()[:16]}.json"


def field_spec(trainer_method: str) -> dict[str, Any]:
    """The cached field spec of a trainer method (built, by importing the classes, on a miss)."""
    from dualselect.training.run import METHODS, TRAINERS

    path = _cache_path()
    specs: dict[str, Any] = {}
    try:
        specs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        specs = {}
    if trainer_method not in specs:
        names = set(TRAINERS) | {trainer_method}
        specs = {m: build_spec(METHODS[m][0]) for m in sorted(names)}
        with contextlib.suppress(OSError):  # a read-only home: the spec is rebuilt next time
            write_json(path, specs)
    return specs[trainer_method]


def _parse_flags(argv: list[str], spec: dict[str, Any]) -> dict[str, str | list[str] | bool] | None:
    """``--key value`` / ``--key=value`` / ``--no_key`` pairs of ``argv``, or None when ``argv``
    has anything this light parser does not handle (then the full parser decides)."""
    fields = spec["fields"]
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            return None
        key, eq, val = tok[2:].partition("=")
        key = key.replace("-", "_")
        if key not in fields:
            if key.startswith("no_") and fields.get(key[3:], {}).get("type") == "bool" and not eq:
                out[key[3:]] = False
                i += 1
                continue
            raise ConfigError(f"unrecognized arguments: {tok}")
        kind = fields[key]["type"]
        if eq:
            out[key] = val
            i += 1
        elif kind == "bool":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and nxt.lower() in (
                "true",
                "false",
                "yes",
                "no",
                "1",
                "0",
                "t",
                "f",
                "y",
                "n",
            ):
                out[key] = nxt
                i += 2
            else:
                out[key] = True
                i += 1
        elif kind == "list[str]":
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            out[key] = argv[i + 1 : j]
            i = j
        else:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                return None
            out[key] = argv[i + 1]
            i += 2
    return out


def _from_flag(key: str, raw: Any, kind: str, optional: bool) -> Any:
    if not isinstance(raw, str):
        return raw
    if optional and raw == "None":
        return None
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"argument --{key}: invalid {kind} value: {raw!r}") from None
    if kind == "bool":
        if raw.lower() in ("true", "yes", "1", "t", "y"):
            return True
        if raw.lower() in ("false", "no", "0", "f", "n"):
            return False
    return raw


def precheck(
    method: str, yaml_path: str | None = None, argv: list[str] | None = None, overwrite: bool = False
) -> None:
    """The checks of ``load_config`` + ``run_training`` that need no model and no torch: YAML,
    unknown keys and flags, types, value domains, model/data paths and the output directory.
    Raises the same one-line :class:`ConfigError`; passing it does not mean the config is valid
    (``load_config`` remains the authority), only that these errors are reported fast."""
    from dualselect.training.run import _with_source, resolve_method
    from dualselect.training.validation import check_paths, coerce_value, field_errors, prepare_run_dir, where

    trainer_method, preset = resolve_method(method)
    spec = field_spec(trainer_method)
    fields = spec["fields"]
    values: dict[str, Any] = dict(preset)
    origin: dict[str, str] = {k: f"preset {method}" for k in preset}
    if yaml_path:
        data, file_origin = load_yaml_config(yaml_path)
        data.pop("method", None)
        origin.update(file_origin)
        values.update(data)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        sources = sorted({origin.get(k, "overrides") for k in unknown})
        raise ConfigError(
            f"{', '.join(sources)}: unknown key(s) {unknown} for method {trainer_method!r} "
            f"(see `dualselect train --method {method} --help`)"
        )
    errors = []
    for k, v in list(values.items()):
        f = fields[k]
        tp = SIMPLE.get(f["type"]) if f["type"] != "list[str]" else list[str]
        if tp is None:
            continue
        try:
            values[k] = coerce_value(k, v, tp | None if f["optional"] else tp)
        except TypeError as e:
            errors.append(f"{where(k, origin)}: {e}")
    if errors:
        raise ConfigError("; ".join(errors))
    flags = _parse_flags(list(argv or []), spec)
    if flags is None:
        return
    for k, raw in flags.items():
        values[k] = _from_flag(k, raw, fields[k]["type"], fields[k]["optional"])
        origin[k] = "flag"
    merged = {k: f["default"] for k, f in fields.items() if f["default_exact"]}
    merged.update(values)
    errs = field_errors(merged, fields)
    if errs:
        raise ConfigError("; ".join(_with_source(key, msg, origin) for key, msg in errs))
    keys = ("model_name_or_path", "train_data", "reference_data", "output_dir")
    check_paths(SimpleNamespace(**{k: merged.get(k) for k in keys}))
    if merged.get("output_dir") and not overwrite and not merged.get("resume_from_checkpoint"):
        prepare_run_dir(merged["output_dir"])  # refuses a non-empty directory, deletes nothing
