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
build trains an attempt it holds that seed's lock, ``<root>/.locks/<base>-<key>/`` (the trainer's
run-directory lock, :class:`~dualselect.training.rundir.RunLock`: released by the OS when the
process dies); another build on the same machine that needs the same attempt waits for it instead
of training it twice.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from dualselect.cache import build_atomic, content_key, is_done
from dualselect.training.rundir import RunLock
from dualselect.utils import ConfigError, safe_name, write_json

__all__ = ["SEED_FIELDS", "AttemptStore"]

SEED_FIELDS = ("align_seed", "align_attempts", "align_select")  # which attempts, not what one is
RECORD = "record.json"


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:  # another file system
        shutil.copy2(src, dest)


def _link_tree(src: Path, dest: Path) -> None:
    """``dest`` as a copy of the directory ``src`` made of hard links (copies across devices)."""
    shutil.copytree(src, dest, copy_function=_link_or_copy, dirs_exist_ok=True)


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
        self._held: dict[int, RunLock] = {}
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
        another build published it meanwhile (waiting while another live process holds the lock;
        a lock left by a dead process is taken over). Release with :meth:`release`."""
        waited = False
        while not is_done(self.path(seed)):
            lock = RunLock(self.root / ".locks" / self.path(seed).name)
            try:
                lock.acquire()
            except ConfigError as e:
                if not waited:
                    log(f"seed {seed} is being trained by another build, waiting for it ({e})")
                    waited = True
                time.sleep(self.poll_seconds)
                continue
            if is_done(self.path(seed)):  # published between the check and the lock
                lock.release()
                break
            self._held[seed] = lock
            return True
        return False

    def release(self, seed: int) -> None:
        """Drop this process's lock on ``seed``."""
        lock = self._held.pop(seed, None)
        if lock is not None:
            lock.release()
