"""A training run's directory: its manifest (what the run wrote, whether it finished, the base it
was trained on) and the lock that keeps a second process out.

``run_manifest.json`` is written when a run starts (``status: running``, the entries that were
there before it) and rewritten last when it ends (``complete`` or ``diverged``, the entries it
wrote, the base model's fingerprint). It is both the run's completion marker (``eval`` and
``export`` refuse a run whose manifest is not ``complete``) and the only list ``--overwrite``
removes: a file a run did not write is never deleted nor written over.

``.dualselect-train.lock`` is held (``flock``) by the process training into the directory, with
its pid; a second ``train`` on the same directory is refused, a lock left by a dead process is
taken over with a note.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from dualselect.utils import ConfigError, note, write_json

MANIFEST = "run_manifest.json"
LOCK = ".dualselect-train.lock"
MANIFEST_FORMAT = 1
# Files only a run writes: a directory holding one of them and no run manifest holds a run of an
# older version, whose files --overwrite cannot tell from the user's.
RUN_MARKERS = (
    "log.json",
    "metrics.json",
    "selection_log.jsonl",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "adapter_config.json",
    "training_args.bin",
)
RUN_MARKER_GLOBS = ("checkpoint-*", "data_report_*.json", ".save-*")
# Names a run (or compare / export around it) may write at the top of its directory. A file of
# such a name that the run did not write is never written over: the run is refused instead.
RUN_NAMES = (
    MANIFEST,
    *RUN_MARKERS,
    "config.yaml",
    "README.md",
    "eval_summary.json",
    "unlikelihood.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "eval",
    "runs",
)
RUN_GLOBS = (*RUN_MARKER_GLOBS, ".checkpoint-*.tmp", ".*.tmp")
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def is_run_name(name: str) -> bool:
    """Whether a run may write an entry called ``name`` at the top of its directory."""
    return name in RUN_NAMES or any(fnmatch.fnmatchcase(name, g) for g in RUN_GLOBS)


# ------------------------------------------------------------------------------ manifest


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The run manifest of ``out``, or None when there is none; a one-line error when it is not
    one this package wrote."""
    p = Path(out) / MANIFEST
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: not a readable run manifest ({' '.join(str(e).split())})") from None
    ok = (
        isinstance(m, dict)
        and isinstance(m.get("status"), str)
        and all(
            isinstance(m.get(k), list) and all(isinstance(x, str) for x in m[k])
            for k in ("files", "preexisting")
        )
    )
    if not ok:
        raise ConfigError(f"{p}: not a run manifest (expected status, files and preexisting)")
    return m


def _entries(out: Path) -> list[str]:
    return sorted(e.name for e in out.iterdir() if e.name not in (LOCK, MANIFEST))


