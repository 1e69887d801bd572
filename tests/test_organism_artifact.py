"""The shipped default organism: the same base on every machine, verified by sha256."""

from __future__ import annotations

import json
import shutil

import pytest

from dualselect.organism import artifact as B


def test_default_organism_is_shipped_for_the_current_world():
    """Changing the world or the builder changes the cache key: re-ship (scripts/ship_organism.py)."""
    ship = B.shipped_dir(B.OrganismConfig())
    assert ship is not None, "no shipped organism for the default config: run scripts/ship_organism.py"
    manifest = json.loads((ship / "MANIFEST.json").read_text())
    assert manifest["cache_key"] == B.OrganismConfig().cache_key()
    assert set(B.MODEL_FILES) <= set(manifest["sha256"])
    assert any(f.startswith("data/") for f in manifest["sha256"])
    assert sum((ship / f).stat().st_size for f in B.MODEL_FILES) < 8_000_000  # small enough to ship


requires_shipped = pytest.mark.skipif(
    B.shipped_dir(B.OrganismConfig()) is None,
    reason="no shipped organism (test_default_organism_is_shipped_for_the_current_world fails)",
)


@requires_shipped
def test_install_verifies_every_file(tmp_path):
    from transformers import AutoModelForCausalLM

    out = B.install_organism(tmp_path / "org")
    meta = json.loads((out / "organism.json").read_text())
    assert meta["source"] == "shipped" and meta["sha256_verified"]
    assert B.compare_with_shipped(out) == {"shipped": True, "match": True, "differing": []}
    AutoModelForCausalLM.from_pretrained(out)
    # the world files were regenerated from code and match the shipped checksums
    assert (out / "data" / "probe_harmful_gen.jsonl").exists()


@requires_shipped
def test_corrupted_artifact_is_an_error_naming_the_file(tmp_path, monkeypatch):
    cfg = B.OrganismConfig()
    root = tmp_path / "shipped"
    shutil.copytree(B.shipped_dir(cfg), root / cfg.cache_key())
    blob = bytearray((root / cfg.cache_key() / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (root / cfg.cache_key() / "model.safetensors").write_bytes(bytes(blob))
    monkeypatch.setattr(B, "SHIPPED_ROOT", root)
    with pytest.raises(RuntimeError, match=r"sha256 mismatch for \['model.safetensors'\]"):
        B.install_organism(tmp_path / "org")
    assert not (tmp_path / "org").exists()  # nothing half-installed


@requires_shipped
def test_cache_with_a_differing_local_build_is_replaced(tmp_path, monkeypatch):
    """A cache built on this machine before the organism was shipped (or trained here) is not
    silently used: the shipped organism replaces it. An explicit --out is never replaced silently."""
    monkeypatch.setenv("DUALSELECT_CACHE", str(tmp_path / "cache"))
    cached = B.organism_dir()
    shutil.copytree(B.install_organism(tmp_path / "good"), cached)
    blob = bytearray((cached / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (cached / "model.safetensors").write_bytes(bytes(blob))
    assert not B.compare_with_shipped(cached)["match"]
    assert B.install_organism() == cached
    assert B.compare_with_shipped(cached)["match"]
    (tmp_path / "good" / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(FileExistsError, match="differs from the shipped one"):
        B.install_organism(tmp_path / "good")


def test_non_default_configs_are_trained_and_not_compared():
    cfg = B.OrganismConfig(seed=1)
    assert B.shipped_dir(cfg) is None  # organism instances 1, 2 of `compare` are trained locally


def test_install_never_trains(tmp_path, monkeypatch):
    """Resolving the organism installs the shipped copy; a config without one is a one-line error
    naming the command that trains it, and nothing is written."""
    import dualselect.organism.train as T

    def boom(*a, **k):
        raise AssertionError("install_organism must not train")

    monkeypatch.setattr(T, "train_base_model", boom)
    monkeypatch.setenv("DUALSELECT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        FileNotFoundError, match=r"no shipped organism .*dualselect organism build --from-scratch"
    ):
        B.install_organism(cfg=B.OrganismConfig(seed=7))
    assert not (tmp_path / "cache").exists()
