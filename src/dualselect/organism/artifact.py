"""The model organism as an artifact: its config and cache key, the shipped copy and its install.

The same organism on every machine: training on a CPU is not bit-reproducible across CPUs
(floating-point kernels differ), and method rankings on the organism change with its weights.
So the default organism is SHIPPED with the package (``organism/shipped/<cache key>/``: weights,
tokenizer, configs and a ``MANIFEST.json`` with the sha256 of every file, the world's data files
included). :func:`install_organism` copies it into the cache: the world files are regenerated
from code and every file is checked against the manifest; a mismatch is an error naming the
file. Installing never trains; training an organism (another config, or ``--from-scratch``) is
:func:`dualselect.organism.train.build_organism`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dualselect.cache import build_atomic, cache_root, file_sha256
from dualselect.organism.world import WorldConfig, generate_world
from dualselect.utils import write_jsonl

ORGANISM_VERSION = 2  # bump when the builder changes in a way the config does not capture
# The splits the tokenizer and the model may see; every probe split (test, validation,
# generalisation) stays out of both.
TRAINING_SPLITS = ("alignment", "task_train", "redorca_train", "attack", "reference_pool")


@dataclass
class OrganismConfig:
    """Everything that determines the organism; its hash is the cache key."""

    world: WorldConfig = field(default_factory=WorldConfig)
    seed: int = 0
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 128
    steps: int = 1500
    batch_size: int = 48
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OrganismConfig:
        d = dict(d)
        world = WorldConfig(**d.pop("world", {}))
        return cls(world=world, **d)

    def cache_key(self) -> str:
        blob = json.dumps({"v": ORGANISM_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return cache_root() / "organism"


def organism_dir(cfg: OrganismConfig | None = None) -> Path:
    cfg = cfg or OrganismConfig()
    return default_cache_dir() / cfg.cache_key()


def is_built(path: str | os.PathLike) -> bool:
    return (Path(path) / "organism.json").exists()


# ---------------------------------------------------------------------------------- shipped artifact

SHIPPED_ROOT = Path(__file__).parent / "shipped"
MODEL_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def shipped_dir(cfg: OrganismConfig | None = None) -> Path | None:
    """The shipped artifact for ``cfg`` (default config), or None if none is shipped for it."""
    d = SHIPPED_ROOT / (cfg or OrganismConfig()).cache_key()
    return d if (d / "MANIFEST.json").exists() else None


def manifest_of(path: str | os.PathLike) -> dict[str, str]:
    """sha256 of every model, tokenizer and world file of a built organism (relative paths)."""
    path = Path(path)
    files = [*MODEL_FILES, *sorted(str(p.relative_to(path)) for p in (path / "data").glob("*.jsonl"))]
    return {f: file_sha256(path / f) for f in files}


def compare_with_shipped(path: str | os.PathLike, cfg: OrganismConfig | None = None) -> dict:
    """``{"shipped": bool, "match": bool | None, "differing": [files]}``: does the organism at
    ``path`` equal the shipped one file by file?"""
    ship = shipped_dir(cfg)
    if ship is None:
        return {"shipped": False, "match": None, "differing": []}
    want = json.loads((ship / "MANIFEST.json").read_text())["sha256"]
    have = manifest_of(path)
    differing = sorted(f for f in set(want) | set(have) if want.get(f) != have.get(f))
    return {"shipped": True, "match": not differing, "differing": differing}


def _install_shipped(ship: Path, cfg: OrganismConfig, tmp: Path) -> dict:
    """Copy the shipped files into ``tmp``, regenerate the world, verify every checksum; returns
    the content of ``organism.json``."""
    manifest = json.loads((ship / "MANIFEST.json").read_text())
    if manifest.get("cache_key") != cfg.cache_key():
        raise RuntimeError(
            f"{ship}/MANIFEST.json: cache key {manifest.get('cache_key')} != {cfg.cache_key()}"
        )
    for f in MODEL_FILES:
        shutil.copy2(ship / f, tmp / f)
    for name, split in generate_world(cfg.world).items():
        write_jsonl(tmp / "data" / f"{name}.jsonl", (e.to_record() for e in split))
    have = manifest_of(tmp)
    bad = sorted(f for f in set(manifest["sha256"]) | set(have) if manifest["sha256"].get(f) != have.get(f))
    if bad:
        raise RuntimeError(
            f"shipped organism {ship}: sha256 mismatch for {bad} (a corrupted install, or world code that "
            f"changed without re-shipping: run `python scripts/ship_organism.py`)"
        )
    meta = json.loads((ship / "organism.json").read_text())
    meta.update({"source": "shipped", "installed_from": str(ship), "sha256_verified": True})
    return meta


# ---------------------------------------------------------------------------------- install


def _check_out(out: Path, cfg: OrganismConfig, force: bool) -> Path | None:
    """Return ``out`` if it already holds this organism; refuse to touch anything else."""
    if is_built(out):
        meta = json.loads((out / "organism.json").read_text())
        if meta.get("cache_key") == cfg.cache_key() and not force:
            return out
        if not force:
            raise FileExistsError(
                f"{out} holds an organism with another config (key {meta.get('cache_key')}); "
                f"use --force to rebuild or another --out"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        # never delete or fill a directory this builder did not create, --force or not
        raise FileExistsError(
            f"{out} exists and is not an organism directory (no organism.json): not touching it; "
            f"choose another --out or remove it yourself"
        )
    return None


MARKER = "organism.json"  # written last (dualselect.cache.build_atomic): an organism is complete


def materialise(out: Path, fill: Callable[[Path], dict]) -> Path:
    """Build an organism all or nothing (:func:`dualselect.cache.build_atomic`): ``fill(tmp)``
    writes the files into a temporary sibling of ``out`` and returns ``organism.json``'s content,
    which is written last; then the directory replaces ``out`` (callers check ``out`` first with
    ``_check_out``: only an organism or an empty directory is ever replaced)."""
    return build_atomic(out, fill, marker=MARKER, force=True)


def install_organism(
    out: str | os.PathLike | None = None, cfg: OrganismConfig | None = None, *, force: bool = False
) -> Path:
    """The shipped organism for ``cfg`` (default: the default config), installed and verified in
    ``out`` (default: the cache) unless already there; returns its directory. Never trains: a
    config without a shipped organism is a one-line error naming the command that trains it."""
    cfg = cfg or OrganismConfig()
    ship = shipped_dir(cfg)
    if ship is None:
        raise FileNotFoundError(
            f"no shipped organism for this config (key {cfg.cache_key()}): train it with "
            "`dualselect organism build --from-scratch` (dualselect.organism.train.build_organism)"
        )
    in_cache = out is None
    out = organism_dir(cfg) if out is None else Path(out)
    if _check_out(out, cfg, force) is not None:
        if compare_with_shipped(out, cfg)["match"]:
            return out
        if not in_cache:
            raise FileExistsError(
                f"{out} holds an organism for this config that differs from the shipped one "
                f"(sha256); use --force to replace it with the shipped organism"
            )
        # the cache holds a locally trained copy (e.g. from before the organism was shipped)
    return materialise(out, lambda tmp: _install_shipped(ship, cfg, tmp))
