"""`dualselect train --method M --help`: the config fields grouped by the class that defines them,
the method's own fields first, then the shared model/data/LoRA fields, then the Trainer's."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
import typing
from typing import Any


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is not None:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if origin is list:
            return f"list[{', '.join(_type_name(a) for a in args)}]"
        return " | ".join(_type_name(a) for a in args)
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def field_groups(cfg_cls: type) -> list[tuple[str, list[dataclasses.Field]]]:
    """``(title, fields)`` per class of ``cfg_cls``'s MRO that defines fields, most derived first;
    a field redefined by a subclass is listed with the subclass (its default is the one in use)."""
    all_fields = {f.name: f for f in dataclasses.fields(cfg_cls) if f.init}
    seen: set[str] = set()
    groups = []
    for klass in cfg_cls.__mro__:
        own = [n for n in vars(klass).get("__annotations__", {}) if n in all_fields and n not in seen]
        if not own:
            continue
        seen.update(own)
        if klass is cfg_cls:
            title = f"{klass.__name__}: the method's own fields"
        elif klass.__module__.startswith("transformers"):
            title = f"{klass.__name__} (transformers): optimiser, schedule, logging, checkpoints"
        else:
            title = f"{klass.__name__}: shared fields (model, data, LoRA, the spec's training defaults)"
        groups.append((title, [all_fields[n] for n in own]))
    return groups


def format_config_help(
    cfg_cls: type, prog: str, defaults: dict[str, Any] | None = None, intro: str | None = None
) -> str:
    """The help text: usage, ``intro``, then every field grouped (see :func:`field_groups`) with
    its type, default (``defaults`` win, e.g. a preset's settings) and help."""
    defaults = defaults or {}
    try:
        hints = typing.get_type_hints(cfg_cls)
    except Exception:  # noqa: BLE001 - types are a nicety here
        hints = {}
    width = min(100, shutil.get_terminal_size((100, 20)).columns)
    lines = [
        f"usage: {prog} [--config FILE.yaml] [--overwrite] [--FIELD VALUE ...]",
        "",
        "Every field is a YAML key and a --flag; flags win over the YAML, the YAML over the defaults.",
    ]
    if intro:
        lines += ["", *textwrap.wrap(intro, width)]
    for title, fields in field_groups(cfg_cls):
        lines += ["", f"{title}:"]
        for f in fields:
            if f.name in defaults:
                default = defaults[f.name]
            elif f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            default = getattr(default, "value", default)  # enums: their string
            tp = _type_name(hints[f.name]) if f.name in hints else ""
            lines.append(f"  --{f.name} {tp}  (default: {default!r})")
            text = f.metadata.get("help", "")
            if text:
                lines += textwrap.wrap(
                    " ".join(str(text).split()), width, initial_indent=" " * 6, subsequent_indent=" " * 6
                )
    return "\n".join(lines) + "\n"
