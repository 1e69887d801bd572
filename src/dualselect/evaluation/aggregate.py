"""What the harness computes across methods once every method is generated and judged: Safety
Avg. and quality win rates vs. Standard SFT, intervals over prompts and the methods tied with the
safest, each judge's measured accuracy and corrected rates, judge agreement, the across-seeds
summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualselect.evaluation.agreement import agreement_table
from dualselect.evaluation.capability import win_rate
from dualselect.evaluation.judges import Judge, PairwiseJudge, judge_accuracy
from dualselect.evaluation.judges.ground_truth import GroundTruthJudge
from dualselect.evaluation.judges.pairwise import safety_backend
from dualselect.utils import safe_name, safe_path, write_jsonl


def sft_partner(name: str, names: list[str], sft: str | None) -> str | None:
    """The Standard SFT variant ``name`` is compared with: ``sft@K`` for a seed variant ``X@K``
    when it exists, else ``sft`` itself, else the first ``sft@*``; None for SFT's own variants."""
    if sft is None or name.partition("@")[0] == sft:
        return None
    tag = name.partition("@")[2]
    if tag and f"{sft}@{tag}" in names:
        return f"{sft}@{tag}"
    if sft in names:
        return sft
    return next((n for n in names if n.partition("@")[0] == sft), None)


def _win_rates(
    results: dict,
    suites,
    gens,
    backends: dict[str, Any],
    suite_names: list[str],
    sft: str | None,
    seed: int,
    rate_key: str,
    avg_key: str,
    coherent: dict | None = None,
    out: Path | None = None,
) -> None:
    """Per variant and backend: win rate vs. its SFT partner on each suite (``<rate_key>.<suite>.
    <backend>``), the mean over suites (``<avg_key>.<backend>``) with a 95% bootstrap interval over
    prompts (``ci.<avg_key>.<backend>``; suites resampled separately); SFT's own variants get 50.
    Pairs the backend failed on are left out and counted (``<rate_key>_errors.<suite>.<backend>``,
    ``results["judge_failures"]``); a backend that failed on every pair of a suite gets no rate
    and no average, never 50. With ``coherent`` masks, also over the prompts where both answers
    are coherent (``<avg_key>_coherent.<backend>``)."""
    from dualselect.evaluation.uncertainty import stratified_bootstrap_ci

    for name in gens:
        ref = sft_partner(name, list(gens), sft)
        m = results["methods"][name]
        if ref is None:
            if sft is not None and name.partition("@")[0] == sft:  # the reference: 50 by definition
                m.update({f"{avg_key}.{b}": 50.0 for b in backends})
                if coherent is not None:
                    m.update({f"{avg_key}_coherent.{b}": 50.0 for b in backends})
            continue
        for bname, backend in backends.items():
            pj = PairwiseJudge(backend, seed=seed)
            logged = len(getattr(backend, "log", []))
            per_suite, per_suite_coh = [], []
            for s in suite_names:
                prompts = [it.prompt for it in suites[s]]
                outcomes = pj.compare_all(prompts, gens[ref][s], gens[name][s])
                n_err = sum(o is None for o in outcomes)
                m[f"{rate_key}.{s}.{bname}"] = win_rate(outcomes)
                m[f"{rate_key}_errors.{s}.{bname}"] = n_err
                if n_err:
                    results["judge_failures"].setdefault(bname, {}).setdefault(f"pairwise:{s}", {})[name] = (
                        n_err
                    )
                per_suite.append([100.0 * (o - 1) for o in outcomes if o is not None])
                if coherent is not None:
                    both = [a and b for a, b in zip(coherent[ref][s], coherent[name][s])]
                    kept = [100.0 * (o - 1) for o, ok in zip(outcomes, both) if ok and o is not None]
                    per_suite_coh.append(kept)
                    m[f"{rate_key}_coherent.{s}.{bname}"] = sum(kept) / len(kept) if kept else None
            new = getattr(backend, "log", [])[logged:]
            if new and out is not None:  # an API pairwise judge's per-pair verdicts, raw replies
                path = safe_path(out / "generations", name, f".pairwise.{safe_name(bname)}.jsonl")
                write_jsonl(path, [{"method": name, "reference": ref, **r} for r in new])
            if per_suite and all(per_suite):
                m[f"{avg_key}.{bname}"] = sum(sum(x) / len(x) for x in per_suite) / len(per_suite)
                m[f"ci.{avg_key}.{bname}"] = list(stratified_bootstrap_ci(per_suite, seed=seed))
            else:
                m[f"{avg_key}.{bname}"] = None
            if per_suite_coh and all(per_suite_coh):
                m[f"{avg_key}_coherent.{bname}"] = sum(sum(x) / len(x) for x in per_suite_coh) / len(
                    per_suite_coh
                )


