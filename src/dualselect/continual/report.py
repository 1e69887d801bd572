"""Summary of a continual run: metrics over seeds with Student-t intervals, a Markdown table and
the plot of accuracy per task over stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualselect.continual.metrics import continual_metrics
from dualselect.evaluation.uncertainty import clip_interval, format_stat, summarise, t_interval

HEADLINE = ("acc_final", "bwt", "forgetting", "fwt", "plasticity")
SIGNED = ("bwt", "forgetting", "fwt")  # differences of accuracies: in [-1, 1]
COSTS = ("train_seconds", "supervised_tokens")


def metric_bounds(key: str) -> tuple[float, float]:
    """The range a metric's interval is clipped to: [-1, 1] for the transfer and forgetting
    measures (differences of accuracies), [0, inf) for costs, [0, 1] for every rate."""
    if key in SIGNED:
        return -1.0, 1.0
    if key in COSTS:
        return 0.0, float("inf")
    return 0.0, 1.0


def accuracy_matrix(base: dict, stages: list[dict], tasks: list[str]) -> list[list[float]]:
    """R with row 0 = the base model and row k = after stage k (columns in task order)."""
    return [[base["accuracy"][t] for t in tasks]] + [[s["accuracy"][t] for t in tasks] for s in stages]


def run_metrics(base: dict, stages: list[dict], tasks: list[str]) -> dict[str, float]:
    """One finished run's numbers: :func:`continual_metrics`, refusal and benign accuracy after
    every stage (``refusal_stage0`` = base), training seconds and supervised tokens."""
    m = continual_metrics(accuracy_matrix(base, stages, tasks))
    m["refusal_stage0"] = base["harmful_refusal"]
    m["benign_stage0"] = base["benign_accuracy"]
    for s in stages:
        m[f"refusal_stage{s['stage']}"] = s["harmful_refusal"]
        m[f"benign_stage{s['stage']}"] = s["benign_accuracy"]
    m["train_seconds"] = sum(s["train_seconds"] for s in stages)
    m["supervised_tokens"] = sum(s["supervised_tokens"] for s in stages)
    return m


def paired_diff(a: dict[int, float], b: dict[int, float], key: str = "") -> dict[str, Any] | None:
    """Mean and 95% paired-t interval of a - b over the seeds both have (same seed = same task
    data order, safety sample and buffer draws), clipped to what a difference of the metric
    ``key`` can be; None with fewer than 2 common seeds."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [a[s] - b[s] for s in seeds]
    lo_b, hi_b = metric_bounds(key)
    span = hi_b - lo_b
    lo, hi = clip_interval(t_interval(d), (-span, span))
    return {"mean": sum(d) / len(d), "ci": [lo, hi], "n": len(d)}


def summarise_continual(cfg, base: dict, runs: dict[str, dict[int, list[dict]]]) -> dict:
    """Per method: per-seed metrics, their summaries over seeds, the mean accuracy matrix; and
    paired differences of every DualSelect row against replay (same buffer size)."""
    tasks = list(cfg.tasks)
    T = len(tasks)
    out: dict[str, Any] = {"tasks": tasks, "base": base, "methods": {}, "incomplete": {}}
    per_seed: dict[str, dict[int, dict]] = {}
    for method, by_seed in runs.items():
        done = {s: st for s, st in by_seed.items() if len(st) == T}
        missing = sorted(set(by_seed) - set(done))
        if missing:
            out["incomplete"][method] = missing  # counted and reported, never silently dropped
        if not done:
            continue
        per_seed[method] = {s: run_metrics(base, st, tasks) for s, st in done.items()}
        R_mean = [
            [
                sum(accuracy_matrix(base, st, tasks)[i][j] for st in done.values()) / len(done)
                for j in range(T)
            ]
            for i in range(T + 1)
        ]
        out["methods"][method] = {
            "seeds": sorted(done),
            "per_seed": {str(s): m for s, m in per_seed[method].items()},
            "summary": _summaries(per_seed[method]),
            "accuracy_matrix_mean": R_mean,
            "accuracy_by_stage": {
                t: {
                    "mean": [R_mean[i][j] for i in range(T + 1)],
                    "ci": [
                        list(
                            clip_interval(
                                t_interval([accuracy_matrix(base, st, tasks)[i][j] for st in done.values()]),
                                (0.0, 1.0),
                            )
                        )
                        for i in range(T + 1)
                    ],
                }
                for j, t in enumerate(tasks)
            },
        }
    rows = {  # every DualSelect row (ds_*) against replay, when there is a replay row
        f"{m} - replay": (m, (*HEADLINE, f"refusal_stage{T}"))
        for m in per_seed
        if m.startswith("ds_") and "replay" in per_seed
    }
    out["paired_differences"] = _against_replay(per_seed, rows)
    return out


def _summaries(per_seed: dict) -> dict[str, dict]:
    """Each metric's :func:`summarise` over one method's seeds, clipped to its range."""
    keys = sorted({k for m in per_seed.values() for k in m})
    return {k: summarise([m[k] for m in per_seed.values()], metric_bounds(k)) for k in keys}


def _against_replay(per_seed: dict[str, dict], rows: dict[str, tuple[str, tuple]]) -> dict[str, dict]:
    """Paired differences against replay: ``rows`` maps a row name to (method, metric keys)."""
    return {
        name: {
            k: paired_diff(
                {s: m[k] for s, m in per_seed[method].items()},
                {s: m[k] for s, m in per_seed["replay"].items()},
                k,
            )
            for k in keys
        }
        for name, (method, keys) in rows.items()
    }


