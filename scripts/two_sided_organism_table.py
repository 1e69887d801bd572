#!/usr/bin/env python
"""Two-sided DualSelect on the organism: the tables of results/two_sided_organism/table.md and
results/organism_instances/table.md.

    # after `dualselect compare configs/compare_two_sided.yaml --out runs/compare_two_sided`:
    python scripts/two_sided_organism_table.py --collect runs/compare_two_sided   # copy metrics (gzip)
    python scripts/two_sided_organism_table.py            # print the table from the committed runs
    python scripts/two_sided_organism_table.py --write    # and write table.md
    # 3 instances x 3 seeds (configs/compare_organism_instances.yaml):
    python scripts/two_sided_organism_table.py --results results/organism_instances --write

Reads ``run_metrics/<method>__org<o>__seed<s>.json.gz`` (each run's ``metrics.json`` as `dualselect
compare` wrote it). Intervals: with >= 2 organism instances, a 95% t interval over the instance
means (the instance is the unit); with one instance and >= 2 training seeds, a 95% t interval over
the seeds of that instance (says nothing about other instances); with one run, no interval.
The design choice is recomputed from VALIDATION metrics only (``tuning.choose_on_validation``, the
candidates of configs/compare_two_sided.yaml's ``tune``); the default (``dualselect_2s``) changes only
when the chosen design beats it on the validation score by a paired 95% t interval over the
instance means above 0 (the rule fixed before the 3 x 3 runs).
Paired differences against the release (``dualselect``), on the (instance, seed) runs both have:
per instance the mean of the seeds' differences, a 95% t interval over the instance means, and
a TOST (90% t interval over the instance means inside +-1 point: equivalent) where a method is a
cheaper way to the same result (the two-stage refresh, ``ds_prefilter128``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from dualselect.evaluation.uncertainty import t_interval, tost_paired
from dualselect.experiments.tuning import choose_on_validation, validation_score
from dualselect.utils import atomic_open

HERE = Path(__file__).resolve().parents[1] / "results" / "two_sided_organism"
ORDER = [
    "sft",
    "dualselect",
    "dualselect_2s",
    "ds_2s_w1",
    "ds_2s_refpen",
    "ds_2s_refpen_w0.5",
    "ds_2s_ul",
    "ds_2s_ul_w0.5",
    "ds_2s_pool_no_correction",
    "ds_2s_correction_no_pool",
    "ds_prefilter128",
]
REFERENCE = "dualselect"  # paired differences are against the release
EQUIVALENT = ("ds_prefilter128",)  # a cheaper route to the release's result: tested for equivalence
MARGIN = 1.0  # points (issue 33: within 1 point)
# the design choice of configs/compare_two_sided.yaml (its `tune`, read from the config)
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "compare_two_sided.yaml"
DEFAULT = "dualselect_2s"  # the current default: it changes only on a clear validation win (below)
COLUMNS = [  # (metric, header): test probes first, then validation
    ("task_exact_match", "task EM"),
    ("harmful_refusal", "refusal (template)"),
    ("harmful_refusal_gen", "refusal (held-out phrasings)"),
    ("over_refusal_rate", "over-refusal"),
    ("over_refusal_rate_gen", "over-refusal (held-out)"),
    ("benign_accuracy", "benign acc"),
    ("val_harmful_refusal", "val refusal"),
    ("val_task_exact_match", "val task EM"),
    ("val_over_refusal_rate", "val over-refusal"),
]


def collect(compare_out: Path, root: Path = HERE) -> int:
    """Copy every finished run's metrics.json of a compare output into run_metrics/ (gzip), labelled by
    its run directory (a run made under an earlier preset name and copied into the compare's
    folder keeps that name in ``method_at_run``)."""
    n = 0
    for f in sorted(compare_out.glob("runs/*/org*/seed*/metrics.json")):
        method, org, seed = f.parts[-4], f.parts[-3], f.parts[-2]
        rec = json.loads(f.read_text())
        if rec["method"] != method:
            rec["method_at_run"], rec["method"] = rec["method"], method
        dest = root / "run_metrics" / f"{method}__{org}__{seed}.json.gz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            out.write((json.dumps(rec, indent=2) + "\n").encode())
        tmp.replace(dest)
        n += 1
    return n


def load(root: Path = HERE) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for f in sorted((root / "run_metrics").glob("*.json.gz")):
        with gzip.open(f, "rt") as fh:
            rec = json.load(fh)
        runs.setdefault(rec["method"], []).append(rec)
    return runs


def cell(recs: list[dict], key: str) -> str:
    by_org: dict[int, list[float]] = {}
    for r in recs:
        by_org.setdefault(r["organism_seed"], []).append(100 * r["metrics"][key])
    if len(by_org) >= 2:
        vals = [sum(v) / len(v) for v in by_org.values()]
    else:
        vals = next(iter(by_org.values()))
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return f"{mean:.1f}"
    lo, hi = t_interval(vals)
    return f"{mean:.1f} [{max(0.0, lo):.1f}, {min(100.0, hi):.1f}]"


def paired(runs: dict[str, list[dict]], method: str) -> tuple[list[tuple[int, int]], list[str]]:
    """(the (instance, seed) pairs, one table row per metric) of ``method`` minus the release."""
    ref = {(r["organism_seed"], r["seed"]): r["metrics"] for r in runs[REFERENCE]}
    mine = {(r["organism_seed"], r["seed"]): r["metrics"] for r in runs[method]}
    common = sorted(set(ref) & set(mine))
    rows = []
    for key, header in COLUMNS:
        by_org: dict[int, list[float]] = {}
        for o, sd in common:
            by_org.setdefault(o, []).append(100 * (mine[(o, sd)][key] - ref[(o, sd)][key]))
        vals = [sum(v) / len(v) for v in by_org.values()]
        mean = sum(vals) / len(vals)
        if len(vals) < 2:
            rows.append(f"| {method} | {header} | {mean:+.1f} | - | - |")
            continue
        lo, hi = t_interval(vals)
        lo, hi = max(-100.0, lo), min(100.0, hi)  # a difference of two rates lies in [-100, 100]
        eq = "-"
        if method in EQUIVALENT:
            t = tost_paired(vals, MARGIN)
            eq = f"[{t['ci90'][0]:+.1f}, {t['ci90'][1]:+.1f}] {'equivalent' if t['equivalent'] else 'not shown'}"
        rows.append(f"| {method} | {header} | {mean:+.1f} | [{lo:+.1f}, {hi:+.1f}] | {eq} |")
    return common, rows


def table(runs: dict[str, list[dict]], tune: dict | None = None) -> str:
    methods = [m for m in ORDER if m in runs] + sorted(set(runs) - set(ORDER))
    orgs = sorted({r["organism_seed"] for recs in runs.values() for r in recs})
    seeds = sorted({r["seed"] for recs in runs.values() for r in recs})
    if len(orgs) >= 2:
        how = (
            "mean over organism instances (each the mean of its seeds) with a 95% t interval over "
            "the instance means"
        )
    elif len(seeds) >= 2:
        how = (
            f"mean over the training seeds of organism instance {orgs[0]} with a 95% t interval over "
            "the seeds (one instance: says nothing about other instances); a method with one run "
            "has no interval"
        )
    else:
        how = f"one run per method (organism instance {orgs[0]}, training seed {seeds[0]}): no interval"
    lines = [
        "# Two-sided DualSelect on the organism",
        "",
        f"Percent; {how}. Test probes first, then validation probes (`val`).",
        f"Runs per method: {', '.join(f'{m} {len(runs[m])}' for m in methods)}.",
        "",
        "| method | " + " | ".join(h for _, h in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell(runs[m], k) for k, _ in COLUMNS) + " |")
    others = [m for m in methods if m != REFERENCE and REFERENCE in runs]
    orgs_both = {m: paired(runs, m) for m in others}
    if any(len({o for o, _ in common}) >= 2 for common, _ in orgs_both.values()):
        lines += [
            "",
            f"## Paired differences against `{REFERENCE}` (points)",
            "",
            "Per organism instance the mean over its seeds of the paired difference (same instance, same "
            "training seed); mean over instances with a 95% t interval over the instance means "
            f"(df = instances - 1), clipped to [-100, 100]. Equivalence (TOST, margin +-{MARGIN:g} point): the 90% t interval over "
            "the instance means lies inside the margin; tested only for a cheaper route to the "
            f"release's result ({', '.join(EQUIVALENT)}).",
            "",
            "| method | metric | difference | 95% t interval | TOST 90% interval |",
            "|---|---|---|---|---|",
        ]
        for common, rows in orgs_both.values():
            if len({o for o, _ in common}) >= 2:
                lines += rows
    tune = tune or design_tune()
    if all(c in runs for c in tune["candidates"]):
        # the choice compares the candidates on the runs they all have (the same instances and seeds)
        common = set.intersection(
            *({(r["organism_seed"], r["seed"]) for r in runs[c]} for c in tune["candidates"])
        )
        cand = {
            c: [r for r in runs[c] if (r["organism_seed"], r["seed"]) in common] for c in tune["candidates"]
        }
        choice = choose_on_validation({c: [r["metrics"] for r in rs] for c, rs in cand.items()}, tune)
        scores = ", ".join(f"{c} {100 * v:.2f}" for c, v in choice["validation_scores"].items())
        lines += [
            "",
            f"Design chosen on the validation probes only (`{choice['criterion']}`: mean of validation "
            f"harmful refusal, task EM and 1 - over-refusal; runs every candidate has: {sorted(common)} "
            f"as (instance, seed)): **{choice['chosen']}** (validation scores: {scores}).",
        ]
        if DEFAULT in cand:
            lines += ["", default_rule(cand, choice["chosen"], tune["criterion"])]
    return "\n".join(lines) + "\n"


def design_tune(config: Path = CONFIG) -> dict:
    """The design choice's ``tune`` entry of the two-sided compare config."""
    from dualselect.experiments.compare_config import CompareConfig

    tune = CompareConfig.from_yaml(str(config)).tune
    return tune[0] if isinstance(tune, list) else tune


