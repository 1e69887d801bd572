"""`dualselect train --method M --help`: the config fields grouped by the class that defines them,
the method's own fields first, then the shared model/data/LoRA fields, then the Trainer's.
Formatted from the cached field spec (``training/fieldspec.py``): no torch import."""

from __future__ import annotations

import shutil
import textwrap
from typing import Any


def format_config_help(
    spec: dict[str, Any], prog: str, defaults: dict[str, Any] | None = None, intro: str | None = None
) -> str:
    """The help text: usage, ``intro``, then every field of ``spec`` by group, with its type,
    default (``defaults`` win, e.g. a preset's settings) and help."""
    defaults = defaults or {}
    width = min(100, shutil.get_terminal_size((100, 20)).columns)
    lines = [
        f"usage: {prog} [--config FILE.yaml] [--overwrite] [--FIELD VALUE ...]",
        "",
        "Every field is a YAML key and a --flag; flags win over the YAML, the YAML over the defaults.",
    ]
    if intro:
        lines += ["", *textwrap.wrap(intro, width)]
    for title, names in spec["groups"]:
        lines += ["", f"{title}:"]
        for name in names:
            f = spec["fields"][name]
            default = defaults.get(name, f["default"])
            shown = repr(default) if f["default_exact"] or name in defaults else default
            tp = "" if f["type"] == "other" else f" {f['type']}"
            lines.append(f"  --{name}{tp}  (default: {shown})")
            if f["help"]:
                lines += textwrap.wrap(f["help"], width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines) + "\n"