def pairwise_safety(
    results: dict, suites, gens, judges: list[Judge], sft: str | None, seed: int, coherent: dict | None = None
) -> None:
    """Safety Avg. per judge: mean over harmful suites of the win rate vs. Standard SFT, on all
    prompts and on the prompts where both answers are coherent."""
    harmful = [s for s, v in suites.items() if v and v[0].kind == "harmful"]
    meta = {it.prompt: it.meta for s in harmful for it in suites[s]}
    backends = {j.name: safety_backend(j, meta) for j in judges}
    _win_rates(results, suites, gens, backends, harmful, sft, seed, "win_rate_vs_sft", "safety_avg", coherent)


def pairwise_quality(
    results: dict, suites, gens, specs: list | None, sft: str | None, seed: int, out: Path | None = None
) -> None:
    """Capability on open-ended suites (kind ``benign``): pairwise quality win rate vs. Standard
    SFT per quality judge, and its mean over those suites (``quality_avg.<judge>``)."""
    from dualselect.evaluation.judges.pairwise import build_quality_backend

    open_ended = [s for s, v in suites.items() if v and v[0].kind == "benign"]
    if not open_ended or not any(sft_partner(n, list(gens), sft) for n in gens):
        return
    refs = {it.prompt: it.gold for s in open_ended for it in suites[s] if it.gold}
    backends = {}
    for spec in ["reference"] if specs is None else specs:
        b = spec if callable(spec) or hasattr(spec, "pick_many") else build_quality_backend(spec, refs)
        ok, why = b.available() if hasattr(b, "available") else (True, "")
        bname = getattr(b, "name", None) or getattr(b, "__name__", str(spec))
        if ok:
            backends[bname] = b
        else:
            results["skipped_judges"][bname] = why
    results["quality_judges"] = list(backends)
    _win_rates(
        results,
        suites,
        gens,
        backends,
        open_ended,
        sft,
        seed,
        "quality_win_rate_vs_sft",
        "quality_avg",
        out=out,
    )


def summary_metrics(m: dict, results: dict) -> dict[str, float]:
    """The headline numbers of one variant (the rows of the across-seeds table)."""
    from dualselect.evaluation.report import capability_of, over_refusal_of, refusal_of

    row = {"capability": capability_of(m, results), "incoherence_rate": m.get("incoherence_rate")}
    row["over_refusal"] = over_refusal_of(m, results)
    row["over_refusal_coherent"] = over_refusal_of(m, results, coherent=True)
    row["kl_base"] = m.get("kl_base")
    for j in results["judges"]:
        row[f"refusal.{j}"] = refusal_of(m, results, j)
        row[f"refusal_coherent.{j}"] = refusal_of(m, results, j, coherent=True)
        row[f"safety_avg.{j}"] = m.get(f"safety_avg.{j}")
        row[f"safety_avg_coherent.{j}"] = m.get(f"safety_avg_coherent.{j}")
    for q in results.get("quality_judges", []):
        row[f"quality_avg.{q}"] = m.get(f"quality_avg.{q}")
    return {k: v for k, v in row.items() if v is not None}


def across_seeds(results: dict) -> dict:
    """Variants ``X@K`` grouped by ``X``: mean, 95% Student-t interval over seeds, min/max of each
    headline number (intervals clipped to the metric's range: rates to [0, 1], win rates to
    [0, 100], KL at 0), and per judge the variant with the highest mean refusal and those tied
    with it (Welch interval of the difference contains 0)."""
    from dualselect.evaluation.uncertainty import metric_bounds, summarise_runs, ties_with_best

    groups: dict[str, list[dict]] = {}
    for name, m in results["methods"].items():
        groups.setdefault(name.partition("@")[0], []).append(summary_metrics(m, results))
    table = summarise_runs(groups, bounds=metric_bounds)
    ties = {}
    for j in results["judges"]:
        best, tie = ties_with_best({g: r[f"refusal.{j}"] for g, r in table.items() if f"refusal.{j}" in r})
        ties[j] = {"best": best, "ties": sorted(g for g, t in tie.items() if t)}
    return {"methods": table, "safest_by_judge": ties}


def prompt_intervals(results: dict, suites, verdicts, judges: list[Judge], seed: int) -> None:
    """Uncertainty over prompts within one run: per method and judge a 95% bootstrap interval of
    the headline refusal rate (mean over harmful suites, ``ci.refusal.<judge>``) and of the
    over-refusal rate (``over_refusal.<judge>``, ``ci.over_refusal.<judge>``; safe prompts only),
    suites resampled separately; and per judge the method refusing most with the methods tied
    with it (95% paired-bootstrap interval of the refusal difference contains 0) in
    ``results["safest_by_judge_prompts"]``."""
    from dualselect.evaluation.uncertainty import stratified_bootstrap_ci

    def refused(name: str, s: str, j: str) -> list[float]:
        return [float(v.refused) for v in verdicts[name][s][j] if v.error is None and v.refused is not None]

    harm = [s for s, v in suites.items() if v and v[0].kind == "harmful"]
    over = [s for s, v in suites.items() if v and v[0].kind == "over_refusal"]
    for name in verdicts:
        m = results["methods"][name]
        for j in judges:
            for key, names in (("refusal", harm), ("over_refusal", over)):
                groups = [refused(name, s, j.name) for s in names]
                if groups and all(groups):
                    if key == "over_refusal":
                        m[f"over_refusal.{j.name}"] = sum(sum(g) / len(g) for g in groups) / len(groups)
                    m[f"ci.{key}.{j.name}"] = list(stratified_bootstrap_ci(groups, seed=seed))
    ties = {}
    for j in judges:
        vecs = {}
        for name in verdicts:
            per = [
                [None if v.error is not None else v.refused for v in verdicts[name][s][j.name]] for s in harm
            ]
            if per and all(x is not None for g in per for x in g):
                vecs[name] = per
        if len(vecs) < 2:
            continue
        means = {n: sum(sum(g) / len(g) for g in per) / len(per) for n, per in vecs.items()}
        best = max(means, key=means.get)
        tied = []
        for n in vecs:
            if n == best:
                continue
            diffs = [[float(a) - float(b) for a, b in zip(gb, gn)] for gb, gn in zip(vecs[best], vecs[n])]
            lo, _ = stratified_bootstrap_ci(diffs, seed=seed)
            if lo <= 0:
                tied.append(n)
        ties[j.name] = {"best": best, "ties": sorted(tied)}
    results["safest_by_judge_prompts"] = ties


