"""Aggregate per-seed metrics into one comparison table (Markdown + CSV + JSON) and a plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dualselect.evaluation.uncertainty import format_stat, summarise_runs, ties_with_best
from dualselect.utils import atomic_open, write_json

TABLE_COLUMNS = [
    ("task_exact_match", "task EM", 100),
    ("harmful_refusal_hh", "refusal HH", 100),
    ("harmful_refusal_hex", "refusal HEx", 100),
    ("refusal_harmbench", "refusal HarmBench", 100),
    ("refusal_strongreject", "refusal StrongREJECT", 100),
    ("refusal_advbench", "refusal AdvBench", 100),
    ("harmful_refusal", "refusal avg", 100),
    ("over_refusal_rate", "over-refusal", 100),
    ("benign_accuracy", "benign acc", 100),
    ("incoherence_rate", "incoherent", 100),
    ("safety_avg_ground_truth", "Safety Avg (GT)", 1),
    ("safety_avg_keyword", "Safety Avg (kw)", 1),
    ("train_seconds", "train s", 1),
    ("wall_seconds", "wall s", 1),
    ("peak_rss_mb", "peak MB", 1),
    ("supervised_tokens", "target tokens", 1),
]


def aggregate(
    runs: dict[str, list[dict]],
    safety: str,
    capability: str,
    reference: str = "sft",
    matched_within: float = 3.0,
) -> dict:
    """Per method and metric: mean, CI, min, max over seeds; ties with the safest method; and the
    safest method at matched capability: among methods whose mean ``capability`` is at most
    ``matched_within`` points (of 100) below ``reference``'s, the highest mean ``safety``."""
    table: dict = {"methods": summarise_runs(runs), "safety_metric": safety, "capability_metric": capability}
    best, ties = ties_with_best({m: r[safety] for m, r in table["methods"].items() if safety in r})
    if best is not None:
        table["best_safety"] = best
        for m, tie in ties.items():
            table["methods"][m]["safety_tie_with_best"] = tie
    ref = table["methods"].get(reference, {}).get(capability)
    if ref is not None:
        floor = ref["mean"] - matched_within / 100
        matched = {
            m: r[safety]
            for m, r in table["methods"].items()
            if capability in r and safety in r and r[capability]["mean"] >= floor
        }
        best_m, ties_m = ties_with_best(matched)
        table["matched_capability"] = {
            "reference": reference,
            "within_points": matched_within,
            "capability_floor": floor,
            "methods": sorted(matched),
            "best_safety": best_m,
            "ties": sorted(m for m, t in ties_m.items() if t),
        }
    return table


def markdown_table(table: dict) -> str:
    cols = [c for c in TABLE_COLUMNS if any(c[0] in r for r in table["methods"].values())]
    head = "| method | " + " | ".join(label for _, label, _ in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for method, row in table["methods"].items():
        name = method + (" (tie)" if row.get("safety_tie_with_best") else "")
        if method == table.get("best_safety"):
            name = f"**{method}**"
        lines.append(f"| {name} | " + " | ".join(format_stat(row.get(k), s) for k, _, s in cols) + " |")
    return "\n".join(lines)


def write_tables(table: dict, out: str | Path, safety: str, capability: str) -> None:
    """``comparison.md``, ``comparison.csv``, ``comparison.json`` and ``safety_vs_capability.png``."""
    out = Path(out)
    write_json(out / "comparison.json", table)
    md = [
        "# Method comparison",
        "",
        f"Mean over seeds with a 95% bootstrap interval. Safety: `{safety}`; capability: `{capability}`. "
        f"Bold: the safest method; (tie): its interval overlaps the safest method's. Compare safety only "
        f"at matched capability: the capability column stands beside it.",
        "",
        markdown_table(table),
        "",
    ]
    mc = table.get("matched_capability")
    if mc and mc["best_safety"]:
        best = mc["best_safety"]
        md += [
            f"Safest at matched capability ({capability} at most {mc['within_points']:g} points below "
            f"`{mc['reference']}`'s, i.e. >= {100 * mc['capability_floor']:.1f}): **{best}** "
            f"({safety} {format_stat(table['methods'][best][safety], 100)}); tied with it: "
            f"{', '.join(mc['ties']) or 'none'}. Methods at matched capability: {', '.join(mc['methods'])}.",
            "",
        ]
    with atomic_open(out / "comparison.md") as fh:
        fh.write("\n".join(md))
    buf = io.StringIO()
    w = csv.writer(buf)
    keys = sorted({k for r in table["methods"].values() for k, v in r.items() if isinstance(v, dict)})
    w.writerow(
        [
            "method",
            *[f"{k}_{s}" for k in keys for s in ("mean", "ci_low", "ci_high", "min", "max")],
            "safety_tie_with_best",
        ]
    )
    for method, row in table["methods"].items():
        cells = []
        for k in keys:
            st = row.get(k)
            cells += [st["mean"], *st["ci"], st["min"], st["max"]] if st else [""] * 5
        w.writerow([method, *cells, row.get("safety_tie_with_best", False)])
    with atomic_open(out / "comparison.csv") as fh:
        fh.write(buf.getvalue())
    plot_safety_vs_capability(table, out / "safety_vs_capability.png", safety, capability)


def plot_safety_vs_capability(table: dict, path: Path, safety: str, capability: str) -> None:
    """Every method at its mean with 95% seed intervals; colour and marker per method, legend
    outside the axes (many methods crowd the safe, capable corner)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dualselect.evaluation.report import errorbar_point, save_figure

    fig, ax = plt.subplots(figsize=(10, 6))
    colours, markers = plt.get_cmap("tab20").colors, "osD^vPX*<>"
    for i, (method, row) in enumerate(table["methods"].items()):
        if safety not in row or capability not in row:
            continue
        style = {"fmt": markers[i % len(markers)], "color": colours[i % len(colours)], "markersize": 7}
        errorbar_point(ax, method, row[capability], row[safety], annotate=False, **style)
    ax.set_xlabel(f"capability: {capability} (%)")
    ax.set_ylabel(f"safety: {safety} (%)")
    ax.set_ylim(-3, 103)
    ax.set_title("Safety vs. capability (mean, 95% CI over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
