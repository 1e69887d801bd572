"""Small shared helpers: atomic file output, seeding, JSON/YAML I/O, safe file names.

Kept free of heavy imports (torch, numpy) at module level so that the command line can parse
its arguments and report config errors without loading them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# ------------------------------------------------------------------------------ messages
# Library code never prints: warnings (legal but suspicious settings) and notes (what was removed,
# kept or skipped) go to the "dualselect" logger. The command line shows them on stderr, one line
# each (``warning: ...``, ``note: ...``; :func:`log_to_stderr`); a Python user sees warnings
# through logging's default handler and configures the logger for the rest.
LOGGER = logging.getLogger("dualselect")


class _StderrLines(logging.Handler):
    """One ``warning: ...`` / ``note: ...`` line per record on the current ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kind = "warning" if record.levelno >= logging.WARNING else "note"
            sys.stderr.write(f"{kind}: {record.getMessage()}\n")
        except Exception:  # noqa: BLE001 - logging's own contract
            self.handleError(record)


def log_to_stderr() -> None:
    """Show the library's warnings and notes on stderr, one line each (the command line calls it)."""
    if not any(isinstance(h, _StderrLines) for h in LOGGER.handlers):
        LOGGER.addHandler(_StderrLines())
    LOGGER.setLevel(logging.INFO)


def warn(msg: str) -> None:
    """A legal but probably unintended setting, or a check that could not run."""
    LOGGER.warning(msg)


def note(msg: str) -> None:
    """What a command removed, kept or skipped."""
    LOGGER.info(msg)


class ConfigError(ValueError):
    """A config file, key or flag is wrong; the message names the file (and line) and the key."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file next to ``path`` and rename it over ``path`` on success.

    Readers never see a half-written file; on an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    binary = "b" in mode
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a written file gets the usual mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically."""
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=indent, sort_keys=False, default=_json_default)
        fh.write("\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as YAML atomically."""
    with atomic_open(path) as fh:
        yaml.safe_dump(obj, fh, sort_keys=False)


def write_jsonl(path: str | os.PathLike, rows: Any) -> None:
    """Write an iterable of dicts as JSON lines, atomically."""
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, default=_json_default) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a trusted JSONL file written by this project."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _json_default(o: Any) -> Any:
    # numpy / torch only if the caller already imported them (no import cost here).
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if np is not None:
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    if torch is not None and isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs (the release never seeded torch: spec pitfall 2)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ YAML configs


# Nodes that aliases may add to a document once expanded (a "billion laughs" file is 15 lines
# and expands to billions): beyond this, the file is refused before anything is built from it.
MAX_ALIAS_EXPANSION = 10_000


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a mapping with the same key twice (PyYAML keeps the last
    one silently) and a document whose aliases expand to more than :data:`MAX_ALIAS_EXPANSION`
    nodes beyond its own. A merge key (``<<: *base``) followed by an explicit key is legal YAML:
    the explicit key wins. Like SafeLoader it builds plain data only: a ``!!python/...`` tag is an
    error."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_alias_expansion(node)
        return node


def _check_alias_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose expanded size (every alias copied out, as a dump of the loaded
    data would be) exceeds its distinct nodes by more than :data:`MAX_ALIAS_EXPANSION`, or that
    refers to itself. Sizes are memoised per node, so the check is linear in the file."""
    size: dict[int, int] = {}
    active: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        key = id(node)
        if key in size:
            return size[key]
        if key in active:
            raise yaml.constructor.ConstructorError(
                None, None, "a recursive alias (a node that contains itself) is not allowed", node.start_mark
            )
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(expanded(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(expanded(k) + expanded(v) for k, v in node.value)
        active.discard(key)
        size[key] = total
        if total - len(size) > MAX_ALIAS_EXPANSION:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"aliases expand this document beyond {MAX_ALIAS_EXPANSION} extra nodes (an alias "
                "bomb?); write the values out instead",
                node.start_mark,
            )
        return total

    expanded(root)


def _construct_unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    # Duplicates are looked for among the mapping's own keys, before `<<` merge keys are resolved:
    # an explicit key overriding a merged one is legal (and wins), two explicit ones are not.
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            key: Any = "<<"
        else:
            key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first defined on line {seen[key].line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    loader.flatten_mapping(node)  # resolve `<<` merge keys: merged entries first, so ours win
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _yaml_error_line(path: str | os.PathLike, e: yaml.YAMLError) -> str:
    """One line: ``path:line:col: problem`` (PyYAML's messages span several lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    text = f"{context}: {problem}" if context and "duplicate" not in problem else problem
    return f"{where}: invalid YAML: {' '.join(str(text).split())}"


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with :class:`UniqueKeyLoader`; any problem is a one-line
    :class:`ConfigError` naming the file and line (syntax errors, duplicate keys, python tags)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error_line(path, e)) from None