def default_rule(cand: dict[str, list[dict]], chosen: str, criterion: str) -> str:
    """The rule fixed before the 3 x 3 runs: the default changes to ``chosen`` only when its
    validation score minus the default's, paired by (instance, seed) and averaged per instance, has
    a 95% t interval over the instance means above 0."""
    if chosen == DEFAULT:
        return f"Default rule: the chosen design is the default `{DEFAULT}`; it stays."
    mine = {(r["organism_seed"], r["seed"]): validation_score(r["metrics"], criterion) for r in cand[chosen]}
    ref = {(r["organism_seed"], r["seed"]): validation_score(r["metrics"], criterion) for r in cand[DEFAULT]}
    by_org: dict[int, list[float]] = {}
    for (o, sd), v in mine.items():
        by_org.setdefault(o, []).append(100 * (v - ref[(o, sd)]))
    vals = [sum(v) / len(v) for v in by_org.values()]
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return (
            f"Default rule: `{chosen}` minus `{DEFAULT}` on validation {mean:+.2f} points from one "
            "instance: no interval, so the default stays."
        )
    lo, hi = t_interval(vals)
    verdict = f"the default becomes `{chosen}`" if lo > 0 else f"the default stays `{DEFAULT}`"
    return (
        f"Default rule (fixed before the runs): `{chosen}` minus `{DEFAULT}` on the validation score, "
        f"paired per (instance, seed), {mean:+.2f} points, 95% t interval over the {len(vals)} instance "
        f"means [{lo:+.2f}, {hi:+.2f}]: {verdict}."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--collect", default=None, help="A `dualselect compare` output folder to copy metrics from."
    )
    ap.add_argument("--write", action="store_true", help="Write table.md into the results folder.")
    ap.add_argument("--results", default=str(HERE), help=f"The results folder (default {HERE}).")
    args = ap.parse_args(argv)
    root = Path(args.results)
    if args.collect:
        print(f"collected {collect(Path(args.collect), root)} runs", file=sys.stderr)
    runs = load(root)
    if not runs:
        print(f"no runs in {root / 'run_metrics'}", file=sys.stderr)
        return 1
    text = table(runs)
    print(text, end="")
    if args.write:
        with atomic_open(root / "table.md") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
