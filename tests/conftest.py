"""Shared fixtures. Nothing here touches a hub: everything is built locally."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def organism_dir():
    """The default organism, built once (~2 min on 2 cores) and cached by config hash."""
    from dualselect.organism.train import build_organism

    return build_organism(progress=False)


def find_shared_data():
    """The read-only published benchmark files: ``$DUALSELECT_SHARED_DATA``, else
    ``../shared/data`` from the repository root or from any parent (git worktrees live deeper)."""
    from pathlib import Path

    env = os.environ.get("DUALSELECT_SHARED_DATA")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[1]
    for base in (root, *root.parents):
        cand = base / ".." / "shared" / "data" if base == root else base / "shared" / "data"
        if (cand / "README.md").exists():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data (the published benchmark files); skips with the reason when absent."""
    d = find_shared_data()
    if d is None:
        pytest.skip(
            "published benchmark files not found: expected ../shared/data from the repository root "
            "(or set DUALSELECT_SHARED_DATA)"
        )
    return d
