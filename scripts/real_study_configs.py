"""Per-base compare configs of the real-model study (docs/real_study.md), for this machine's cache.

One ``dualselect compare`` runs one model, so the study's 3 base builds need one config each. For
each recipe ``configs/real_study_base_<k>.yaml`` this writes ``<out>/real_study_base<k>.yaml`` and
``<out>/real_study_base<k>_seeds34.yaml``: ``extends`` the committed ``configs/real_study.yaml`` /
``configs/real_study_seeds34.yaml`` and sets ``model_name_or_path`` to the build's ``model/`` in
``$DUALSELECT_CACHE/realbase/`` (the recipe's cache key). Their ``suites: real_study`` gives every
run the study task's attack set, ``<base>/data/gsm8k_final_step/task_train.jsonl``, and its test
split, which compare writes (``build_study_data(<base>, task="gsm8k_final_step")``) before the
first run when missing; ``dualselect base build --recipe`` builds the base (this script builds
nothing).

    PYTHONPATH=src python scripts/real_study_configs.py --out runs/real_study/configs
    dualselect compare runs/real_study/configs/real_study_base1.yaml --out runs/real_study/base1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dualselect.realbase.recipe import load_recipe, realbase_dir
from dualselect.utils import write_yaml

ROOT = Path(__file__).resolve().parents[1]
BASES = 3


def write_configs(out: Path, data_dir: str | None = None) -> list[Path]:
    """The per-base configs in ``out``; returns their paths."""
    written = []
    for k in range(BASES):
        base = realbase_dir(load_recipe(ROOT / "configs" / f"real_study_base_{k}.yaml"), data_dir)
        for name in ("real_study", "real_study_seeds34"):
            path = out / f"{name.replace('real_study', f'real_study_base{k}')}.yaml"
            write_yaml(
                path,
                {
                    "extends": str(ROOT / "configs" / f"{name}.yaml"),
                    "model_name_or_path": str(base / "model"),
                },
            )
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/real_study/configs")
    ap.add_argument("--data-dir", default=None, help="Benchmark files (default: ../shared/data).")
    args = ap.parse_args(argv)
    for p in write_configs(Path(args.out), args.data_dir):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
