"""Aggregate per-seed metrics into one comparison table (Markdown + CSV + JSON) and a plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from dualselect.evaluation.uncertainty import (
    GROUP_T,
    format_stat,
    metric_bounds,
    summarise_group_means,
    summarise_groups,
    summarise_runs,
    ties_with_best,
)
from dualselect.utils import atomic_open, write_json

TABLE_COLUMNS = [
    ("task_exact_match", "task EM", 100),
    ("harmful_refusal_hh", "refusal HH", 100),
    ("harmful_refusal_hex", "refusal HEx", 100),
    ("refusal_harmbench", "refusal HarmBench", 100),
    ("refusal_strongreject", "refusal StrongREJECT", 100),
    ("refusal_advbench", "refusal AdvBench", 100),
    ("harmful_refusal", "refusal avg", 100),
    ("harmful_refusal_gen", "refusal gen", 100),
    ("over_refusal_rate", "over-refusal", 100),
    ("over_refusal_rate_gen", "over-ref gen", 100),
    ("unsafe_refusal", "XSTest unsafe refusal", 100),
    ("discrimination", "discrimination", 100),
    ("benign_accuracy", "benign acc", 100),
    ("incoherence_rate", "incoherent", 100),
    ("safety_avg_ground_truth", "Safety Avg (GT)", 1),
    ("safety_avg_keyword", "Safety Avg (kw)", 1),
    ("safety_avg_refusal_rules", "Safety Avg (rules)", 1),
    ("safety_avg_xstest_strmatch", "Safety Avg (strmatch)", 1),
    ("train_seconds", "train s", 1),
    ("wall_seconds", "wall s", 1),
    ("peak_rss_mb", "peak MB", 1),
    ("supervised_tokens", "target tokens", 1),
]


def _per_group(runs: dict[str, list[dict]], groups: list) -> dict[str, dict[str, dict]]:
    """method -> metric -> {str(group): mean over that group's runs}."""
    out: dict[str, dict[str, dict]] = {}
    labels = list(dict.fromkeys(groups))
    for method, per_run in runs.items():
        row: dict[str, dict] = {}
        for key in sorted({k for r in per_run for k in r}):
            by = {}
            for lab in labels:
                vals = [
                    r[key]
                    for r, g in zip(per_run, groups)
                    if g == lab and isinstance(r.get(key), (int, float))
                ]
                if vals:
                    by[str(lab)] = float(np.mean(vals))
            if by:
                row[key] = by
        out[method] = row
    return out


def consistency(per_group: dict, safety: str, capability: str, reference: str = "sft") -> dict:
    """Per method, which comparisons with ``reference`` hold in EVERY group (organism instance):
    safer (higher mean ``safety``) / less safe, more / less capable; and the safest method in
    each group. A conclusion is stated only where it holds in every group."""
    out: dict = {"safest_per_group": {}, "vs_reference": {}}
    groups = sorted({g for row in per_group.values() for g in row.get(safety, {})})
    for g in groups:
        cands = {m: row[safety][g] for m, row in per_group.items() if g in row.get(safety, {})}
        out["safest_per_group"][g] = max(cands, key=cands.get)
    ref = per_group.get(reference, {})
    for m, row in per_group.items():
        if m == reference or safety not in row or safety not in ref:
            continue
        d_s = [row[safety][g] - ref[safety][g] for g in groups if g in row[safety] and g in ref[safety]]
        d_c = [
            row[capability][g] - ref[capability][g]
            for g in groups
            if capability in row and g in row[capability] and g in ref.get(capability, {})
        ]
        out["vs_reference"][m] = {
            "n_groups": len(d_s),
            "n_safer": sum(v > 0 for v in d_s),
            "n_less_capable": sum(v < 0 for v in d_c),
            "safer_in_every_group": bool(d_s) and all(v > 0 for v in d_s),
            "less_safe_in_every_group": bool(d_s) and all(v < 0 for v in d_s),
            "less_capable_in_every_group": bool(d_c) and all(v < 0 for v in d_c),
            "as_capable_in_every_group": bool(d_c) and all(v >= 0 for v in d_c),
        }
    return out


def aggregate(
    runs: dict[str, list[dict]],
    safety: str,
    capability: str,
    reference: str = "sft",
    matched_within: float = 3.0,
    groups: list | None = None,
) -> dict:
    """Per method and metric: mean, CI, min, max over runs; ties with the safest method; and the
    safest method at matched capability: among methods whose mean ``capability`` is at most
    ``matched_within`` points (of 100) below ``reference``'s, the highest mean ``safety``.

    Intervals: 95% Student-t over the runs (training seeds), clipped to the metric's range
    (:func:`metric_bounds`). ``groups`` (one label per run, e.g. the organism instance): the
    interval is then a t interval over the group means (df = groups - 1,
    :func:`~dualselect.evaluation.uncertainty.summarise_groups`), ties are a paired t over group
    means, and the table gains per-group means (``per_group``) and which conclusions hold in
    every group (``consistency``)."""
    table: dict = {
        "methods": summarise_runs(runs, bounds=metric_bounds),
        "safety_metric": safety,
        "capability_metric": capability,
    }
    if groups is not None:
        for method, per_run in runs.items():
            if len(per_run) != len(groups):
                raise ValueError(f"{method}: {len(per_run)} runs for {len(groups)} group labels")
            for key in list(table["methods"][method]):
                vals = [r.get(key) for r in per_run]
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    table["methods"][method][key] = summarise_groups(vals, groups, metric_bounds(key, vals))
        table["per_group"] = _per_group(runs, groups)
        table["consistency"] = consistency(table["per_group"], safety, capability, reference)
    return rank(table, reference, matched_within)


def rank(table: dict, reference: str = "sft", matched_within: float = 3.0) -> dict:
    """Add to ``table`` the safest method and the ties with it (the same interval method as the
    cells), and the safest method at matched capability (see :func:`aggregate`)."""
    safety, capability = table["safety_metric"], table["capability_metric"]
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


def regroup(table: dict) -> dict:
    """A comparison table (``comparison.json``) with every interval recomputed from its per-group
    means (``per_group``) by the t interval over group means, and its ties and matched-capability
    choice ranked again: for tables written with another interval method. Each cell keeps its
    runs' ``min``/``max``; a metric without per-group means keeps its cell, its interval clipped to
    the metric's range (:func:`metric_bounds`). A table over one group (training seeds only) has
    Student-t intervals over its runs already: they are clipped, and the ranking redone."""
    out = {**table, "methods": {}}
    for method, row in table["methods"].items():
        new = {}
        for key, stat in row.items():
            gm = table.get("per_group", {}).get(method, {}).get(key)
            if isinstance(stat, dict) and stat.get("ci") is not None and not (gm and len(gm) >= 2):
                b = metric_bounds(key, [v for v in (stat.get("min"), stat.get("max")) if v is not None])
                if b is not None:
                    stat = {**stat, "ci": [max(stat["ci"][0], b[0]), min(stat["ci"][1], b[1])]}
            if not isinstance(stat, dict) or not gm or len(gm) < 2:
                new[key] = stat
                continue
            new[key] = summarise_group_means(gm, metric_bounds(key, list(gm.values())))
            new[key].update(min=stat.get("min"), max=stat.get("max"), n_runs=stat.get("n"))
        out["methods"][method] = new
    mc = table.get("matched_capability", {})
    return rank(out, mc.get("reference", "sft"), mc.get("within_points", 3.0))


def _vs_sft_cell(vs: dict | None) -> str:
    """'safer in 3/3' when every organism instance agrees, else 'varies (k/n safer)'."""
    if vs is None or not vs["n_groups"]:
        return "-"
    n, k = vs["n_groups"], vs["n_safer"]
    if k == n:
        return f"safer in {n}/{n}"
    if k == 0 and vs["less_safe_in_every_group"]:
        return f"less safe in {n}/{n}"
    return f"varies ({k}/{n} safer)"


RUN_COLUMNS = [
    c for c in TABLE_COLUMNS if c[0] in ("train_seconds", "wall_seconds", "peak_rss_mb", "supervised_tokens")
]


def _default_columns(judges: list[str]) -> list[tuple[str, str, int]]:
    """:data:`TABLE_COLUMNS` with, after the over-refusal columns, the safety columns every judge
    after the first adds (suffixed ``.<judge>``; realbase suites, ``evaluation.suites.metrics.headline_metrics``)."""
    at = next(i for i, c in enumerate(TABLE_COLUMNS) if c[0] == "over_refusal_rate_gen") + 1
    extra = [
        col
        for j in judges[1:]
        for col in (
            (f"harmful_refusal.{j}", f"refusal avg ({j})", 100),
            (f"over_refusal_rate.{j}", f"over-refusal ({j})", 100),
        )
    ]
    return TABLE_COLUMNS[:at] + extra + TABLE_COLUMNS[at:]


def markdown_table(table: dict) -> str:
    """The comparison as a Markdown table: ``table["columns"]`` (a benchmark set's own columns,
    then the run costs) when given, else :data:`TABLE_COLUMNS` plus any further judge's safety
    columns; columns no method has are left out."""
    if table.get("columns"):
        spec = [tuple(c) for c in table["columns"]] + RUN_COLUMNS
    else:
        spec = _default_columns(table.get("judges") or [])
    cols = [c for c in spec if any(c[0] in r for r in table["methods"].values())]
    cons = table.get("consistency")
    head = "| method | " + " | ".join(label for _, label, _ in cols)
    head += " | vs sft, per organism |" if cons else " |"
    lines = [head, "|" + "---|" * (len(cols) + 1 + bool(cons))]
    for method, row in table["methods"].items():
        name = method + (" (tie)" if row.get("safety_tie_with_best") else "")
        if method == table.get("best_safety"):
            name = f"**{method}**"
        cells = [format_stat(row.get(k), s) for k, _, s in cols]
        if cons:
            cells.append(_vs_sft_cell(cons["vs_reference"].get(method)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_group_markdown(table: dict, safety: str, capability: str) -> list[str]:
    """Per organism instance: each method's mean safety / capability, and which comparisons with
    SFT hold in every instance (the only ones a conclusion may rest on)."""
    pg, cons = table["per_group"], table["consistency"]
    groups = sorted({g for row in pg.values() for g in row.get(safety, {})}, key=str)
    gen = "harmful_refusal_gen"
    head = (
        "| method | "
        + " | ".join(f"org {g}: {safety} / {gen} / {capability}" for g in groups)
        + " | safer than sft in every org | less capable than sft in every org |"
    )
    lines = [
        "## Per organism instance",
        "",
        "Mean over the training seeds of each organism instance (%). A conclusion holds only if it "
        "holds in every instance.",
        "",
        head,
        "|" + "---|" * (len(groups) + 3),
    ]
    for m, row in pg.items():
        cells = []
        for g in groups:
            vals = [row.get(k, {}).get(g) for k in (safety, gen, capability)]
            cells.append(" / ".join("-" if v is None else f"{100 * v:.1f}" for v in vals))
        vs = cons["vs_reference"].get(m)
        safer = "-" if vs is None else ("yes" if vs["safer_in_every_group"] else "no")
        weaker = "-" if vs is None else ("yes" if vs["less_capable_in_every_group"] else "no")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {safer} | {weaker} |")
    lines += [
        "",
        "Safest method per instance: "
        + ", ".join(f"org {g}: {m}" for g, m in cons["safest_per_group"].items())
        + ".",
        "",
    ]
    return lines


def judges_markdown(table: dict) -> list[str]:
    """The evaluation sets, the judges, the ones that could not run here (with the reason) and the
    items a judge could not read: nothing is dropped without a line saying so."""
    lines: list[str] = []
    if table.get("benchmarks"):
        sets = ", ".join(f"`{s}` ({b['kind']}, n={b['n']})" for s, b in table["benchmarks"].items())
        lines += [f"Evaluation sets: {sets}.", ""]
    if table.get("judges"):
        first = " (the first gives the unsuffixed metrics)" if table.get("benchmarks") else ""
        lines += [f"Judges: {', '.join(table['judges'])}{first}.", ""]
    lines += judge_validation_lines(table)
    for name, why in table.get("skipped_judges", {}).items():
        lines += [f"Judge **{name}** did not run (unavailable here): {why}.", ""]
    for name, by in table.get("judge_failures", {}).items():
        parts = ", ".join(f"{s}: {n}" for s, n in by.items())
        lines += [
            f"Judge {name} could not read some items (left out of its rates, summed over runs): {parts}.",
            "",
        ]
    return lines


def interval_note(table: dict) -> str:
    """One sentence naming the interval method the table's cells were computed with."""
    methods = {
        st.get("method") for row in table["methods"].values() for st in row.values() if isinstance(st, dict)
    }
    if GROUP_T in methods:
        n = max(
            len(st.get("group_means", {}))
            for row in table["methods"].values()
            for st in row.values()
            if isinstance(st, dict)
        )
        return (
            f"Mean with a 95% Student-t interval over the {n} organism instances' (groups') means, "
            f"df = {n - 1}; each instance's mean averages its training seeds; rates clipped to [0, 100]."
        )
    return (
        "Mean over training seeds with a 95% Student-t interval (df = seeds - 1); rates clipped to [0, 100]."
    )


def judge_validation_lines(table: dict) -> list[str]:
    """Each judge with what it measures and its accuracy against human labels (or "not
    validated"), then the error-corrected refusal rates beside the raw means."""
    from dualselect.evaluation.correction import METHOD, TRANSPORT_CAVEAT, accuracy_line

    info = table.get("judge_validation")
    if not info:
        return []
    lines = []
    for j, v in info.items():
        what = (
            "a refusal detector (refusal / non-refusal: a non-refusal is not shown to be harmful)"
            if v.get("measures") == "refusal"
            else "a harm judge"
        )
        lines += [f"Judge {accuracy_line(j, {k: v.get(k) for k in ('safe', 'unsafe')})}; {what}.", ""]
    corrected = table.get("corrected") or {}
    if corrected:
        lines += [
            f"Error-corrected refusal rates (mean over runs; {METHOD}; the seed mean drawn from its "
            f"Student-t distribution). {TRANSPORT_CAVEAT}",
            "",
            "| method | metric | judge | raw % | corrected % [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for method, by in corrected.items():
            for key, r in by.items():
                corr = (
                    f"{100 * r['corrected']:.1f}"
                    + ("" if not r["ci"] else f" [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]")
                    if r["corrected"] is not None
                    else "not corrected"
                )
                if r.get("note"):
                    corr += f" ({r['note']})"
                lines.append(f"| {method} | {key} | {r['judge']} | {100 * r['raw']:.1f} | {corr} |")
        lines.append("")
    return lines


BASE_COLUMNS = ("over_refusal_rate", "unsafe_refusal", "discrimination", "incoherence_rate")


def base_line(metrics: dict, safety: str, capability: str, n_instances: int) -> str:
    """One sentence: the model before fine-tuning, on the same suites and judges (greedy, so one
    evaluation per instance and no interval)."""
    cells = [
        f"{k} {100 * metrics[k]:.1f}"
        for k in (safety, capability, *BASE_COLUMNS)
        if isinstance(metrics.get(k), (int, float))
    ]
    over = f"mean of {n_instances} instances; " if n_instances > 1 else ""
    return (
        f"Before fine-tuning (the base model, evaluated alike; {over}greedy, no training seed, no "
        f"interval): {', '.join(cells)}."
    )


def tuning_lines(t: dict) -> list[str]:
    """comparison.md's account of one tuning choice: the organism's validation-probe score, or a
    pre-registered criterion on a validation suite set (every candidate's validation rates, the
    reference it was held against, ties, and the reason when nothing was chosen)."""
    if "validation_scores" in t:
        return [
            f"Tuned on validation probes only (`{t['criterion']}`): **{t['name']}** = `{t['chosen']}` "
            "(validation scores: "
            + ", ".join(f"{c} {100 * v:.1f}" for c, v in t["validation_scores"].items())
            + "); its row reports the test probes.",
            "",
        ]
    ref = t["reference"]
    ref_cells = ", ".join(f"{k} {100 * v:.1f}" for k, v in ref.items() if isinstance(v, (int, float)))
    cells = []
    for c, m in t["candidates"].items():
        rates = ", ".join(
            f"{k} {100 * m[k]:.1f}" for k in ("harmful_refusal", "over_refusal_rate", "task_exact_match")
        )
        cells.append(f"`{c}` ({rates}; {'eligible' if m['eligible'] else 'not eligible'})")
    chosen = f"**{t['name']}** = `{t['chosen']}`" if t["chosen"] else f"**{t['name']}**: none"
    return [
        f"Tuned on validation suites only (`{t['criterion']}`, against `{ref['method']}`: {ref_cells}): "
        f"{chosen}; {t['reason']}. Candidates (validation, %): " + "; ".join(cells) + ".",
        "",
    ]


def write_tables(table: dict, out: str | Path, safety: str, capability: str) -> None:
    """``comparison.md``, ``comparison.csv``, ``comparison.json`` and ``safety_vs_capability.png``."""
    out = Path(out)
    write_json(out / "comparison.json", table)
    md = [
        "# Method comparison",
        "",
        interval_note(table) + f" Safety: `{safety}`; capability: `{capability}`. Bold: the safest "
        "method; (tie): the 95% interval of its difference from the safest method contains 0 (same "
        "method as the intervals). Compare safety only at matched capability: the capability column "
        "stands beside it.",
        "",
        markdown_table(table),
        "",
    ]
    if "tuning" in table:
        tunings = table["tuning"] if isinstance(table["tuning"], list) else [table["tuning"]]
        for t in tunings:
            md += tuning_lines(t)
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
    if "base" in table:
        md += [
            base_line(table["base"]["metrics"], safety, capability, len(table["base"]["per_instance"])),
            "",
        ]
    if "per_group" in table:
        md += per_group_markdown(table, safety, capability)
    md += judges_markdown(table)
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


def coincident_groups(pixels: dict[str, tuple[float, float]], within: float = 10.0) -> list[list[str]]:
    """Methods whose points lie within ``within`` pixels of a group's first point, grouped in
    order (one group per visually coinciding cluster; a lone point is a group of one)."""
    groups: list[list[str]] = []
    for name, (x, y) in pixels.items():
        for g in groups:
            gx, gy = pixels[g[0]]
            if abs(gx - x) <= within and abs(gy - y) <= within:
                g.append(name)
                break
        else:
            groups.append([name])
    return groups


def plot_safety_vs_capability(table: dict, path: Path, safety: str, capability: str) -> None:
    """Every method at its mean with 95% seed intervals; colour and marker per method, legend
    outside the axes (many methods crowd the safe, capable corner). Methods whose points coincide
    on the canvas are drawn side by side (a few points apart, so none hides another) and named
    together in one label beside the cluster (``a = b``); each label is placed where it overlaps
    no other label and stays inside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import offset_copy

    from dualselect.evaluation.report import save_figure

    rows = {m: r for m, r in table["methods"].items() if safety in r and capability in r}
    fig, ax = plt.subplots(figsize=(10, 6))
    colours, markers = plt.get_cmap("tab20").colors, "osD^vPX*<>"
    # limits first, so that which points coincide can be read in pixels
    xs = [100 * v for r in rows.values() for v in (*r[capability]["ci"], r[capability]["mean"])]
    if xs:
        lo, hi = max(0.0, min(xs)), min(100.0, max(xs))
        pad = max(1.0, 0.08 * (hi - lo))
        ax.set_xlim(max(lo - pad, -pad / 3), min(hi + pad, 100 + pad / 3))
    ax.set_ylim(-3, 103)
    ax.set_xlabel(f"capability: {capability} (%)")
    ax.set_ylabel(f"safety: {safety} (%)")
    ax.set_title("Safety vs. capability (mean, 95% CI over seeds; coinciding points drawn side by side)")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.08, right=0.78, bottom=0.1, top=0.92)  # the legend's room on the right
    mean = {m: (100 * r[capability]["mean"], 100 * r[safety]["mean"]) for m, r in rows.items()}
    px = {m: tuple(ax.transData.transform(xy)) for m, xy in mean.items()}
    groups = coincident_groups(px, within=14.0)  # a 7-point marker is ~12 pixels wide at 120 dpi
    step = 8.0  # points between the markers of one cluster
    # side by side in the order of their true x, so that the shift never swaps two points
    shift = {
        m: (k - (len(g) - 1) / 2) * step
        for g in groups
        for k, m in enumerate(sorted(g, key=lambda n: px[n][0]))
    }
    for i, (m, r) in enumerate(table["methods"].items()):  # table order: the legend's order
        if m not in rows:
            continue
        x, y = mean[m]
        # an interval of a rate never leaves [0, 100]
        xl, xh = (min(100.0, max(0.0, 100 * v)) for v in r[capability]["ci"])
        yl, yh = (min(100.0, max(0.0, 100 * v)) for v in r[safety]["ci"])
        ax.errorbar(
            x,
            y,
            xerr=[[max(0.0, x - xl)], [max(0.0, xh - x)]],
            yerr=[[max(0.0, y - yl)], [max(0.0, yh - y)]],
            fmt=markers[i % len(markers)],
            color=colours[i % len(colours)],
            markersize=7,
            capsize=3,
            label=m,
            transform=offset_copy(ax.transData, fig=fig, x=shift[m], y=0, units="points"),
        )
    _place_labels(fig, ax, [(_wrap(" = ".join(g)), mean[g[0]], step * len(g) / 2) for g in groups])
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    save_figure(fig, path)


def _wrap(text: str, width: int = 34) -> str:
    """``a = b = c`` over several lines of at most ``width`` characters, broken at ``=``."""
    lines, cur = [], ""
    for part in text.split(" = "):
        if cur and len(cur) + 3 + len(part) > width:
            lines.append(cur + " =")
            cur = part
        else:
            cur = f"{cur} = {part}" if cur else part
    return "\n".join([*lines, cur])


def _place_labels(fig, ax, labels: list[tuple[str, tuple[float, float], float]]) -> None:
    """Each ``(text, data point, half width of its cluster in points)`` beside its point, at the
    first candidate offset (right/left of the cluster, above/below, then further out) where the
    text overlaps no label placed before it and stays inside the axes."""
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    placed = []
    for text, xy, half in labels:
        # above (text bottom at dy) or below (text top at dy), right or left of the cluster,
        # then further out in steps of one line
        cands = [(sx * (6 + half), sy * (5 + 11 * k)) for k in range(8) for sy in (1, -1) for sx in (1, -1)]
        ann = None
        for dx, dy in cands:
            if ann is not None:
                ann.remove()
            ann = ax.annotate(
                text,
                xy,
                textcoords="offset points",
                xytext=(dx, dy),
                fontsize=8,
                ha="left" if dx > 0 else "right",
                va="bottom" if dy > 0 else "top",
            )
            bb = ann.get_window_extent(renderer)
            inside = bb.x0 >= box.x0 and bb.x1 <= box.x1 and bb.y0 >= box.y0 and bb.y1 <= box.y1
            if inside and not any(bb.overlaps(p) for p in placed):
                break
        placed.append(ann.get_window_extent(renderer))
