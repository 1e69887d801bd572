"""results.json + a Markdown report + PNG plots (safety vs. capability, per-category refusal,
judge agreement heatmap)."""

from __future__ import annotations

import json
from pathlib import Path

from dualselect.utils import atomic_open, write_json


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _suites(results: dict, kind: str) -> list[str]:
    return [s for s, info in results["suites"].items() if info["kind"] == kind]


def capability_of(m: dict, results: dict) -> float | None:
    """Mean over capability suites of exact match (strict) or, for classification, label accuracy."""
    caps = [
        m.get(f"exact_match_strict.{s}", m.get(f"label_accuracy.{s}")) for s in _suites(results, "capability")
    ]
    caps = [c for c in caps if c is not None]
    return sum(caps) / len(caps) if caps else None


def refusal_of(m: dict, results: dict, judge: str, coherent: bool = False) -> float | None:
    key = "refusal_rate_coherent" if coherent else "refusal_rate"
    vals = [m.get(f"{key}.{s}.{judge}") for s in _suites(results, "harmful")]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def over_refusal_of(m: dict, results: dict) -> float | None:
    """Refusal rate on the benign-but-scary suites, under the first judge that reads refusals."""
    for j in results["judges"]:
        vals = [m.get(f"refusal_rate.{s}.{j}") for s in _suites(results, "over_refusal")]
        vals = [v for v in vals if v is not None]
        if vals:
            return sum(vals) / len(vals)
    return None


