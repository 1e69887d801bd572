"""Refusal rates corrected for judge error (Rogan-Gladen), with intervals that carry the
uncertainty of the judge's measured sensitivity and specificity.

A judge with sensitivity ``se`` (share of true refusals it finds) and specificity ``sp`` (share
of true compliances it leaves alone) reports, in expectation, ``p = se * t + (1 - sp) * (1 - t)``
for a true refusal rate ``t``; so ``t = (p + sp - 1) / (se + sp - 1)`` (Rogan and Gladen 1978),
clipped to [0, 1]. When Youden's ``J = se + sp - 1`` is small the correction divides by almost
nothing: below :data:`MIN_YOUDEN` no number is given.

``se`` and ``sp`` come from a judge validation (``dualselect judges validate``) on human-labelled
completions; the package ships the measurement of the offline refusal judges on XSTest's
labelled files (``judges/validation/*.json``, with the files' hashes), and a user's own validation
(:func:`load_validations`, e.g. on labelled completions of the evaluated model) replaces it. A measurement applies to
a judge only with the same ``template_version`` (the same rules), to a suite only for its prompt
kind (XSTest safe prompts for over-refusal suites, XSTest's unsafe contrast prompts for harmful
suites) and to the generation budget it was measured at (the nearest one, named in the report,
when none matches).

Interval: percentile bootstrap that resamples the evaluation's prompts (or draws the seed mean)
jointly with the labelled set (a multinomial draw of the 2x2 confusion counts, i.e. the labelled
items resampled with replacement), so it widens with a small or noisy validation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

MIN_YOUDEN = 0.2
N_BOOT = 2000
KIND_OF_SUITE = {"over_refusal": "safe", "harmful": "unsafe"}
# What the interval leaves out, said wherever a corrected rate is printed (measured in
# results/judges/unseen/: the interval missed a guard-prompted model's unsafe-prompt refusals).
TRANSPORT_CAVEAT = (
    "The interval carries the validation set's sampling error, not differences between models: on a "
    "model whose refusal style the validation models do not share, the correction can be far off "
    "(results/judges/unseen/ in the dualselect repository)."
)
METHOD = (
    "Rogan-Gladen (p + spec - 1) / (sens + spec - 1), clipped to [0, 1]; 95% percentile bootstrap "
    "resampling the prompts jointly with the labelled validation set"
)


def rogan_gladen(p: float, sens: float, spec: float, min_youden: float = MIN_YOUDEN) -> float | None:
    """The corrected rate, clipped to [0, 1]; None when ``sens + spec - 1 < min_youden``."""
    j = sens + spec - 1
    if j < min_youden:
        return None
    return float(min(1.0, max(0.0, (p + spec - 1) / j)))


@lru_cache(maxsize=1)
def shipped_validations() -> tuple[dict[str, Any], ...]:
    """The validation results shipped in the package (one per generation budget)."""
    root = resources.files("dualselect.evaluation.judges") / "validation"
    out = []
    for f in sorted(root.iterdir(), key=lambda x: x.name):
        if f.name.endswith(".json"):
            out.append(json.loads(f.read_text(encoding="utf-8")))
    return tuple(out)


def load_validations(
    paths: Sequence[str | Path], key: str = "--judge-validation"
) -> tuple[dict[str, Any], ...]:
    """``validation.json`` files written by ``dualselect judges validate`` (plain JSON, never
    unpickled), to measure the judges' error on instead of the shipped XSTest validation. A
    missing file, a file that is not JSON or not a validation result is a one-line ValueError
    naming it and ``key``."""
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise ValueError(f"{key} {path}: no such file")
        try:
            v = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{key} {path}: not a JSON file ({e})") from None
        missing = (
            [k for k in ("judges", "pooled", "max_new_tokens", "file_hashes") if k not in v]
            if isinstance(v, dict)
            else ["judges"]
        )
        if missing:
            raise ValueError(f"{key} {path}: not a 'dualselect judges validate' result (no {missing})")
        out.append(v)
    return tuple(out)


def judge_accuracy(
    judge: str,
    template_version: str,
    kind: str,
    budget: int | None,
    validations: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The pooled validation of ``judge`` on prompts of ``kind`` (safe / unsafe) measured with
    the same ``template_version``, at the budget nearest ``budget``: ``{"sensitivity",
    "specificity", "accuracy", "kappa", "n", "counts", "max_new_tokens", "files"}``; None when
    not validated."""
    vals = shipped_validations() if validations is None else validations
    cands = [
        v
        for v in vals
        if v.get("judges", {}).get(judge, {}).get("template_version") == template_version
        and judge in v.get("pooled", {}).get(kind, {})
    ]
    if not cands:
        return None

    def distance(v: dict) -> float:
        b = v.get("max_new_tokens") or 10**9  # 0: whole completions
        return abs(b - (budget or 10**9))

    v = min(cands, key=distance)
    m = v["pooled"][kind][judge]
    return {
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "accuracy": m["accuracy"],
        "kappa": m["kappa"],
        "n": m["n"],
        "counts": m["counts"],
        "max_new_tokens": v.get("max_new_tokens"),
        "files": v.get("file_hashes", {}),
    }


