"""The flat public API (``from dualselect import DualSelectTrainer, DualSelectConfig``), as TRL
and PEFT offer it, and an import graph that only points down the layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dualselect"


def test_flat_api_names_resolve_to_the_trainers():
    import dualselect
    from dualselect.training import METHODS

    assert dualselect.DualSelectConfig is METHODS["dualselect"][0]
    assert dualselect.DualSelectTrainer is METHODS["dualselect"][1]
    for name in dualselect.__all__:
        assert getattr(dualselect, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        dualselect.Nope  # noqa: B018


def test_import_dualselect_loads_no_torch():
    code = "import sys, dualselect; print(dualselect.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    version, torch_loaded = out.split()
    assert torch_loaded == "False"
    from importlib.metadata import version as dist_version

    assert version == dist_version("dualselect")


# algorithm < data < training < models/artifacts < evaluation < recipes/studies < cli
LAYERS = {
    "utils": 0,
    "_version": 0,
    "cache": 0,
    "gradients": 1,
    "selection": 1,
    "data": 2,
    "training": 3,
    "models": 4,
    "organism": 4,
    "evaluation": 5,
    "realbase": 6,
    "experiments": 6,
    "continual": 6,
    "cli": 7,
}


def _module_graph() -> dict[str, set[str]]:
    """Module -> the dualselect modules it imports (at module level or inside functions)."""
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (p, is_pkg)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, (p, is_pkg) in mods.items():
        pkg = m if is_pkg else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[m] |= {t for t in targets if t in mods and t != m}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return 8 if len(parts) == 1 else LAYERS[parts[1]]


def test_every_package_has_a_layer():
    for m in _module_graph():
        _layer(m)  # KeyError names a package without a layer


# The one import from a lower layer up to a higher one (documented in training/model.py): model
# names (``organism``, ``smollm2-135m-safe``) resolve in the models layer, so a trainer accepts them.
ALLOWED_UP = {"dualselect.training.model -> dualselect.models.resolve"}


def test_imports_point_down_the_layers_without_cycles():
    graph = _module_graph()
    up = sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs if _layer(b) > _layer(a))
    assert set(up) <= ALLOWED_UP, sorted(set(up) - ALLOWED_UP)
    # no cycle: a depth-first search finds no back edge
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(n) :], n]))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
