"""Import the repository's scripts and benchmarks by path (``scripts/`` and ``benchmarks/`` are
not packages). Imported by the tests that exercise them (pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str, name: str | None = None, register: bool = False) -> ModuleType:
    """The module at ``ROOT / relpath`` (e.g. ``"scripts/retable.py"``), executed afresh;
    ``register`` puts it in ``sys.modules`` first (dataclasses look their module up there)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
