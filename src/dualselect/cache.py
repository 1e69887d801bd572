"""The on-disk cache of built artifacts: one root, one content-hash key, one "done" marker.

Every artifact that is built once and reused (the GGUF conversion, the aligned real base, the
organism, the trainers' field specs) lives under :func:`cache_root`, in a directory named after a
:func:`content_key` of everything that determines it: a JSON config and the bytes of its input
files. A directory is complete only when its done marker exists: :func:`mark_done` writes it
atomically and is called after the payload, so an interrupted build leaves a directory that
:func:`is_done` reports as incomplete (and that the builder may resume or redo).

This module imports nothing from ``dualselect`` except :mod:`dualselect.utils`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dualselect.utils import write_json

DONE = "DONE.json"  # the default marker name; an artifact may name its own (e.g. ``realbase.json``)
KEY_LENGTH = 16  # hex characters of the sha256 kept in directory names


def cache_root() -> Path:
    """``$DUALSELECT_CACHE``, else ``~/.cache/dualselect`` (read on every call, so tests and
    users can point it elsewhere at any time)."""
    return Path(os.environ.get("DUALSELECT_CACHE") or Path.home() / ".cache" / "dualselect")


_SHA_MEMO: dict[tuple, str] = {}
_SETTLE_SECONDS = 2.0


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 (hex) of a file's bytes, streamed. Remembered per process while the file's identity,
    size and modification time stay the same, so a run that verifies the same files several times
    (cache keys, the organism's manifest) reads each once. A file modified in the last
    ``_SETTLE_SECONDS`` is always read: file-system clocks are coarse, and two writes of the same
    size in one clock tick would otherwise look unchanged."""
    st = os.stat(path)
    sig = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if sig in _SHA_MEMO:
        return _SHA_MEMO[sig]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    if time.time_ns() - st.st_mtime_ns > _SETTLE_SECONDS * 1e9:
        _SHA_MEMO[sig] = h.hexdigest()
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """``obj`` as canonical JSON: sorted keys, no whitespace, non-ASCII kept; tuples as lists.
    Raises TypeError for anything JSON cannot hold (a key must never depend on ``repr``)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_key(
    config: Mapping[str, Any],
    files: Mapping[str, str | os.PathLike] | None = None,
    *,
    length: int = KEY_LENGTH,
) -> str:
    """Hex key of ``config`` (hashed as :func:`canonical_json`) and the contents of ``files``
    (name -> path; each file enters as its name and the sha256 of its bytes, so renaming a key,
    changing any config value or any byte of an input file changes the key, and moving a file
    does not)."""
    payload = {
        "config": dict(config),
        "files": {name: file_sha256(p) for name, p in sorted((files or {}).items())},
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:length]


def is_done(path: str | os.PathLike, marker: str = DONE) -> bool:
    """Whether the artifact directory ``path`` is complete (its marker file exists)."""
    return (Path(path) / marker).is_file()


def read_done(path: str | os.PathLike, marker: str = DONE) -> dict | None:
    """The marker's JSON content of a complete artifact, or None if it is incomplete."""
    p = Path(path) / marker
    return json.loads(p.read_text()) if p.is_file() else None


def mark_done(path: str | os.PathLike, info: Mapping[str, Any] | None = None, marker: str = DONE) -> Path:
    """Mark ``path`` complete: write ``info`` (JSON) to its marker atomically. Call it only after
    every payload file is written; nothing is written if ``info`` is not JSON-serialisable."""
    dest = Path(path) / marker
    canonical_json(dict(info or {}))  # fail before touching the disk
    write_json(dest, dict(info or {}))
    return dest


def build_atomic(
    out: str | os.PathLike,
    build: Callable[[Path], Mapping[str, Any] | None],
    *,
    marker: str = DONE,
    force: bool = False,
) -> Path:
    """Build an artifact all or nothing: ``build(tmp)`` writes the payload into a temporary
    sibling of ``out`` and returns the marker's content; the marker is written after it, then the
    directory is renamed to ``out``. An existing complete ``out`` is returned as is (unless
    ``force``); on any exception the temporary directory is removed and ``out`` is untouched."""
    out = Path(out)
    if is_done(out, marker) and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        info = build(tmp)
        mark_done(tmp, info, marker)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