def reclip(summary: dict) -> dict:
    """A committed ``summary.json`` with every interval recomputed from its per-seed metrics (the
    summaries and the paired differences against replay) or clipped in place (the per-stage
    accuracies), with the current bounds (:func:`metric_bounds`); means are unchanged."""
    methods = summary["methods"]
    out = {**summary, "methods": {}}
    for method, m in methods.items():
        out["methods"][method] = {
            **m,
            "summary": _summaries(m["per_seed"]),
            "accuracy_by_stage": {
                t: {**a, "ci": [list(clip_interval(tuple(c), (0.0, 1.0))) for c in a["ci"]]}
                for t, a in m["accuracy_by_stage"].items()
            },
        }
    per_seed = {method: m["per_seed"] for method, m in methods.items()}
    rows = {
        name: (name.removesuffix(" - replay"), tuple(row))
        for name, row in summary.get("paired_differences", {}).items()
    }
    out["paired_differences"] = _against_replay(per_seed, rows)
    return out


def _pct(stat: dict | None) -> str:
    return format_stat(stat, 100.0)


def markdown(summary: dict) -> str:
    """The headline table, the refusal-by-stage table, the mean accuracy matrices and the paired
    differences against replay, in Markdown."""
    tasks = summary["tasks"]
    T = len(tasks)
    lines = [
        f"Tasks in order: {', '.join(tasks)}. Accuracy in % (exact match on each task's test set); "
        "mean [95% t-interval] over seeds, clipped to the metric's range.",
        "",
        "| method | seeds | ACC (final) | BWT | forgetting | FWT | plasticity | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, m in summary["methods"].items():
        s = m["summary"]
        lines.append(
            f"| {method} | {len(m['seeds'])} | "
            + " | ".join(_pct(s.get(k)) for k in HEADLINE)
            + f" | {format_stat(s.get('train_seconds'))} |"
        )
    lines += [
        "",
        "Refusal on the harmful probes (%) after each stage (stage 0 = the aligned base):",
        "",
        "| method | " + " | ".join(f"stage {k}" for k in range(T + 1)) + f" | benign acc. stage {T} |",
        "|---|" + "---|" * (T + 2),
    ]
    for method, m in summary["methods"].items():
        s = m["summary"]
        lines.append(
            f"| {method} | "
            + " | ".join(_pct(s.get(f"refusal_stage{k}")) for k in range(T + 1))
            + f" | {_pct(s.get(f'benign_stage{T}'))} |"
        )
    if summary.get("paired_differences"):
        lines += [
            "",
            "Paired differences against replay (same seeds, same buffer size; points, 95% paired t):",
            "",
            "| comparison | " + " | ".join(HEADLINE) + f" | refusal stage {T} |",
            "|---|" + "---|" * (len(HEADLINE) + 1),
        ]
        for name, d in summary["paired_differences"].items():
            cells = []
            for k in (*HEADLINE, f"refusal_stage{T}"):
                v = d.get(k)
                cells.append(
                    "-"
                    if v is None
                    else f"{100 * v['mean']:+.1f} [{100 * v['ci'][0]:+.1f}, {100 * v['ci'][1]:+.1f}]"
                )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Mean accuracy matrices R[stage][task] (%):", ""]
    for method, m in summary["methods"].items():
        lines += [f"{method}:", "", "| after | " + " | ".join(tasks) + " |", "|---|" + "---|" * T]
        for i, row in enumerate(m["accuracy_matrix_mean"]):
            lines.append(
                f"| {'base' if i == 0 else f'stage {i}'} | "
                + " | ".join(f"{100 * v:.1f}" for v in row)
                + " |"
            )
        lines.append("")
    if summary.get("incomplete"):
        lines.append(f"Incomplete runs (not in the table): {summary['incomplete']}")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str | Path) -> None:
    """One panel per task (accuracy over stages) plus one for refusal; a line per method, the
    band its 95% t-interval over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["tasks"]
    T = len(tasks)
    fig, axes = plt.subplots(1, T + 1, figsize=(4 * (T + 1), 3.6), sharex=True)
    x = list(range(T + 1))
    for method, m in summary["methods"].items():
        for ax, t in zip(axes, tasks):
            a = m["accuracy_by_stage"][t]
            line = ax.plot(x, [100 * v for v in a["mean"]], marker="o", label=method)[0]
            ax.fill_between(
                x,
                [100 * c[0] for c in a["ci"]],
                [100 * c[1] for c in a["ci"]],
                color=line.get_color(),
                alpha=0.08,
            )
        s = m["summary"]
        ref = [s[f"refusal_stage{k}"] for k in x]
        line = axes[T].plot(x, [100 * r["mean"] for r in ref], marker="o", label=method)[0]
        axes[T].fill_between(
            x,
            [100 * r["ci"][0] for r in ref],
            [100 * r["ci"][1] for r in ref],
            color=line.get_color(),
            alpha=0.08,
        )
    for j, (ax, t) in enumerate(zip(axes, tasks)):
        ax.set_title(f"task {j + 1}: {t} (learned at stage {j + 1})", fontsize=9)
        ax.axvline(j + 1, color="grey", lw=0.6, ls=":")
        ax.set_ylabel("test accuracy (%)")
    axes[T].set_title("refusal on harmful probes", fontsize=9)
    axes[T].set_ylabel("refusal (%)")
    for ax in axes:
        ax.set_xlabel("after stage (0 = base)")
        ax.set_xticks(x)
        ax.set_ylim(-3, 103)
    axes[T].legend(fontsize=7, loc="lower left")  # the refusal panel is empty below its lines
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def write_report(summary: dict, out: str | Path) -> None:
    """``continual.md`` and ``accuracy_over_stages.png`` in ``out``."""
    from dualselect.utils import atomic_open

    out = Path(out)
    with atomic_open(out / "continual.md") as fh:
        fh.write(markdown(summary))
    if summary["methods"]:
        plot(summary, out / "accuracy_over_stages.png")