def start_manifest(out: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Write ``status: running`` with the entries already in ``out`` (kept by a later
    ``--overwrite``). A resumed run keeps its manifest's list; a resumed run of an older version
    (no manifest) counts the entries of a run's names as its own."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prev = read_manifest(out)
    if resume and prev is not None:
        preexisting = prev["preexisting"]
    elif resume:
        preexisting = [n for n in _entries(out) if not is_run_name(n)]
    else:
        preexisting = _entries(out)
    m = {"format": MANIFEST_FORMAT, "status": "running", "preexisting": preexisting, "files": []}
    write_json(out / MANIFEST, m)
    return m


def finish_manifest(out: str | os.PathLike, status: str, **extra: Any) -> dict[str, Any]:
    """Rewrite the manifest last: ``status`` (``complete``, ``diverged``), every entry the run
    wrote (all but the ones there before it), and ``extra`` (e.g. ``base_fingerprint``)."""
    out = Path(out)
    m = read_manifest(out) or {"format": MANIFEST_FORMAT, "preexisting": [], "files": []}
    before = set(m["preexisting"])
    m.update(status=status, files=[n for n in _entries(out) if n not in before], **extra)
    write_json(out / MANIFEST, m)
    return m


def drop_manifest_if_unused(out: str | os.PathLike) -> None:
    """Remove a ``running`` manifest when the run wrote nothing (it failed before training, e.g.
    the model did not load), so that the directory is not taken for a run's."""
    out = Path(out)
    m = read_manifest(out) if out.is_dir() else None
    if m is not None and m["status"] == "running" and set(_entries(out)) <= set(m["preexisting"]):
        (out / MANIFEST).unlink()


def record_files(out: str | os.PathLike, names: list[str]) -> None:
    """Add ``names`` to a run's manifest *before* writing them (compare's ``eval/`` and
    ``metrics.json``), so that ``--overwrite`` removes them even if the writer is killed."""
    m = read_manifest(out)
    if m is None:
        return
    m["files"] = sorted(set(m["files"]) | set(names))
    write_json(Path(out) / MANIFEST, m)


def manifest_entries(out: Path, m: dict[str, Any]) -> list[Path]:
    """What ``--overwrite`` removes: the entries a finished run listed; for a run that never
    finished (killed), the entries of a run's names that were not there before it."""
    names = set(m["files"])
    if m["status"] == "running":
        before = set(m["preexisting"])
        names |= {n for n in _entries(out) if n not in before and is_run_name(n)}
    return [out / n for n in sorted(names) if (out / n).exists() or (out / n).is_symlink()]


def check_run_complete(path: str | os.PathLike, what: str = "run") -> dict[str, Any] | None:
    """Raise a one-line ``ValueError`` for a run directory that did not finish: a manifest that is
    not ``complete``, or (no manifest: an adapter saved elsewhere or by an older version) an
    ``adapter_config.json`` without adapter weights. Returns the manifest (None without one)."""
    p = Path(path)
    m = read_manifest(p)
    if m is None:
        if (p / "adapter_config.json").exists() and not any((p / w).exists() for w in WEIGHTS):
            raise ValueError(
                f"{path}: incomplete {what}: adapter_config.json without adapter weights "
                f"({' or '.join(WEIGHTS)}); the save was interrupted: train again"
            )
        return None
    if m["status"] != "complete":
        why = {"running": "it was interrupted or is still training", "diverged": "it diverged"}
        raise ValueError(
            f"{path}: incomplete {what} ({MANIFEST} says {m['status']!r}: "
            f"{why.get(m['status'], 'it did not finish')}); train again or resume it"
        )
    return m


# ------------------------------------------------------------------------------ lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory for one training process (``with RunLock(out): ...``).

    ``flock`` on ``<out>/.dualselect-train.lock`` (released by the OS when the process dies);
    the file records the holder's pid and host. A second process gets a one-line
    :class:`ConfigError` naming that pid; a lock file whose holder is gone is taken over with a
    note. Without ``fcntl`` (Windows) the file itself is the lock and a dead pid marks it stale."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK
        self.fd: int | None = None

    def _holder(self, text: str) -> dict[str, Any]:
        try:
            h = json.loads(text)
            return h if isinstance(h, dict) else {}
        except ValueError:
            return {}

    def _refuse(self, holder: dict[str, Any]) -> ConfigError:
        who = f"pid {holder.get('pid', '?')}" + (f" on {holder['host']}" if holder.get("host") else "")
        return ConfigError(
            f"output_dir={str(self.out)!r} is in use by another training process ({who}; lock file "
            f"{self.path}); wait for it to finish or choose another output_dir"
        )

    def acquire(self) -> RunLock:
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        while True:
            flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if fcntl is None else 0)
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileExistsError:  # pragma: no cover - Windows: the file is the lock
                holder = self._holder(self.path.read_text(encoding="utf-8", errors="replace"))
                if isinstance(holder.get("pid"), int) and _pid_alive(holder["pid"]):
                    raise self._refuse(holder) from None
                self.path.unlink(missing_ok=True)
                continue
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    holder = self._holder(os.read(fd, 4096).decode("utf-8", "replace"))
                    os.close(fd)
                    raise self._refuse(holder) from None
                try:  # the file may have been removed by its previous holder meanwhile: retry
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            break
        old = self._holder(os.read(fd, 4096).decode("utf-8", "replace"))
        if old.get("pid") not in (None, os.getpid()):
            note(
                f"output_dir {self.out}: took over a stale lock of pid {old['pid']} "
                "(that process ended without releasing it)"
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)  # closing releases the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ------------------------------------------------------------------------------ base fingerprint


def base_fingerprint(model: Any, tokenizer: Any = None) -> str:
    """Hex digest of the base model's weights: every parameter and buffer that is not LoRA's
    (names without peft's wrappers; values rounded to bf16, so the same weights loaded in fp32,
    bf16 or fp16 match, while another base differs in far more than rounding), and the
    tokenizer's size. The same for the plain base model and for it wrapped with LoRA. A quantized
    (4/8-bit) load does not match its full-precision base."""
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    h = hashlib.blake2b(digest_size=16)
    items = [(n, t) for n, t in inner.named_parameters()] + [
        (f"buffer:{n}", b) for n, b in inner.named_buffers()
    ]
    rows = []
    for name, t in items:
        if ".lora_" in name or "modules_to_save." in name:
            continue
        rows.append((name.replace(".base_layer.", ".").replace(".original_module.", "."), t))
    for name, t in sorted(rows, key=lambda r: r[0]):
        shape = tuple(t.shape)
        t = t.detach().to("cpu")
        if t.is_floating_point():  # rounded to bf16: the same base loaded in fp32, bf16 or fp16
            t = t.to(torch.bfloat16).to(torch.float32)
        t = t.contiguous().reshape(-1)
        h.update(f"{name}|{shape}".encode())
        if t.numel():
            h.update(memoryview(t.view(torch.uint8).numpy()))
    if tokenizer is not None and hasattr(tokenizer, "__len__"):
        h.update(f"vocab:{len(tokenizer)}".encode())
    return h.hexdigest()
