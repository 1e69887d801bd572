"""The cache module: one root, a content key that sees every field and every input byte, and a done
marker written after the payload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualselect import cache


def test_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALSELECT_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c"
    monkeypatch.delenv("DUALSELECT_CACHE")
    assert cache.cache_root() == Path.home() / ".cache" / "dualselect"


def test_the_key_sees_every_field_and_every_input_byte(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.jsonl"
    a.write_bytes(b"x,y\n1,2\n")
    b.write_bytes(b'{"q": 1}\n')
    cfg = {"lr": 2e-4, "splits": {"seed": 0, "n": 3}, "targets": ["q", "v"], "seed": None}
    files = {"a": a, "b": b}
    key = cache.content_key(cfg, files)
    assert len(key) == cache.KEY_LENGTH and int(key, 16) >= 0
    # equal configs (any key order, a copy of the files elsewhere) give the same key
    reordered = {"seed": None, "targets": ["q", "v"], "splits": {"n": 3, "seed": 0}, "lr": 2e-4}
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "a.csv").write_bytes(a.read_bytes())
    assert cache.content_key(reordered, {"b": b, "a": copy / "a.csv"}) == key
    # any field, nested field, list entry or added field changes it
    for changed in (
        {**cfg, "lr": 3e-4},
        {**cfg, "splits": {"seed": 1, "n": 3}},
        {**cfg, "targets": ["q"]},
        {**cfg, "seed": 0},
        {**cfg, "extra": 0},
        {k: v for k, v in cfg.items() if k != "seed"},
    ):
        assert cache.content_key(changed, files) != key, changed
    # one byte of one input file, a renamed input or a missing input changes it
    a.write_bytes(b"x,y\n1,3\n")
    assert cache.content_key(cfg, files) != key
    a.write_bytes(b"x,y\n1,2\n")
    assert cache.content_key(cfg, files) == key
    assert cache.content_key(cfg, {"a2": a, "b": b}) != key
    assert cache.content_key(cfg, {"a": a}) != key
    with pytest.raises(TypeError):  # never a key of repr()
        cache.content_key({"x": object()})


def test_the_marker_is_written_after_the_payload(tmp_path):
    out = tmp_path / "art"
    seen = {}

    def build(d: Path) -> dict:
        (d / "payload.bin").write_bytes(b"123")
        seen["marker_during_build"] = cache.is_done(d) or cache.is_done(out)
        return {"n": 3}

    assert cache.build_atomic(out, build) == out
    assert seen == {"marker_during_build": False}
    assert cache.is_done(out) and (out / "payload.bin").read_bytes() == b"123"
    assert cache.read_done(out) == {"n": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no temporary left
    # a complete artifact is returned as is; force rebuilds it
    assert cache.build_atomic(out, lambda d: pytest.fail("rebuilt")) == out
    cache.build_atomic(out, lambda d: (d / "payload.bin").write_bytes(b"4") and None, force=True)
    assert (out / "payload.bin").read_bytes() == b"4" and cache.read_done(out) == {}


def test_a_failed_build_leaves_no_marker_and_no_directory(tmp_path):
    out = tmp_path / "art"

    def build(d: Path) -> dict:
        (d / "half.bin").write_bytes(b"1")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.build_atomic(out, build)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # a marker whose content is not JSON is refused before it is written
    out.mkdir()
    with pytest.raises(TypeError):
        cache.mark_done(out, {"x": {1, 2}})
    assert not cache.is_done(out) and cache.read_done(out) is None
    cache.mark_done(out, {"x": 1}, marker="realbase.json")
    assert cache.is_done(out, "realbase.json") and not cache.is_done(out)
    assert json.loads((out / "realbase.json").read_text()) == {"x": 1}


def test_a_settled_file_is_hashed_once_and_a_changed_or_fresh_one_again(tmp_path, monkeypatch):
    import hashlib
    import os
    import time

    f = tmp_path / "w.bin"
    f.write_bytes(b"abcd")
    old = time.time_ns() - 10**10
    os.utime(f, ns=(old, old))  # settled: modified 10 s ago
    reads = []
    real = hashlib.sha256
    monkeypatch.setattr(cache.hashlib, "sha256", lambda *a: reads.append(1) or real(*a))
    want = real(b"abcd").hexdigest()
    assert cache.file_sha256(f) == cache.file_sha256(f) == want and len(reads) == 1
    f.write_bytes(b"abce")  # same size, written now: read again, and not remembered while fresh
    assert cache.file_sha256(f) == cache.file_sha256(f) == real(b"abce").hexdigest() and len(reads) == 3
    f2 = tmp_path / "w2.bin"
    f2.write_bytes(b"abcd")
    os.utime(f2, ns=(old, old))
    assert cache.file_sha256(f2) == want and len(reads) == 4  # another file: its own read
