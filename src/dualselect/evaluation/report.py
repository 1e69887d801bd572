"""results.json + a Markdown report + PNG plots (safety vs. capability, per-category refusal,
judge agreement heatmap)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def over_refusal_of(m: dict, results: dict, coherent: bool = False) -> float | None:
    """Refusal rate on the benign-but-scary suites (safe prompts only), under the first judge
    that reads refusals; on coherent responses only with ``coherent``."""
    key = "refusal_rate_coherent" if coherent else "refusal_rate"
    for j in results["judges"]:
        vals = [m.get(f"{key}.{s}.{j}") for s in _suites(results, "over_refusal")]
        vals = [v for v in vals if v is not None]
        if vals:
            return sum(vals) / len(vals)
    return None


def _num(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ci(m: dict, key: str, scale: float = 1.0) -> str:
    """`` [lo, hi]`` of ``m["ci.<key>"]`` times ``scale``, or "" when absent."""
    ci = m.get(f"ci.{key}")
    return "" if not ci else f" [{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]"


def _failures_md(results: dict) -> list[str]:
    fails = results.get("judge_failures") or {}
    if not fails:
        return []
    lines = [
        "",
        "## Judge failures",
        "",
        "Items a judge could not read (failed call, malformed reply after retries, unparsed "
        "output) are left out of its rates and win rates, never counted as ties; "
        "`pairwise:<suite>` counts failed answer pairs.",
        "",
        "| judge | suite | method | failures |",
        "|---|---|---|---|",
    ]
    for j, per in fails.items():
        for s, by_m in per.items():
            n = results["suites"].get(s.removeprefix("pairwise:"), {}).get("n", "?")
            for meth, k in by_m.items():
                lines.append(f"| {j} | {s} | {meth} | {k} of {n} |")
    return lines


def _across_seeds_md(results: dict) -> list[str]:
    from dualselect.evaluation.uncertainty import format_stat

    seeds = results["across_seeds"]
    judges, quality = results["judges"], results.get("quality_judges", [])
    cols = [("capability", "capability", 100), ("incoherence_rate", "incoherence", 100)]
    cols += [(f"refusal.{j}", f"refusal ({j})", 100) for j in judges]
    cols += [(f"safety_avg.{j}", f"Safety Avg ({j})", 1) for j in judges]
    cols += [(f"quality_avg.{q}", f"quality win rate ({q})", 1) for q in quality]
    cols += [("over_refusal", "over-refusal", 100), ("over_refusal_coherent", "over-refusal (coherent)", 100)]
    lines = [
        "",
        "## Across seeds",
        "",
        "Variants named `X@K` are seed K of X. Mean with a 95% Student-t interval over seeds; a "
        "method is tied with the safest when the 95% Welch interval of the difference of mean "
        "refusals contains 0.",
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
    """The Markdown report of an evaluation's results: capability and coherence, safety per judge,
    judge validation, failures, across-seeds summary, agreement, accuracy against ground truth."""
    lines = ["# Evaluation report", ""]
    lines += [
        "Capability first: compare safety only between methods at matched capability (the capability "
        "column stands beside every safety number). Every safety number is given on all responses and "
        "on coherent responses only.",
        "",
    ]
    lines += _capability_md(results)
    for j in results["judges"]:
        lines += _safety_md(results, j)
    lines += _safety_notes_md(results)
    lines += judge_validation_md(results)
    lines += _failures_md(results)
    if "across_seeds" in results:
        lines += _across_seeds_md(results)
    lines += _agreement_md(results)
    if results.get("skipped_judges"):
        lines += ["", "## Skipped judges", ""] + [
            f"- `{k}`: {v}" for k, v in results["skipped_judges"].items()
        ]
    lines += ["", "Plots: `safety_vs_capability.png`, `refusal_by_category.png`, `judge_agreement.png`.", ""]
    return "\n".join(lines)


def _capability_md(results: dict) -> list[str]:
    """Capability per suite, open-ended win rates, incoherence, base perplexity, KL to the base."""
    methods = results["methods"]
    lines: list[str] = []
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
    gate = results.get("coherence_gate")
    if gate:
        ppl = gate.get("max_perplexity")
        lines += [
            "",
            "Incoherence: share of responses on the safety suites (harmful, over-refusal, open-ended) the "
            "coherence gate flags (empty, repetition, non-words, word salad"
            + (
                f", perplexity above {ppl:.2f} under the base model"
                if ppl
                else "; perplexity recorded, not gated"
            )
            + (f", LLM judge `{gate['llm_judge']}`" if gate.get("llm_judge") else "")
            + "); capability suites keep their own per-suite rate.",
        ]
    if quality:
        lines += [
            "",
            "Open-ended win rate: pairwise quality judge against Standard SFT on the open-ended suites "
            f"({', '.join(_suites(results, 'benign'))}); 50 = tie, both answer orders judged.",
        ]
    return lines


def _safety_md(results: dict, j: str) -> list[str]:
    """The safety table of judge ``j``: refusal and over-refusal per suite (all / coherent), native scores, intervals over prompts, Safety Avg.; XSTest classes where the judge reads them."""
    methods = results["methods"]
    harm, over = _suites(results, "harmful"), _suites(results, "over_refusal")
    fails = results.get("judge_failures") or {}
    lines: list[str] = []
    info = (results.get("judge_info") or {}).get(j, {})
    mark = " (**has failures**, see Judge failures)" if j in fails else ""
    ident = ", ".join(f"{k} `{v}`" for k, v in info.items() if k in ("template_version", "model_id") and v)
    scored = [s for s in harm if any(f"mean_score.{s}.{j}" in m for m in methods.values())]
    lines += [
        "",
        f"## Safety under judge `{j}`{mark}",
        "",
        *([f"Judge {ident}.", ""] if ident else []),
        "| method | "
        + " | ".join(f"refusal {s} (all / coherent)" for s in harm)
        + "".join(f" | over-refusal {s} (all / coherent)" for s in over)
        + "".join(f" | mean score {s} (all / coherent)" for s in scored)
        + " | refusal, mean over harmful [95% CI over prompts]"
        + (" | over-refusal [95% CI over prompts]" if over else "")
        + " | Safety Avg. vs SFT [95% CI] | Safety Avg. coherent pairs |",
        "|---|" + "---|" * (len(harm) + len(over) + len(scored) + 3 + bool(over)),
    ]
    for name, m in methods.items():
        cells = [
            f"{_pct(m.get(f'refusal_rate.{s}.{j}'))} / {_pct(m.get(f'refusal_rate_coherent.{s}.{j}'))}"
            for s in harm + over
        ]
        cells += [
            f"{_num(m.get(f'mean_score.{s}.{j}'), 2)} / {_num(m.get(f'mean_score_coherent.{s}.{j}'), 2)}"
            for s in scored
        ]
        ref = refusal_of(m, results, j)
        cells.append(f"{_pct(ref)}{_ci(m, f'refusal.{j}', 100)}")
        if over:
            cells.append(f"{_pct(m.get(f'over_refusal.{j}'))}{_ci(m, f'over_refusal.{j}', 100)}")
        sa = m.get(f"safety_avg.{j}")
        cells.append(f"{_num(sa)}{_ci(m, f'safety_avg.{j}')}")
        cells.append(_num(m.get(f"safety_avg_coherent.{j}")))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    xs = [
        (s, c)
        for s in over
        for c in ("full_compliance", "full_refusal", "partial_refusal")
        if any(f"xstest_class.{s}.{j}.{c}" in m for m in methods.values())
    ]
    if xs:
        lines += [
            "",
            f"XSTest classes under `{j}` (share of safe prompts):",
            "",
            "| method | " + " | ".join(f"{s} {c}" for s, c in xs) + " |",
            "|---|" + "---|" * len(xs),
        ]
        for name, m in methods.items():
            lines.append(
                f"| {name} | " + " | ".join(_pct(m.get(f"xstest_class.{s}.{j}.{c}")) for s, c in xs) + " |"
            )
    return lines


def _safety_notes_md(results: dict) -> list[str]:
    """How to read the safety tables, and the methods tied with the safest per judge."""
    lines: list[str] = []
    lines += [
        "",
        "Refusal and over-refusal in percent; over-refusal is on the benign-but-scary suites' safe "
        "prompts only. Mean score: the judge's published scale (HEx-PHI 1-5, StrongREJECT 0-1). "
        "Safety Avg.: mean over harmful benchmarks of the pairwise win rate against Standard SFT "
        "(50 = tie, 100 = always safer), comparing each judge's label or published ordinal scale "
        "(two refusals tie); answers judged in both orders; the coherent column keeps the prompts "
        "where both answers pass the coherence gate. Intervals: 95% percentile bootstrap over "
        "prompts (benchmarks resampled separately).",
    ]
    if results.get("safest_by_judge_prompts") and "across_seeds" not in results:
        lines.append("")
        for j, t in results["safest_by_judge_prompts"].items():
            tied = ", ".join(t["ties"]) or "none"
            lines.append(
                f"- judge `{j}`: highest refusal **{t['best']}**; tied with it (95% paired bootstrap "
                f"over prompts of the difference contains 0): {tied}"
            )
    return lines


def _agreement_md(results: dict) -> list[str]:
    """Judge agreement (harm labels, published scales) and judge accuracy against ground truth."""
    lines: list[str] = []
    for key, title in (
        (
            "agreement",
            "harm labels (for refusal detectors: non-refusal), Cohen's kappa / percent agreement; "
            "Fleiss' kappa across all",
        ),
        ("agreement_ordinal", "published 1-5 scales, quadratic-weighted kappa / percent agreement"),
    ):
        if key not in results:
            continue
        lines += ["", f"## Judge agreement ({title})", ""]
        for part, t in results[key].items():
            pct = t.get("percent_agreement", {})
            npair = t.get("n_pairs", {})
            pairs = ", ".join(
                f"{k}: {v:.2f} / {100 * pct[k]:.1f}%"
                + (f" (n={npair[k]})" if npair.get(k, t["n"]) != t["n"] else "")
                if k in pct
                else f"{k}: {v:.2f}"
                for k, v in t["pairs"].items()
            )
            fl = t["fleiss"]
            lines.append(
                f"- {part} (n={t['n']}): {pairs or '-'}; Fleiss {'-' if fl is None else f'{fl:.2f}'}"
            )
    if "judge_accuracy_vs_ground_truth" in results:
        lines += [
            "",
            "## Judge accuracy against ground truth (organism)",
            "",
            "| judge | harm-label acc (all; refusal detectors: non-refusal) | refused acc (all) | "
            "harm-label acc (coherent) | harm-label acc (incoherent) |",
            "|---|---|---|---|---|",
        ]
        for j, a in results["judge_accuracy_vs_ground_truth"].items():
            lines.append(
                f"| {j} | {_pct(a['harmful'])} | {_pct(a['refused'])} | "
                f"{_pct(a.get('coherent', {}).get('harmful'))} | {_pct(a.get('incoherent', {}).get('harmful'))} |"
            )
    return lines


def _ci_pct(ci) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def judge_validation_md(results: dict) -> list[str]:
    """Every judge named with what it measures and its accuracy measured against human labels
    (or "not validated"), then the error-corrected refusal rates beside the raw ones."""
    from dualselect.evaluation.correction import METHOD, TRANSPORT_CAVEAT, accuracy_line

    info = results.get("judge_validation")
    if not info:
        return []
    lines = ["", "## Judges, what they measure and their measured accuracy", ""]
    for j, v in info.items():
        what = (
            "refusal detector: refusal / non-refusal; a non-refusal is not shown to be harmful"
            if v.get("measures") == "refusal"
            else "harm judge"
        )
        lines.append(f"- {accuracy_line(j, {k: v.get(k) for k in ('safe', 'unsafe')})} ({what}).")
    lines += [
        "",
        "Accuracy measured by `dualselect judges validate` on XSTest's human-labelled completions "
        "(safe prompts: over-refusal suites; unsafe contrast prompts: harmful suites); refusal = full "
        "or partial refusal.",
    ]
    keys = sorted({k for m in results["methods"].values() for k in m if k.startswith("corrected.")})
    if not keys:
        return lines
    lines += [
        "",
        "### Error-corrected refusal rates",
        "",
        f"Raw rate and the rate corrected for the judge's measured error: {METHOD}. "
        f"Refusal: mean over harmful suites; over-refusal: safe prompts only. {TRANSPORT_CAVEAT}",
        "",
        "| method | judge | rate | raw % | corrected % [95% CI] | validated at (tokens) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in results["methods"].items():
        for k in keys:
            r = m.get(k)
            if not r:
                continue
            _, rate, judge = k.split(".", 2)
            corr = (
                f"{100 * r['corrected']:.1f}{_ci_pct(r['ci'])}"
                if r["corrected"] is not None
                else f"not corrected ({r['note']})"
            )
            if r["corrected"] is not None and r.get("note"):
                corr += f" ({r['note']})"
            lines.append(
                f"| {name} | {judge} | {rate.replace('_', '-')} | {100 * r['raw']:.1f} | {corr} | "
                f"{r.get('max_new_tokens')} |"
            )
    return lines


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
    so none hides another."""
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
        _plot_safety_vs_capability(results, judge, out, plt)
        _plot_refusal_by_category(methods, judge, out, plt, np)
    if results.get("agreement") and any(t["pairs"] for t in results["agreement"].values()):
        _plot_agreement(results, out, plt, np)


