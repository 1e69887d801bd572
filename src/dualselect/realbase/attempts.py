"""Alignment attempts shared between builds whose recipes differ only in the seeds they try.

A calibrating build trains ``align_attempts`` LoRA alignments with seeds ``align_seed``,
``align_seed + 1``, ... and scores each on the validation prompts. Builds that start at different
seeds overlap: with three attempts each, starting seeds 0, 1 and 2 train seeds 0-2, 1-3 and 2-4,
five distinct trainings instead of nine. An attempt's merged model and calibration record depend
on every recipe field except ``align_seed``, ``align_attempts`` and ``align_select`` (which seeds
are tried and which is kept), on the build's input files and on its seed: that is its key here.

Layout: ``<root>/<base>-<key>/`` holds ``merged/`` (the merged, unscaled model) and
``record.json`` (the attempt's calibration record, without the build's attempt index), written
all or nothing (:func:`dualselect.cache.build_atomic`). Files are hard-linked between a build
directory and the store (copied across file systems), so sharing costs no disk space. While a
build trains an attempt it holds ``<base>-<key>.lock`` (its process id); another build on the same
machine that needs the same attempt waits for it instead of training it twice.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from dualselect.cache import build_atomic, content_key, is_done
from dualselect.utils import safe_name, write_json

__all__ = ["SEED_FIELDS", "AttemptStore"]

SEED_FIELDS = ("align_seed", "align_attempts", "align_select")  # which attempts, not what one is
RECORD = "record.json"


def _link_tree(src: Path, dest: Path) -> None:
    """``dest`` as a copy of the directory ``src`` made of hard links (copies across devices)."""
    for p in sorted(src.rglob("*")):
        target = dest / p.relative_to(src)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, target)
        except OSError:
            shutil.copy2(p, target)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class AttemptStore:
    """Finished alignment attempts of one recipe (``config``: its fields as a mapping, ``inputs``:
    the files its cache key hashes), by seed."""

    def __init__(
        self,
        root: str | os.PathLike,
        config: Mapping,
        inputs: Mapping[str, str | os.PathLike],
        *,
        poll_seconds: float = 30.0,
    ) -> None:
        self.root = Path(root)
        self._config = {k: v for k, v in config.items() if k not in SEED_FIELDS}
        self._inputs = dict(inputs)
        self._prefix = safe_name(str(config.get("base", "model")))
        self._keys: dict[int, str] = {}
        self.poll_seconds = poll_seconds

    def path(self, seed: int) -> Path:
        """The directory of the attempt trained with ``seed``."""
        if seed not in self._keys:  # the inputs' bytes are hashed once per seed
            self._keys[seed] = content_key({**self._config, "attempt_seed": int(seed)}, self._inputs)
        return self.root / f"{self._prefix}-{self._keys[seed]}"

    def fetch(self, seed: int, merged_dir: Path, record: Path, attempt: int) -> bool:
        """Copy the stored attempt of ``seed`` into a build (its merged model to ``merged_dir``, its
        record, with the build's ``attempt`` index, to ``record``); False when none is stored."""
        src = self.path(seed)
        if not is_done(src):
            return False
        if not (merged_dir / "config.json").exists():
            shutil.rmtree(merged_dir, ignore_errors=True)
            _link_tree(src / "merged", merged_dir)
        write_json(record, {**json.loads((src / RECORD).read_text()), "attempt": attempt})
        return True

    def publish(self, seed: int, merged_dir: Path, record: Path) -> None:
        """Store a build's finished attempt of ``seed`` (no-op when stored, or when the build no
        longer has its merged model)."""
        if is_done(self.path(seed)) or not (merged_dir / "config.json").exists():
            return
        rec = {k: v for k, v in json.loads(record.read_text()).items() if k != "attempt"}

        def build(tmp: Path) -> dict:
            _link_tree(merged_dir, tmp / "merged")
            write_json(tmp / RECORD, rec)
            return {"align_seed": seed, "config": self._config}

        build_atomic(self.path(seed), build)

    def claim(self, seed: int, log: Callable[[str], None] = lambda _m: None) -> bool:
        """Take the right to train ``seed``: True once this process holds its lock, False when
        another build published it meanwhile (waiting while a live process holds the lock; a lock
        left by a dead process is taken over). Release with :meth:`release`."""
        lock = self._lock(seed)
        lock.parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            if is_done(self.path(seed)):
                return False
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    if not waited:
                        log(f"seed {seed} is being trained by process {pid}: waiting for it")
                        waited = True
                    time.sleep(self.poll_seconds)
                    continue
                try:
                    fresh = time.time() - lock.stat().st_mtime < 5
                except FileNotFoundError:
                    continue
                if pid == 0 and fresh:  # just created, its pid not yet written
                    time.sleep(0.5)
                    continue
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True

    def _lock(self, seed: int) -> Path:
        p = self.path(seed)
        return p.parent / f"{p.name}.lock"

    def release(self, seed: int) -> None:
        """Drop this process's lock on ``seed``."""
        lock = self._lock(seed)
        try:
            if int(lock.read_text().strip() or 0) == os.getpid():
                lock.unlink()
        except (OSError, ValueError):
            pass