def judge_validation(
    results: dict,
    suites,
    verdicts,
    judges: list[Judge],
    seed: int,
    correct: bool,
    validations: tuple[dict, ...] | None = None,
) -> None:
    """Each judge's measured accuracy against human labels (``results["judge_validation"]``:
    per prompt kind, None = not validated; from ``validations`` when given, else the shipped
    XSTest validation) and, with ``correct``, per method and judge the
    Rogan-Gladen corrected refusal (harmful suites, the judge's accuracy on unsafe prompts) and
    over-refusal (safe prompts): ``corrected.refusal.<judge>`` / ``corrected.over_refusal.<judge>``
    = ``{"raw", "corrected", "ci", "youden", "note", "max_new_tokens"}``."""
    from dualselect.evaluation.correction import KIND_OF_SUITE, correct_prompts, judge_accuracy

    info: dict = {}
    for j in judges:
        budgets = {
            kind: max(
                (results["max_new_tokens"][s] for s, v in suites.items() if v and v[0].kind == suite_kind),
                default=None,
            )
            for suite_kind, kind in KIND_OF_SUITE.items()
        }
        info[j.name] = {
            "measures": j.measures,
            **{
                kind: judge_accuracy(j.name, j.template_version, kind, budgets[kind], validations)
                for kind in budgets
            },
        }
    results["judge_validation"] = info
    if not correct:
        return
    for name in verdicts:
        m = results["methods"][name]
        for j in judges:
            for key, suite_kind in (("refusal", "harmful"), ("over_refusal", "over_refusal")):
                acc = info[j.name][KIND_OF_SUITE[suite_kind]]
                names = [s for s, v in suites.items() if v and v[0].kind == suite_kind]
                groups = [
                    [
                        float(v.refused)
                        for v in verdicts[name][s][j.name]
                        if v.error is None and v.refused is not None
                    ]
                    for s in names
                ]
                if acc is None or not groups or not all(groups):
                    continue
                res = correct_prompts(groups, acc, seed=seed)
                m[f"corrected.{key}.{j.name}"] = {**res, "max_new_tokens": acc["max_new_tokens"]}


def judge_agreement(results: dict, suites, verdicts, coherent, judges: list[Judge]) -> None:
    """Judges' harmful labels pooled over methods and harmful suites, split by coherence. A judge
    that failed on some items is kept: each pair of judges is compared on the items both read
    (``n`` per pair). Judges on a published 1-5 scale are compared with each other on that scale
    (quadratic kappa)."""
    labels: dict[str, list] = {j.name: [] for j in judges}
    scores: dict[str, list] = {j.name: [] for j in judges if j.scale == "1-5"}
    mask: list[bool] = []
    for name, per_suite in verdicts.items():
        for s, by_judge in per_suite.items():
            if suites[s][0].kind != "harmful":
                continue
            for j in judges:
                vs = by_judge[j.name]
                labels[j.name] += [j.harm_label(v) for v in vs]
                if j.name in scores:
                    scores[j.name] += [j.ordinal(v) for v in vs]
            mask += coherent[name][s]
    usable = {k: v for k, v in labels.items() if v and any(x is not None for x in v)}
    if len(usable) >= 2:
        results["agreement"] = agreement_table(usable, mask)
    if len(scores) >= 2:
        results["agreement_ordinal"] = agreement_table(scores, mask, ordinal=set(scores))
    gt = next((j.name for j in judges if isinstance(j, GroundTruthJudge)), None)
    if gt:
        acc = {}
        for j in judges:
            if j.name == gt:
                continue
            vs, ts, coh = [], [], []
            for name, per_suite in verdicts.items():
                for s, by_judge in per_suite.items():
                    if suites[s][0].kind == "harmful":
                        vs += by_judge[j.name]
                        ts += by_judge[gt]
                        coh += coherent[name][s]
            acc[j.name] = judge_accuracy(vs, ts, coh)
        results["judge_accuracy_vs_ground_truth"] = acc
