"""Minimum detectable difference of the real-model study's design, by simulation.

The pre-registration (docs/real_study.md, section 4) asks for the design's minimum detectable
difference between two methods (80% power, the study's own test: ``crossed_diff_interval``'s 95%
interval excluding 0) on harmful refusal and on XSTest over-refusal. Until the tuning runs
measure the variance components on the study's own task, they are taken from the committed
earlier comparison on two real bases (``results/real_compare_v6`` and
``results/real_compare_v7_seed3base``: 3 training seeds each, 40-prompt subsets):

* the seed-to-seed sd of each method's rate, pooled over the two bases (a 40-prompt rate's sd
  includes its prompts' noise: an over-estimate for the full suites);
* the base-by-method interaction: the variance of the per-base difference between the two
  methods beyond what their seed sds explain (two bases: a rough estimate, so the table also
  shows 2 and 5 points).

Simulation, per design (bases x seeds) and true difference delta: per base, each method's
base-level rate (method b's observed mean; method a's = b's + delta + the interaction), per run a
seed deviation, per prompt a logit-normal difficulty shared by every run (sd
``--prompt-sd``), 0/1 verdicts; then ``crossed_diff_interval`` with the suites' prompt counts;
power = share of simulated studies whose interval excludes 0. The MDD is the smallest delta on
the grid (integer points, bisection) with power >= 80%. Output: ``<out>/power.json`` and ``power.md``::

    PYTHONPATH=src python scripts/real_study_power.py --out results/real_study/power
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from dualselect.evaluation.uncertainty import crossed_diff_interval
from dualselect.utils import atomic_open, write_json

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("results/real_compare_v6", "results/real_compare_v7_seed3base")
# metric -> (comparison.json key, the study's prompt count for it)
METRICS = {
    "harmful refusal": ("harmful_refusal", 159 + 313 + 100),
    "XSTest over-refusal": ("over_refusal_rate", 250),
}
PAIRS = (("dualselect", "kl"), ("dualselect_2s", "dualselect"))


def components(a: str, b: str, key: str) -> dict:
    """Seed sds of methods a and b (pooled over the source bases), b's mean rate and the
    base-by-method interaction sd, in probability units, from the committed comparisons."""
    rows = []
    for src in SOURCES:
        t = json.loads((ROOT / src / "comparison.json").read_text())["methods"]
        # the two-sided variant was not in the earlier comparison: DualSelect's numbers stand in
        ra, rb = t.get(a, t["dualselect"])[key], t[b][key]
        rows.append((ra["mean"], ra["sd"], rb["mean"], rb["sd"], ra["n"]))
    sd_a = math.sqrt(np.mean([r[1] ** 2 for r in rows]))
    sd_b = math.sqrt(np.mean([r[3] ** 2 for r in rows]))
    d = [r[0] - r[2] for r in rows]
    n = rows[0][4]
    tau2 = max(0.0, float(np.var(d, ddof=1)) - (sd_a**2 + sd_b**2) / n)
    return {
        "sd_a": sd_a,
        "sd_b": sd_b,
        "mean_b": float(np.mean([r[2] for r in rows])),
        "tau": math.sqrt(tau2),
    }


def simulate_power(
    comp: dict, delta: float, bases: int, seeds: int, n_prompts: int, prompt_sd: float, sims: int, rng
) -> float:
    """Share of simulated studies whose 95% crossed difference interval excludes 0."""
    hits = 0
    groups = [g for g in range(bases) for _ in range(seeds)]
    for _ in range(sims):
        w = rng.normal(0.0, prompt_sd, n_prompts)  # prompt difficulty, shared by every run

        def runs(mean: np.ndarray, sd: float, w: np.ndarray = w) -> np.ndarray:
            p_run = np.clip(np.repeat(mean, seeds) + rng.normal(0.0, sd, bases * seeds), 1e-3, 1 - 1e-3)
            logit = np.log(p_run / (1 - p_run))[:, None] + w[None, :]
            return (rng.random((bases * seeds, n_prompts)) < 1 / (1 + np.exp(-logit))).astype(float)

        mb = np.full(bases, comp["mean_b"])
        ma = mb + delta + rng.normal(0.0, comp["tau"], bases)
        ci = crossed_diff_interval(runs(ma, comp["sd_a"]), groups, runs(mb, comp["sd_b"]), groups)["ci"]
        hits += ci[0] > 0 or ci[1] < 0
    return hits / sims


def mdd(comp: dict, bases: int, seeds: int, n_prompts: int, prompt_sd: float, sims: int, seed: int) -> dict:
    """The smallest |delta| (points, integers) with simulated power >= 0.8, by bisection (power
    grows with |delta|), in the direction with more room (below a rate above 50%, else above);
    each delta is simulated with the same random stream."""
    # a difference in the direction with more room (a rate near 100 can only fall)
    sign = 1 if comp["mean_b"] <= 0.5 else -1
    room = int(100 * (1 - comp["mean_b"] if sign > 0 else comp["mean_b"]) - 1)

    def power(pts: int) -> float:
        rng = np.random.default_rng(seed)
        return simulate_power(comp, sign * pts / 100, bases, seeds, n_prompts, prompt_sd, sims, rng)

    if room < 1 or power(room) < 0.8:
        return {"mdd_points": None, "note": f"power < 80% up to {room} points"}
    lo, hi = 0, room  # power(lo) < 0.8 <= power(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power(mid) >= 0.8 else (mid, hi)
    return {"mdd_points": hi, "direction": "a above b" if sign > 0 else "a below b"}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/real_study/power")
    ap.add_argument("--sims", type=int, default=400, help="simulated studies per (design, delta)")
    ap.add_argument("--prompt-sd", type=float, default=1.5, help="sd of prompt difficulty on the logit scale")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    designs = [(3, 5), (3, 10), (5, 5), (8, 5)]
    res: dict = {"sources": list(SOURCES), "sims": args.sims, "prompt_sd": args.prompt_sd, "rows": []}
    for a, b in PAIRS:
        for label, (key, n_prompts) in METRICS.items():
            comp = components(a, b, key)
            for tau, tau_label in ((comp["tau"], "estimated"), (0.02, "2 points"), (0.05, "5 points")):
                c = {**comp, "tau": tau}
                for bases, seeds in designs:
                    row = {
                        "pair": f"{a} - {b}",
                        "metric": label,
                        "bases": bases,
                        "seeds": seeds,
                        "prompts": n_prompts,
                        "tau_source": tau_label,
                        **{k: round(100 * v, 2) for k, v in c.items()},
                        **mdd(c, bases, seeds, n_prompts, args.prompt_sd, args.sims, args.seed),
                    }
                    print(json.dumps(row), flush=True)
                    res["rows"].append(row)
    out = Path(args.out)
    write_json(out / "power.json", res)
    lines = [
        "# Minimum detectable difference of the real-model study's design (simulation)",
        "",
        "80% power for the study's test: the 95% `crossed_diff_interval` (base build -> seed -> "
        f"prompt; Student-t, df = bases - 1) excluding 0; {args.sims} simulated studies per cell, "
        f"prompt difficulty logit sd {args.prompt_sd}. Variance components (points) from "
        + " and ".join(f"`{s}`" for s in SOURCES)
        + " (3 seeds each, 40-prompt subsets): seed sds pooled over the two bases; tau, the "
        "base-by-method interaction, estimated from their two per-base differences, and set to 2 and 5 points. "
        "`dualselect_2s` was not in those runs: DualSelect's spread stands in for it.",
        "",
        "| pair | metric | bases x seeds | rate of b | sd a / sd b | tau | MDD (points; direction) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        m = r["mdd_points"]
        cell = f"{m}; {r['direction']}" if m is not None else r["note"]
        lines.append(
            f"| {r['pair']} | {r['metric']} | {r['bases']} x {r['seeds']} | {r['mean_b']:.1f} | "
            f"{r['sd_a']:.1f} / {r['sd_b']:.1f} | {r['tau']:.1f} ({r['tau_source']}) | "
            f"{cell} |"
        )
    with atomic_open(out / "power.md") as fh:
        fh.write("\n".join(lines) + "\n")
    return res


if __name__ == "__main__":
    main()