def load_yaml_config(
    path: str | os.PathLike, *, extends_key: str = "extends", _chain: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """A YAML mapping of config keys, and for each top-level key the file that set it.

    ``extends: base.yaml`` (or a list of files) loads those first, paths relative to the file
    that names them; this file's keys win, nested mappings are merged key by key, lists are
    replaced. A cycle (a file that extends itself, directly or not) is an error.
    """
    p = Path(path)
    real = p.resolve()
    if real in _chain:
        cycle = " -> ".join(str(x) for x in (*_chain, real))
        raise ConfigError(f"{path}: '{extends_key}' cycle: {cycle}")
    data = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: top level must be a mapping of config keys (key: value lines), "
            f"not a {type(data).__name__}"
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: config keys must be strings, got {bad[0]!r}")
    bases = data.pop(extends_key, None)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if bases is not None:
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
            raise ConfigError(f"{path}: {extends_key}: expected a file name or a list of file names")
        for b in bases:
            bp = Path(b).expanduser()
            bp = bp if bp.is_absolute() else p.parent / bp
            if not bp.is_file():
                raise ConfigError(f"{path}: {extends_key}: no such file {str(bp)!r}")
            base_data, base_origin = load_yaml_config(bp, extends_key=extends_key, _chain=(*_chain, real))
            merged = deep_merge(merged, base_data)
            origin.update(base_origin)
    merged = deep_merge(merged, data)
    origin.update({k: str(path) for k in data})
    return merged, origin


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``over``; mappings present in both are merged recursively."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ------------------------------------------------------------------------------ safe file names

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{0,99}")


def safe_name(name: str) -> str:
    """``name`` as one path component that stays inside its directory.

    A name of letters, digits and ``. _ @ + = -`` (not starting with a dot or dash, no ``..``, at
    most 100 characters) is kept as is; anything else (``/``, ``\\``, ``..``, an absolute path,
    spaces, control characters) is replaced by ``_`` and a short hash of the original is appended,
    so two different names never map to the same file.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name {name!r}: must be a non-empty string")
    if _SAFE_NAME.fullmatch(name) and ".." not in name:
        return name
    stem = re.sub(r"[^A-Za-z0-9._@+=-]+", "_", name).replace("..", "_").lstrip("._-")[:60] or "x"
    return f"{stem}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def safe_path(root: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """``root / (safe_name(name) + suffix)``, checked to resolve inside ``root``."""
    root = Path(root)
    path = root / f"{safe_name(name)}{suffix}"
    if not is_within(path, root):
        raise ValueError(f"{name!r}: resolves outside {root}")
    return path


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True iff ``path`` (symlinks resolved) is ``root`` or below it."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p == r or r in p.parents


def machine_info() -> dict[str, Any]:
    """Where a number was measured: CPU model and count, whether the CPU has bf16 instructions
    (floating-point results, and so a built organism, differ across CPUs), library versions, CUDA."""
    import torch
    import transformers

    model, flags = "", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "cpu_bf16": bool(flags & {"avx512_bf16", "amx_bf16"}) if flags else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
    }
