"""Where a DualSelect (or SFT) training run spends its time: cProfile over ``trainer.train()``.

Runs one method of ``benchmarks/overhead.py`` (same set-up, data, config) under cProfile and
prints the functions with the largest cumulative time, restricted to the parts that name a cost:
the engines (``dualselect.gradients``), selection, the trainer's step, refresh, optimiser and the
model's forward/backward. The profile is written to ``<out>/<size>-<method>.prof``
(``python -m pstats`` or snakeviz read it).

    python benchmarks/profile_overhead.py --size wide --method dualselect --steps 14 --out runs/profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead  # noqa: E402  (benchmarks/overhead.py: the same set-up)

KEYS = (
    "dualselect/gradients",
    "dualselect/selection",
    "dualselect/training",
    "torch/optim",
    "autograd",
    "modeling_llama",
    "peft/tuners/lora",
    "{method 'run_backward'",
    "trainer.py",
)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="wide", choices=overhead.SIZES)
    ap.add_argument("--method", default="dualselect", choices=overhead.METHODS)
    ap.add_argument("--steps", type=int, default=None, help="max_steps (default: the size's).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=40, help="Rows printed.")
    ap.add_argument("--out", default="runs/profile")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prof = cProfile.Profile()
    prof.enable()
    res = overhead.run_one(args.size, args.method, args.steps, out / "work", args.threads)
    prof.disable()
    path = out / f"{args.size}-{args.method}.prof"
    prof.dump_stats(str(path))
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
    stats.print_stats("|".join(k.replace("(", r"\(").replace("{", r"\{") for k in KEYS), args.top)
    text = (
        f"{args.size} {args.method}: {res['steps']} steps, {res['train_s']:.1f} s end to end (under "
        f"cProfile), phases "
        + ", ".join(f"{p} {v['count']} x {v['median_s']:.3f} s" for p, v in res["phases"].items())
        + f", load {res['loadavg_before'][0]:.1f}\n"
        + buf.getvalue()
    )
    print(text)
    (out / f"{args.size}-{args.method}.txt").write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