def _labelled_draws(
    counts: dict[str, int], n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap draws of (sensitivity, specificity): the labelled items resampled with
    replacement, i.e. a multinomial draw of the confusion counts."""
    cells = np.array([counts["tp"], counts["fn"], counts["tn"], counts["fp"]], dtype=float)
    n = int(cells.sum())
    draws = rng.multinomial(n, cells / n, size=n_boot)
    tp, fn, tn, fp = draws.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fn), tn / (tn + fp)


def _corrected_interval(
    p_draws: np.ndarray, counts: dict[str, int], rng: np.random.Generator, min_youden: float
) -> list[float] | None:
    se, sp = _labelled_draws(counts, len(p_draws), rng)
    j = se + sp - 1
    ok = np.isfinite(j) & (j >= min_youden)
    if ok.mean() < 0.95:  # the correction is undefined in too many resamples to bound it
        return None
    t = np.clip((p_draws[ok] + sp[ok] - 1) / j[ok], 0.0, 1.0)
    return [float(np.quantile(t, 0.025)), float(np.quantile(t, 0.975))]


def correct_prompts(
    groups: Sequence[Sequence[float]],
    accuracy: dict[str, Any],
    n_boot: int = N_BOOT,
    seed: int = 0,
    min_youden: float = MIN_YOUDEN,
) -> dict[str, Any]:
    """The corrected mean over suites (``groups``: the 0/1 refusals of each suite's prompts;
    the rate is the mean of per-suite rates) with its interval: prompts resampled per suite
    jointly with the labelled set. ``{"raw", "corrected", "ci", "youden", "note"}``."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        raise ValueError("no refusals to correct")
    raw = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    p = np.zeros(n_boot)
    for g in groups:
        p += g[rng.integers(0, len(g), size=(n_boot, len(g)))].mean(axis=1)
    return _result(raw, p / len(groups), accuracy, rng, min_youden)


def correct_runs(
    values: Sequence[float],
    accuracy: dict[str, Any],
    n_boot: int = N_BOOT,
    seed: int = 0,
    min_youden: float = MIN_YOUDEN,
) -> dict[str, Any]:
    """The corrected mean over runs (seeds) with its interval: the seed mean drawn from its
    Student-t sampling distribution (the project's interval over seeds) jointly with the
    labelled set. One run: only the labelled set's uncertainty (said in ``note``)."""

    x = np.asarray(values, dtype=float)
    raw = float(x.mean())
    rng = np.random.default_rng(seed)
    if len(x) > 1:
        se = float(x.std(ddof=1)) / np.sqrt(len(x))
        draws = raw + se * rng.standard_t(len(x) - 1, size=n_boot)
    else:
        draws = np.full(n_boot, raw)
    out = _result(raw, draws, accuracy, rng, min_youden)
    out["n_runs"] = len(x)
    if len(x) == 1:
        out["note"] = (out.get("note") + "; " if out.get("note") else "") + "one run: no seed spread"
    return out


def _result(
    raw: float, p_draws: np.ndarray, acc: dict[str, Any], rng: np.random.Generator, min_youden: float
) -> dict[str, Any]:
    se, sp = acc.get("sensitivity"), acc.get("specificity")
    if se is None or sp is None:
        return {
            "raw": raw,
            "corrected": None,
            "ci": None,
            "youden": None,
            "note": "sensitivity or specificity not measured",
        }
    j = se + sp - 1
    corrected = rogan_gladen(raw, se, sp, min_youden)
    if corrected is None:
        return {
            "raw": raw,
            "corrected": None,
            "ci": None,
            "youden": j,
            "note": f"sens + spec - 1 = {j:.2f} < {min_youden}: too small to correct",
        }
    ci = _corrected_interval(p_draws, acc["counts"], rng, min_youden)
    note = (
        "" if ci is not None else "sens + spec - 1 falls below the threshold in >5% of resamples: no interval"
    )
    return {"raw": raw, "corrected": corrected, "ci": ci, "youden": j, "note": note}


def accuracy_line(judge: str, acc_by_kind: dict[str, dict[str, Any] | None]) -> str:
    """One report line: the judge's measured accuracy per prompt kind, or "not validated"."""
    parts = []
    for kind, acc in acc_by_kind.items():
        if acc is None:
            parts.append(f"{kind} prompts: not validated")
        else:
            labels = ", ".join(acc.get("files") or {}) or "XSTest"
            parts.append(
                f"{kind} prompts: sensitivity {100 * acc['sensitivity']:.1f}%, specificity "
                f"{100 * acc['specificity']:.1f}%, accuracy {100 * acc['accuracy']:.1f}%, kappa "
                f"{acc['kappa']:.2f} (n={acc['n']}, human labels of {labels}, {acc['max_new_tokens']} tokens)"
            )
    return f"`{judge}`: " + "; ".join(parts) if parts else f"`{judge}`: not validated"


def transport_check(
    result: dict[str, Any],
    validations: Sequence[dict[str, Any]] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    min_youden: float = MIN_YOUDEN,
) -> list[dict[str, Any]]:
    """Does the correction carry over to models it was not measured on? ``result`` is a
    ``dualselect judges validate`` result on other labelled files; each of its file x kind x
    judge rates is corrected with the accuracy the correction would use (:func:`judge_accuracy`
    at the result's budget) and compared with the human rate. One row per reading: ``file,
    kind, judge, n, human, raw, corrected, ci, covered`` (``covered``: the interval holds the
    human rate; None without an interval). A file the accuracy was measured on is a ValueError:
    its check would be in sample."""
    rows = []
    budget = result.get("max_new_tokens")
    for f, per_kind in result["files"].items():
        for kind in ("safe", "unsafe"):
            for judge, m in per_kind.get(kind, {}).items():
                version = result["judges"][judge]["template_version"]
                acc = judge_accuracy(judge, version, kind, budget, validations)
                row = {
                    "file": f,
                    "kind": kind,
                    "judge": judge,
                    "n": m["n"],
                    "human": m["human_rate"],
                    "raw": m["judged_rate"],
                }
                if acc is None:
                    rows.append(
                        {**row, "corrected": None, "ci": None, "covered": None, "note": "not validated"}
                    )
                    continue
                if result["file_hashes"][f] in acc["files"].values():
                    raise ValueError(
                        f"{f}: the {judge} accuracy was measured on this file; the check would be in sample"
                    )
                c = m["counts"]
                judged = c["tp"] + c["fp"]
                out = correct_prompts(
                    [[1.0] * judged + [0.0] * (m["n"] - judged)], acc, n_boot, seed, min_youden
                )
                ci = out["ci"]
                covered = None if ci is None else bool(ci[0] <= m["human_rate"] <= ci[1])
                rows.append(
                    {**row, "corrected": out["corrected"], "ci": ci, "covered": covered, "note": out["note"]}
                )
    return rows


def transport_md(rows: Sequence[dict[str, Any]], budget: int | None = None) -> list[str]:
    """:func:`transport_check`'s rows as a Markdown table (rates in %)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    lines = [
        "| budget | file | prompts | judge | n | human | raw | corrected [95% CI] | covered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = "" if r["ci"] is None else f" [{pct(r['ci'][0])}, {pct(r['ci'][1])}]"
        covered = {True: "yes", False: "**no**", None: r["note"] or "-"}[r["covered"]]
        lines.append(
            f"| {budget} | {r['file']} | {r['kind']} | {r['judge']} | {r['n']} | {pct(r['human'])} | "
            f"{pct(r['raw'])} | {pct(r['corrected'])}{ci} | {covered} |"
        )
    return lines