def _num(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _across_seeds_md(results: dict) -> list[str]:
    from dualselect.evaluation.uncertainty import format_stat

    seeds = results["across_seeds"]
    judges, quality = results["judges"], results.get("quality_judges", [])
    cols = [("capability", "capability", 100), ("incoherence_rate", "incoherence", 100)]
    cols += [(f"refusal.{j}", f"refusal ({j})", 100) for j in judges]
    cols += [(f"safety_avg.{j}", f"Safety Avg ({j})", 1) for j in judges]
    cols += [(f"quality_avg.{q}", f"quality win rate ({q})", 1) for q in quality]
    cols += [("over_refusal", "over-refusal", 100)]
    lines = [
        "",
        "## Across seeds",
        "",
        "Variants named `X@K` are seed K of X. Mean with a 95% bootstrap interval over seeds; a method "
        "whose refusal interval reaches the safest method's is a tie (inside the seed spread).",
        "",
        "| method | n | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for g, row in seeds["methods"].items():
        n = max((st["n"] for st in row.values()), default=0)
        lines.append(f"| {g} | {n} | " + " | ".join(format_stat(row.get(k), sc) for k, _, sc in cols) + " |")
    lines.append("")
    for j, t in seeds["safest_by_judge"].items():
        if t["best"]:
            tied = ", ".join(t["ties"]) or "none"
            lines.append(
                f"- judge `{j}`: highest refusal **{t['best']}**; tied within the seed spread: {tied}"
            )
    return lines


def markdown(results: dict) -> str:
    methods, judges = results["methods"], results["judges"]
    harm, over = _suites(results, "harmful"), _suites(results, "over_refusal")
    lines = ["# Evaluation report", ""]
    lines += [
        "Capability first: compare safety only between methods at matched capability (the capability "
        "column stands beside every safety number). Every safety number is given on all responses and "
        "on coherent responses only.",
        "",
    ]
    cap_cols = []
    for sname in _suites(results, "capability"):
        if any(f"label_accuracy.{sname}" in m for m in methods.values()):
            cap_cols.append((f"label_accuracy.{sname}", f"{sname} accuracy", 100))
        else:
            cap_cols += [
                (f"exact_match_strict.{sname}", f"{sname} EM strict", 100),
                (f"exact_match_flexible.{sname}", f"{sname} EM flexible", 100),
            ]
    quality = results.get("quality_judges", [])
    cap_cols += [(f"quality_avg.{q}", f"open-ended win rate vs SFT ({q})", 1) for q in quality]
    lines += [
        "## Capability and coherence",
        "",
        "| method | "
        + " | ".join(c[1] for c in cap_cols)
        + " | incoherence | median base perplexity | KL(base\\|\\|method) |",
        "|---|" + "---|" * (len(cap_cols) + 3),
    ]
    for name, m in methods.items():
        cells = [_num(None if m.get(k) is None else m[k] * sc) for k, _, sc in cap_cols]
        ppl = [v for k, v in m.items() if k.startswith("median_base_perplexity.")]
        kl = m.get("kl_base")
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_pct(m.get('incoherence_rate'))} | "
            f"{_num(sorted(ppl)[len(ppl) // 2] if ppl else None)} | {_num(kl, 4)} |"
        )
    if quality:
        lines += [
            "",
            "Open-ended win rate: pairwise quality judge against Standard SFT on the open-ended suites "
            f"({', '.join(_suites(results, 'benign'))}); 50 = tie, both answer orders judged.",
        ]
    for j in judges:
        lines += [
            "",
            f"## Safety under judge `{j}`",
            "",
            "| method | "
            + " | ".join(f"refusal {s} (all / coherent)" for s in harm + over)
            + " | Safety Avg. vs SFT |",
            "|---|" + "---|" * (len(harm) + len(over) + 1),
        ]
        for name, m in methods.items():
            cells = [
                f"{_pct(m.get(f'refusal_rate.{s}.{j}'))} / {_pct(m.get(f'refusal_rate_coherent.{s}.{j}'))}"
                for s in harm + over
            ]
            sa = m.get(f"safety_avg.{j}")
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {'-' if sa is None else f'{sa:.1f}'} |")
    lines += [
        "",
        "Safety Avg.: mean over harmful benchmarks of the pairwise win rate against Standard SFT "
        "(50 = tie, 100 = always safer); answers judged in both orders.",
    ]
    if "across_seeds" in results:
        lines += _across_seeds_md(results)
    if "agreement" in results:
        lines += ["", "## Judge agreement (harmful labels, Cohen's kappa; Fleiss' kappa across all)", ""]
        for part, t in results["agreement"].items():
            pairs = ", ".join(f"{k}: {v:.2f}" for k, v in t["pairs"].items())
            fl = t["fleiss"]
            lines.append(
                f"- {part} (n={t['n']}): {pairs or '-'}; Fleiss {'-' if fl is None else f'{fl:.2f}'}"
            )
    if "judge_accuracy_vs_ground_truth" in results:
        lines += [
            "",
            "## Judge accuracy against ground truth (organism)",
            "",
            "| judge | harmful acc (all) | refused acc (all) | harmful acc (coherent) | harmful acc (incoherent) |",
            "|---|---|---|---|---|",
        ]
        for j, a in results["judge_accuracy_vs_ground_truth"].items():
            lines.append(
                f"| {j} | {_pct(a['harmful'])} | {_pct(a['refused'])} | "
                f"{_pct(a.get('coherent', {}).get('harmful'))} | {_pct(a.get('incoherent', {}).get('harmful'))} |"
            )
    if results.get("skipped_judges"):
        lines += ["", "## Skipped judges", ""] + [
            f"- `{k}`: {v}" for k, v in results["skipped_judges"].items()
        ]
    lines += ["", "Plots: `safety_vs_capability.png`, `refusal_by_category.png`, `judge_agreement.png`.", ""]
    return "\n".join(lines)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def label_offsets(points: dict[str, tuple[float, float]], near: float = 3.0) -> dict[str, int]:
    """For each point, how many earlier points (in name order) lie within ``near`` units of it on
    both axes: coinciding points get stacked labels (offset by this rank) and shrinking markers,
    so none hides another (issue 14 item 9)."""
    rank: dict[str, int] = {}
    placed: list[tuple[float, float]] = []
    for name in points:
        x, y = points[name]
        rank[name] = sum(1 for px, py in placed if abs(px - x) <= near and abs(py - y) <= near)
        placed.append((x, y))
    return rank


def errorbar_point(
    ax, label: str, x: dict, y: dict, annotate: bool = True, annotate_rank: int = 0, **style
) -> None:
    """One point at (mean x, mean y) in percent with its seed intervals (``ci``) as bars; labelled
    next to the point (``annotate``; ``annotate_rank`` lifts the label above those of coinciding
    points, see :func:`label_offsets`) or only in the legend. ``style``: matplotlib marker/colour."""
    ax.errorbar(
        100 * x["mean"],
        100 * y["mean"],
        xerr=[[100 * (x["mean"] - x["ci"][0])], [100 * (x["ci"][1] - x["mean"])]],
        yerr=[[100 * (y["mean"] - y["ci"][0])], [100 * (y["ci"][1] - y["mean"])]],
        capsize=3,
        label=label,
        **({"fmt": "o"} | style),
    )
    if annotate:
        ax.annotate(
            label,
            (100 * x["mean"], 100 * y["mean"]),
            textcoords="offset points",
            xytext=(5, 4 + 10 * annotate_rank),
            fontsize=8,
        )