def _plot_safety_vs_capability(results: dict, judge: str, out: Path, plt: Any) -> None:
    """``safety_vs_capability.png``: headline refusal against capability per method."""
    methods = results["methods"]
    fig, ax = plt.subplots(figsize=(7, 5))
    if "across_seeds" in results:  # one point per variant: mean with its 95% interval over seeds
        rows = {
            name: row
            for name, row in results["across_seeds"]["methods"].items()
            if row.get("capability") is not None and row.get(f"refusal.{judge}") is not None
        }
        ranks = label_offsets(
            {n: (100 * r["capability"]["mean"], 100 * r[f"refusal.{judge}"]["mean"]) for n, r in rows.items()}
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


def _plot_refusal_by_category(methods: dict, judge: str, out: Path, plt: Any, np: Any) -> None:
    """``refusal_by_category.png``: refusal of harmful prompts per harm category and method."""
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
                    if k.startswith("refusal_by_category.")
                    and k.endswith(f".{judge}.{c}")
                    and m[k] is not None  # the judge failed on every item of the category
                ]
                vals.append(100 * sum(v) / len(v) if v else float("nan"))  # no bar, not a 0
            ax.bar(np.arange(len(cats)) + i * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(cats)) + width * (len(methods) - 1) / 2)
        ax.set_xticklabels(cats, rotation=20)
        ax.set_ylabel(f"refusal rate (%), judge {judge}")
        ax.set_title("Refusal of harmful probes by harm category")
        ax.legend(fontsize=8, ncol=min(6, len(methods)), loc="upper center")
        ax.set_ylim(0, 125)  # headroom for the legend above the 100% bars
        fig.tight_layout()
        save_figure(fig, out / "refusal_by_category.png")


def _plot_agreement(results: dict, out: Path, plt: Any, np: Any) -> None:
    """``judge_agreement.png``: Cohen's kappa between judges on harm labels, per coherence part."""
    parts = [p for p in ("all", "coherent", "incoherent") if results["agreement"].get(p, {}).get("pairs")]
    names = sorted({n for p in parts for pair in results["agreement"][p]["pairs"] for n in pair.split("|")})
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
    fig.suptitle("Judge agreement on harm labels (refusal detectors: non-refusal)")
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
