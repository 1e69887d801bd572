#!/usr/bin/env python
"""Ship the default organism with the package: copy a built organism's weights, tokenizer and
configs to ``src/dualselect/organism/shipped/<cache key>/`` and write ``MANIFEST.json`` (sha256 of
every file, the world's data files included, which are regenerated from code at install time).

Run it after any change to the world or the builder (the cache key changes, and
``tests/test_organism_artifact.py`` fails until the new key is shipped):

    python scripts/ship_organism.py            # trains the default organism from scratch first
    python scripts/ship_organism.py --from DIR # ships an organism already built for the default config
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from dualselect.organism.artifact import MODEL_FILES, SHIPPED_ROOT, OrganismConfig, manifest_of
from dualselect.organism.train import build_organism
from dualselect.utils import write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", default=None, help="A built organism for the default config.")
    args = ap.parse_args(argv)
    cfg = OrganismConfig()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.src) if args.src else build_organism(Path(tmp) / "org", cfg, from_scratch=True)
        meta = json.loads((src / "organism.json").read_text())
        if meta["cache_key"] != cfg.cache_key():
            sys.exit(f"{src}: cache key {meta['cache_key']} is not the default config's {cfg.cache_key()}")
        dest = SHIPPED_ROOT / cfg.cache_key()
        for old in SHIPPED_ROOT.glob("*"):  # one shipped organism: the current default
            if old.is_dir() and old != dest:
                shutil.rmtree(old)
        dest.mkdir(parents=True, exist_ok=True)
        for f in MODEL_FILES:
            shutil.copy2(src / f, dest / f)
        meta = {k: v for k, v in meta.items() if k not in ("installed_from", "sha256_verified")}
        meta["source"] = "shipped"
        meta["built_on"] = {"machine": platform.machine(), "processor": platform.processor() or None}
        write_json(dest / "organism.json", meta)
        write_json(
            dest / "MANIFEST.json",
            {"cache_key": cfg.cache_key(), "version": meta["version"], "sha256": manifest_of(src)},
        )
    size = sum(p.stat().st_size for p in dest.iterdir())
    print(f"shipped {dest} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
