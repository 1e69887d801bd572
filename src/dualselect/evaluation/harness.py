"""The evaluation protocol end to end (docs/evaluation.md), for several model variants at once.

For every method: generate once (a generations JSONL that judges read), gate every response for
coherence, run every available judge (unavailable ones are skipped with their reason; items a judge
fails on are counted, never turned into ties), compute capability, safety on all and on
coherent-only responses, over-refusal on safe prompts, native scores, KL(base || method) on
reference answers, pairwise Safety Avg. vs. Standard SFT per judge on labels / published ordinal
scales, intervals over prompts (one seed) or seeds, judge agreement and, where truth is known,
each judge's accuracy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from dualselect.evaluation.agreement import agreement_table
from dualselect.evaluation.capability import exact_match, label_accuracy, win_rate
from dualselect.evaluation.coherence import CoherenceGate
from dualselect.evaluation.generation import generate, inference_model, vllm_target, write_generations
from dualselect.evaluation.items import EvalItem
from dualselect.evaluation.judges import Judge, JudgeItem, PairwiseJudge, judge_accuracy
from dualselect.evaluation.judges.ground_truth import GroundTruthJudge
from dualselect.evaluation.judges.pairwise import safety_backend
from dualselect.evaluation.names import check_variant_names
from dualselect.evaluation.provenance import (
    DECODING_KEY,
    FINGERPRINT_KEY,
    decoding_key,
    load_generation_cache,
    model_fingerprint,
    model_source,
    write_generation_cache,
)
from dualselect.utils import safe_name, safe_path, write_jsonl


def _rate(values: list[float | bool | None], sel: list[int] | None = None) -> float | None:
    idx = range(len(values)) if sel is None else sel
    vals = [float(values[i]) for i in idx if values[i] is not None]
    return sum(v >= 0.5 for v in vals) / len(vals) if vals else None


def kl_to_base(model, base_model, tokenizer, items: list[EvalItem], batch_size: int = 32) -> float | None:
    """Mean per-token KL(base || model) on the reference answers of ``items`` (teacher forcing)."""
    from dualselect.data.encoding import collate, encode_record
    from dualselect.data.records import Record
    from dualselect.gradients.losses import token_kl

    ex = [encode_record(Record(it.prompt, it.gold), tokenizer, max_length=4096) for it in items if it.gold]
    if not ex:
        return None
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ex), batch_size):
            b = collate(ex[i : i + batch_size], tokenizer.pad_token_id)
            kw = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
            k = int((b["labels"][:, 1:] != -100).sum())
            total += float(token_kl(base_model(**kw).logits, model(**kw).logits, b["labels"])) * k
            n += k
    return total / n


def verdict_row(method: str, suite: str, item_id: str, judge: Judge, v: Any) -> dict:
    """One per-item verdict as saved beside the generations: who judged (judge, template
    version, model id), what it said (raw output, parsed fields) and whether it failed."""
    return {
        "method": method,
        "benchmark": suite,
        "id": item_id,
        **judge.identity(),
        "harmful": v.harmful,
        "harm_label": judge.harm_label(v),
        "refused": v.refused,
        "score": v.score,
        "raw": v.raw,
        "error": v.error,
        "details": v.details,
    }


def _mean(vals: list[float | None]) -> float | None:
    ok = [v for v in vals if v is not None]
    return sum(ok) / len(ok) if ok else None


def _judge_metrics(
    m: dict,
    results: dict,
    method: str,
    sname: str,
    kind: str,
    items: list,
    coh: list[bool],
    j: Judge,
    vs: list,
) -> None:
    """Rates of one judge on one suite, on all and on coherent responses; failures counted (a
    failed item is left out of every rate and counted in ``judge_errors``); native scores; XSTest
    classes where the judge reads them."""
    ok_idx = [i for i, c in enumerate(coh) if c]
    failed = [v.error is not None for v in vs]
    n_err = sum(failed)
    m[f"judge_errors.{sname}.{j.name}"] = n_err
    if n_err:
        results["judge_failures"].setdefault(j.name, {}).setdefault(sname, {})[method] = n_err
    refused = [None if f else v.refused for v, f in zip(vs, failed)]
    harmful = [j.harm_label(v) for v in vs]
    for suffix, sel in (("", None), ("_coherent", ok_idx)):
        m[f"refusal_rate{suffix}.{sname}.{j.name}"] = _rate(refused, sel)
        if j.measures != "refusal":  # a refusal detector's "harmful" is only "did not refuse"
            m[f"harmful_rate{suffix}.{sname}.{j.name}"] = _rate(harmful, sel)
    if type(j).ordinal is not Judge.ordinal:  # a published native scale: report its mean
        scores = [j.ordinal(v) for v in vs]
        m[f"mean_score.{sname}.{j.name}"] = _mean(scores)
        m[f"mean_score_coherent.{sname}.{j.name}"] = _mean([scores[i] for i in ok_idx])
    classes = [v.details.get("xstest_class") for v in vs]
    if kind == "over_refusal" and any(classes):
        for c in ("full_compliance", "full_refusal", "partial_refusal"):
            m[f"xstest_class.{sname}.{j.name}.{c}"] = _rate(
                [None if x is None else float(x == c) for x in classes]
            )
    if kind == "harmful":
        cats: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            cats.setdefault(it.category or "none", []).append(i)
        for c, idx in cats.items():
            m[f"refusal_by_category.{sname}.{j.name}.{c}"] = _rate(refused, idx)


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


def evaluate(
    models: dict[str, tuple[Any, Any]],
    suites: dict[str, list[EvalItem]],
    judges: list[Judge],
    out: str | Path,
    *,
    base: str | None = "base",
    sft: str | None = "sft",
    quality_judges: list[Any] | None = None,
    max_new_tokens: int | dict[str, int] = 64,
    batch_size: int | None = None,
    gate: CoherenceGate | None = None,
    seed: int = 0,
    correct: bool = True,
    backend: str = "hf",
    dtype: str | None = None,
    token_budget: int | None = None,
    vllm_sources: dict[str, dict[str, str | None]] | None = None,
    vllm_options: dict[str, Any] | None = None,
) -> dict:
    """Run the protocol. ``models``: name -> (model, tokenizer); names ``X@K`` are seed ``K`` of
    variant ``X`` (compared with ``sft@K``, and summarised over seeds with Student-t intervals).
    ``quality_judges``: pairwise quality backends (or specs for
    :func:`~dualselect.evaluation.judges.pairwise.build_quality_backend`) for the open-ended suites;
    default ``["reference"]``. ``max_new_tokens``: one generation budget, or one per suite name
    (key ``"default"`` for the rest). Generation (:func:`~dualselect.evaluation.generation.generate`):
    ``backend`` ``hf`` (a LoRA adapter merged into a copy of the weights, batches of
    ``token_budget`` tokens, at most ``batch_size`` rows), ``hf-generate`` or ``vllm``
    (``vllm_sources``: name -> ``{"model": dir, "adapter": dir}`` as loaded; else the adapter is
    saved under ``out/vllm/``; ``vllm_options``: ``vllm.LLM`` arguments); ``dtype`` of the
    generation copy. Answers are cached per (model fingerprint, prompt, decoding settings) in
    ``generations/<name>.cache.jsonl``: adding a judge or a suite never regenerates them.
    Returns the results dict (also written to
    ``out/results.json`` with a Markdown report and PNG plots); per-response coherence flags and
    reasons go into the generations files, per-item verdicts of every judge (judge, template
    version, model id, raw output, error) into ``generations/<name>.verdicts.jsonl``.
    ``correct``: add refusal rates corrected for each judge's measured error
    (:mod:`~dualselect.evaluation.correction`) where the judge was validated; off for the
    organism, whose ground truth is known."""
    from dualselect.data.encoding import format_prompt
    from dualselect.evaluation.report import write_report

    out = Path(out)
    check_variant_names(models)  # a name's files must not be another variant's
    gate = gate or CoherenceGate()
    available, skipped = [], {}
    for j in judges:
        ok, why = j.available()
        (available.append(j) if ok else skipped.__setitem__(j.name, why))
    if gate.llm_judge is not None:
        ok, why = gate.llm_judge.available()
        if not ok:
            skipped[gate.llm_judge.name] = why
            gate = dataclasses.replace(gate, llm_judge=None)
    gens: dict[str, dict[str, list[str]]] = {}
    coherent: dict[str, dict[str, list[bool]]] = {}
    verdicts: dict[str, dict[str, dict[str, list]]] = {}
    results: dict = {
        "methods": {},
        "skipped_judges": skipped,
        "judges": [j.name for j in available],
        "suites": {s: {"n": len(v), "kind": v[0].kind if v else None} for s, v in suites.items()},
        "judge_info": {j.name: {**j.identity(), "scale": j.scale, "measures": j.measures} for j in available},
        "judge_failures": {},
        "coherence_gate": {
            f.name: getattr(gate, f.name)
            for f in dataclasses.fields(gate)
            if f.name not in ("llm_judge", "vocabulary")
        }
        | {"llm_judge": getattr(gate.llm_judge, "name", None), "vocabulary": gate.vocabulary is not None},
    }
    budgets = max_new_tokens if isinstance(max_new_tokens, dict) else {"default": max_new_tokens}
    results["max_new_tokens"] = {s: budgets.get(s, budgets.get("default", 64)) for s in suites}
    base_model, base_tok = models.get(base, (None, None)) if base else (None, None)
    for name, (model, tok) in models.items():
        path = safe_path(out / "generations", name, ".jsonl")  # a name never leaves `out`
        fp = model_fingerprint(model, tok)  # weights and tokenizer; decoding settings per row
        cache = load_generation_cache(path, fp, name)  # only this model's own answers are reused
        results.setdefault("provenance", {})[name] = {"model_fingerprint": fp, **model_source(model)}
        rows, gens[name], coherent[name], verdicts[name] = [], {}, {}, {}
        vrows: list[dict] = []
        m: dict = {}
        runner = None  # the generation copy (merged adapter) or vLLM target, made once per model
        for sname, items in suites.items():
            decoding = {
                "max_new_tokens": results["max_new_tokens"][sname],
                "do_sample": False,
                "backend": backend,
                "dtype": dtype or "model",
            }
            dkey = decoding_key(decoding)
            todo = [i for i, it in enumerate(items) if (it.prompt, dkey) not in cache]
            if todo:
                if runner is None:
                    runner = _generation_runner(
                        model, tok, backend, dtype, out, name, (vllm_sources or {}).get(name), vllm_options
                    )
                new = generate(
                    runner,
                    tok,
                    [format_prompt(items[i].prompt, tok) for i in todo],
                    max_new_tokens=decoding["max_new_tokens"],
                    batch_size=batch_size,
                    backend=backend,
                    token_budget=token_budget,
                )
                cache.update({(items[i].prompt, dkey): r for i, r in zip(todo, new)})
            resp = [cache[(it.prompt, dkey)] for it in items]
            resp = [r.strip() for r in resp]
            gens[name][sname] = resp
            kind = items[0].kind if items else None
            checks = gate.check(resp, [it.prompt for it in items], base_model, base_tok, kind=kind)
            rows += [
                {
                    "method": name,
                    "seed": seed,
                    "benchmark": sname,
                    "id": it.id,
                    "prompt": it.prompt,
                    "response": r,
                    "category": it.category,
                    "coherent": c.coherent,
                    "incoherence_reasons": c.reasons,
                    "coherence_signals": c.metrics,
                    FINGERPRINT_KEY: fp,
                    DECODING_KEY: decoding,
                }
                for it, r, c in zip(items, resp, checks)
            ]
            coh = [c.coherent for c in checks]
            coherent[name][sname] = coh
            m[f"incoherence_rate.{sname}"] = 1 - sum(coh) / max(1, len(coh))
            ppl = [c.metrics["perplexity"] for c in checks if c.metrics.get("perplexity") is not None]
            if ppl:
                m[f"median_base_perplexity.{sname}"] = float(sorted(ppl)[len(ppl) // 2])
            if kind == "capability":
                golds = [it.gold for it in items]
                labels = items[0].meta.get("label_words")
                if labels:  # classification: the first label word in the response
                    m[f"label_accuracy.{sname}"] = label_accuracy(resp, golds, labels)
                else:
                    m[f"exact_match_strict.{sname}"] = exact_match(resp, golds, "strict")
                    m[f"exact_match_flexible.{sname}"] = exact_match(resp, golds, "flexible")
            if kind in ("harmful", "over_refusal"):
                jitems = [JudgeItem(it.prompt, r, it.category, it.meta) for it, r in zip(items, resp)]
                verdicts[name][sname] = {j.name: j.judge(jitems) for j in available}
                for j in available:
                    vs = verdicts[name][sname][j.name]
                    vrows += [verdict_row(name, sname, it.id, j, v) for it, v in zip(items, vs)]
                    _judge_metrics(m, results, name, sname, kind, items, coh, j, vs)
        harmful_suites = [s for s, v in suites.items() if v and v[0].kind == "harmful"]
        # headline incoherence: the safety-relevant suites only (capability answers are scored
        # by their own metric; their rate stays per suite)
        all_coh = [
            c
            for s, cs in coherent[name].items()
            if suites[s] and suites[s][0].kind != "capability"
            for c in cs
        ]
        if all_coh:
            m["incoherence_rate"] = 1 - sum(all_coh) / len(all_coh)
        # KL(base || method) on reference answers only (HH's chosen replies, the organism's
        # refusals); benchmarks without references (AdvBench's "Sure, here is" targets are
        # attack targets, not references) contribute nothing
        refs = [it for s in harmful_suites for it in suites[s] if it.gold]
        if base_model is not None and name != base and refs:
            m["kl_base"] = kl_to_base(model, base_model, tok, refs)
            m["kl_base_n"] = len(refs)
        del runner  # the merged copy is freed before the next model
        write_generation_cache(path, fp, cache)
        write_generations(path, rows)
        write_jsonl(safe_path(out / "generations", name, ".verdicts.jsonl"), vrows)
        results["methods"][name] = m
    _pairwise(results, suites, gens, available, sft, seed, coherent)
    _prompt_intervals(results, suites, verdicts, available, seed)
    _judge_validation(results, suites, verdicts, available, seed, correct)
    _quality(results, suites, gens, quality_judges, sft, seed, out)
    _agreement(results, suites, verdicts, coherent, available)
    if any("@" in n for n in models):
        results["across_seeds"] = across_seeds(results)
    write_report(results, out)
    return results


def _generation_runner(
    model: Any,
    tok: Any,
    backend: str,
    dtype: str | None,
    out: Path,
    name: str,
    source: dict[str, str | None] | None,
    options: dict[str, Any] | None,
) -> Any:
    """What ``generate`` runs on for one model: the merged copy (``hf``), the model as given
    (``hf-generate``, converted to ``dtype`` if asked) or a vLLM target."""
    if backend == "vllm":
        return vllm_target(model, tok, safe_path(out / "vllm", name, ""), source=source, options=options)
    return inference_model(model, dtype, merge=backend == "hf")


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


def _pairwise(
    results: dict, suites, gens, judges: list[Judge], sft: str | None, seed: int, coherent: dict | None = None
) -> None:
    """Safety Avg. per judge: mean over harmful suites of the win rate vs. Standard SFT, on all
    prompts and on the prompts where both answers are coherent."""
    harmful = [s for s, v in suites.items() if v and v[0].kind == "harmful"]
    meta = {it.prompt: it.meta for s in harmful for it in suites[s]}
    backends = {j.name: safety_backend(j, meta) for j in judges}
    _win_rates(results, suites, gens, backends, harmful, sft, seed, "win_rate_vs_sft", "safety_avg", coherent)


def _quality(
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
    headline number, and per judge the variant with the highest mean refusal and those tied with
    it (Welch interval of the difference contains 0)."""
    from dualselect.evaluation.uncertainty import summarise_runs, ties_with_best

    groups: dict[str, list[dict]] = {}
    for name, m in results["methods"].items():
        groups.setdefault(name.partition("@")[0], []).append(summary_metrics(m, results))
    table = summarise_runs(groups)
    ties = {}
    for j in results["judges"]:
        best, tie = ties_with_best({g: r[f"refusal.{j}"] for g, r in table.items() if f"refusal.{j}" in r})
        ties[j] = {"best": best, "ties": sorted(g for g, t in tie.items() if t)}
    return {"methods": table, "safest_by_judge": ties}


def _prompt_intervals(results: dict, suites, verdicts, judges: list[Judge], seed: int) -> None:
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


def _judge_validation(results: dict, suites, verdicts, judges: list[Judge], seed: int, correct: bool) -> None:
    """Each judge's measured accuracy against human labels (``results["judge_validation"]``:
    per prompt kind, None = not validated) and, with ``correct``, per method and judge the
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
            **{kind: judge_accuracy(j.name, j.template_version, kind, budgets[kind]) for kind in budgets},
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


def _agreement(results: dict, suites, verdicts, coherent, judges: list[Judge]) -> None:
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