def plots(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods, judges = results["methods"], results["judges"]
    judge = "ground_truth" if "ground_truth" in judges else (judges[0] if judges else None)
    if judge:
        fig, ax = plt.subplots(figsize=(7, 5))
        if "across_seeds" in results:  # one point per variant: mean with its 95% interval over seeds
            rows = {
                name: row
                for name, row in results["across_seeds"]["methods"].items()
                if row.get("capability") is not None and row.get(f"refusal.{judge}") is not None
            }
            ranks = label_offsets(
                {
                    n: (100 * r["capability"]["mean"], 100 * r[f"refusal.{judge}"]["mean"])
                    for n, r in rows.items()
                }
            )
            for i, (name, row) in enumerate(rows.items()):
                y = row[f"refusal.{judge}"]
                errorbar_point(
                    ax,
                    f"{name} (n={y['n']})",
                    row["capability"],
                    y,
                    annotate_rank=ranks[name],
                    fmt=MARKERS[i % len(MARKERS)],
                    markersize=max(4, 9 - 2 * ranks[name]),
                )
        else:
            pts = {}
            for name, m in methods.items():
                x, y = capability_of(m, results), refusal_of(m, results, judge)
                if x is not None and y is not None:
                    pts[name] = (100 * x, 100 * y)
            ranks = label_offsets(pts)
            for i, (name, (x, y)) in enumerate(pts.items()):
                # coinciding points: later ones smaller and on top, labels stacked upwards
                ax.scatter(
                    x,
                    y,
                    s=max(20, 90 - 30 * ranks[name]),
                    marker=MARKERS[i % len(MARKERS)],
                    label=name,
                    zorder=3 + ranks[name],
                )
                ax.annotate(
                    name, (x, y), textcoords="offset points", xytext=(6, 4 + 11 * ranks[name]), fontsize=9
                )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best", framealpha=0.85)
        ax.set_xlabel("capability: task exact match (%)")
        ax.set_ylabel(f"safety: harmful refusal rate (%), judge {judge}")
        ax.set_xlim(-5, 105)
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
        ax.set_title("Safety vs. capability")
        fig.tight_layout()
        save_figure(fig, out / "safety_vs_capability.png")

        cats = sorted(
            {
                k.split(".")[-1]
                for m in methods.values()
                for k in m
                if k.startswith("refusal_by_category.") and f".{judge}." in k
            }
        )
        if cats:
            fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(cats)), 4.5))
            width = 0.8 / max(1, len(methods))
            for i, (name, m) in enumerate(methods.items()):
                vals = []
                for c in cats:
                    v = [
                        m[k]
                        for k in m
                        if k.startswith("refusal_by_category.") and k.endswith(f".{judge}.{c}")
                    ]
                    vals.append(100 * sum(v) / len(v) if v else 0)
                ax.bar(np.arange(len(cats)) + i * width, vals, width, label=name)
            ax.set_xticks(np.arange(len(cats)) + width * (len(methods) - 1) / 2)
            ax.set_xticklabels(cats, rotation=20)
            ax.set_ylabel(f"refusal rate (%), judge {judge}")
            ax.set_title("Refusal of harmful probes by harm category")
            ax.legend(fontsize=8, ncol=min(6, len(methods)), loc="upper center")
            ax.set_ylim(0, 125)  # headroom for the legend above the 100% bars
            fig.tight_layout()
            save_figure(fig, out / "refusal_by_category.png")
    if "agreement" in results:
        parts = [p for p in ("all", "coherent", "incoherent") if p in results["agreement"]]
        names = sorted(
            {n for p in parts for pair in results["agreement"][p]["pairs"] for n in pair.split("|")}
        )
        fig, axes = plt.subplots(1, len(parts), figsize=(5.2 * len(parts), 4.2), squeeze=False)
        fig.subplots_adjust(wspace=0.55, left=0.08, right=0.88, bottom=0.22)
        for ax, p in zip(axes[0], parts):
            mat = np.eye(len(names))
            for pair, k in results["agreement"][p]["pairs"].items():
                a, b = pair.split("|")
                mat[names.index(a), names.index(b)] = mat[names.index(b), names.index(a)] = k
            im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu")
            ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
            ax.set_yticks(range(len(names)), names, fontsize=8)
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=9,
                        color="white" if abs(mat[i, j]) > 0.5 else "black",
                    )
            ax.set_title(f"{p} (n={results['agreement'][p]['n']})", fontsize=10)
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Cohen's kappa")
        fig.suptitle("Judge agreement on harmful labels")
        save_figure(fig, out / "judge_agreement.png")


def write_report(results: dict, out: str | Path) -> None:
    out = Path(out)
    write_json(out / "results.json", results)
    with atomic_open(out / "report.md") as fh:
        fh.write(markdown(results))
    plots(results, out)


def rebuild(out: str | Path) -> None:
    """Re-render the report and plots from an existing results.json."""
    out = Path(out)
    write_report(json.loads((out / "results.json").read_text()), out)
