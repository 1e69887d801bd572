"""Names a user may type for a model, and the data that comes with a model, resolved to local files.

``organism`` (the shipped model organism), a registered short name (``smollm2-135m``), its aligned
base (``smollm2-135m-safe``), a ``.gguf`` file, a local directory or a hub id. Nothing here trains
or generates: a missing artifact is a one-line error naming the command that builds it
(``dualselect base build``, ``dualselect organism build``; the organism's helpfulness pool is built
by ``train``/``compare`` before a two-sided run: ``dualselect.experiments.helpful_pool``).

This is the module the training layer reaches up to (:mod:`dualselect.training.model`), so a
trainer accepts ``model="organism"`` like any hub id.
"""

from __future__ import annotations

import os
from pathlib import Path

from dualselect.data.records import helpful_pool_file
from dualselect.models.registry import SAFE_SUFFIX, is_registered, resolve_named_model
from dualselect.organism.artifact import install_organism, is_built
from dualselect.organism.helpful import DONE_FILE, helpful_path

ORGANISM = "organism"


def is_named_model(name: str) -> bool:
    """``organism``, or a registered short name with or without the ``-safe`` suffix of its base."""
    if name == ORGANISM:
        return True
    return bool(
        is_registered(name) or (name.endswith(SAFE_SUFFIX) and is_registered(name[: -len(SAFE_SUFFIX)]))
    )


def resolve_model_path(name_or_path: str) -> str:
    """A local directory for a model name: the organism is installed from its shipped copy (the
    first time), a registered name or ``.gguf`` file is converted once, an aligned base is looked up
    (never built); any other string is returned unchanged (a directory or a hub id)."""
    if name_or_path == ORGANISM:
        return str(install_organism())
    return resolve_named_model(name_or_path)


def organism_root(model: str | os.PathLike | None) -> Path | None:
    """The organism's directory when ``model`` is the organism (by name or directory), else None."""
    if model == ORGANISM:
        return install_organism()
    if model and is_built(model):
        return Path(model)
    return None


def default_train_data(model: str | None) -> str | None:
    """The organism's RedOrca-style task set when training the organism; else None."""
    root = organism_root(model)
    return str(root / "data" / "redorca_train.jsonl") if root else None


def default_reference_data(model: str | None) -> str | None:
    """The organism's reference pool when training the organism; else None."""
    root = organism_root(model)
    return str(root / "data" / "reference_pool.jsonl") if root else None


def default_helpful_data(model: str | None, objective: str, reference_data: str | None) -> str:
    """The helpfulness pool of the model being trained: the organism's (``helpful/`` beside it) or
    a real base's (``helpful_pool.jsonl`` / ``helpful_refusals.jsonl`` beside its
    ``references.jsonl``). A pool that is not built is a one-line error naming how to build it."""
    root = organism_root(model)
    if root is not None:
        path = helpful_path(root, objective)
        if not (path.exists() and (path.parent / DONE_FILE).exists()):
            raise FileNotFoundError(
                f"the organism's helpfulness pool is not built ({path.parent}): `dualselect train` and "
                "`compare` build it before a two-sided run; from Python call "
                "dualselect.experiments.helpful_pool.build_helpful_pool(organism_dir), or set helpful_data"
            )
        return str(path)
    if reference_data and Path(reference_data).name == "references.jsonl":  # a real base's data folder
        cand = Path(reference_data).with_name(helpful_pool_file(objective))
        if cand.exists():
            return str(cand)
    raise ValueError(
        "helpful_weight > 0 needs a helpfulness pool: set helpful_data (none found next to "
        f"reference_data={reference_data!r}; `dualselect base build` writes data/helpful_pool.jsonl)"
    )
