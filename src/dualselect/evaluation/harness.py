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

from dualselect.evaluation.aggregate import (
    across_seeds,
    judge_agreement,
    judge_validation,
    pairwise_quality,
    pairwise_safety,
    prompt_intervals,
)
from dualselect.evaluation.capability import exact_match, label_accuracy
from dualselect.evaluation.coherence import CoherenceGate
from dualselect.evaluation.generation import generate, inference_model, vllm_target, write_generations
from dualselect.evaluation.items import EvalItem
from dualselect.evaluation.judges import Judge, JudgeItem
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
from dualselect.utils import safe_path, write_jsonl


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
    judge_validations: tuple[dict, ...] | None = None,
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
    organism, whose ground truth is known. ``judge_validations``: ``dualselect judges validate``
    results (:func:`~dualselect.evaluation.correction.load_validations`) to measure the judges'
    error on instead of the shipped XSTest validation."""
    from dualselect.evaluation.report import write_report

    out = Path(out)
    check_variant_names(models)  # a name's files must not be another variant's
    available, skipped, gate = _available_judges(judges, gate or CoherenceGate())
    gens: dict[str, dict[str, list[str]]] = {}
    coherent: dict[str, dict[str, list[bool]]] = {}
    verdicts: dict[str, dict[str, dict[str, list]]] = {}
    results = _results_skeleton(suites, available, skipped, gate, max_new_tokens)
    base_model, base_tok = models.get(base, (None, None)) if base else (None, None)
    for name, (model, tok) in models.items():
        path = safe_path(out / "generations", name, ".jsonl")  # a name never leaves `out`
        fp = model_fingerprint(model, tok)  # weights and tokenizer; decoding settings per row
        cache = load_generation_cache(path, fp, name)  # only this model's own answers are reused
        results.setdefault("provenance", {})[name] = {"model_fingerprint": fp, **model_source(model)}
        rows, gens[name], coherent[name], verdicts[name] = [], {}, {}, {}
        vrows: list[dict] = []
        m: dict = {}
        runner: list = []  # the generation copy (merged adapter) or vLLM target, made once per model

        def get_runner(model=model, tok=tok, name=name, runner=runner) -> Any:
            if not runner:
                source = (vllm_sources or {}).get(name)
                runner.append(_generation_runner(model, tok, backend, dtype, out, name, source, vllm_options))
            return runner[0]

        for sname, items in suites.items():
            decoding = {
                "max_new_tokens": results["max_new_tokens"][sname],
                "do_sample": False,
                "backend": backend,
                "dtype": dtype or "model",
            }
            resp = _answers(items, cache, decoding, get_runner, tok, batch_size, token_budget)
            gens[name][sname] = resp
            kind = items[0].kind if items else None
            checks = gate.check(resp, [it.prompt for it in items], base_model, base_tok, kind=kind)
            rows += _generation_rows(name, seed, sname, items, resp, checks, fp, decoding)
            coherent[name][sname] = [c.coherent for c in checks]
            _suite_metrics(m, sname, items, resp, checks)
            if kind in ("harmful", "over_refusal"):
                jitems = [JudgeItem(it.prompt, r, it.category, it.meta, kind) for it, r in zip(items, resp)]
                verdicts[name][sname] = {j.name: j.judge(jitems) for j in available}
                for j in available:
                    vs = verdicts[name][sname][j.name]
                    vrows += [verdict_row(name, sname, it.id, j, v) for it, v in zip(items, vs)]
                    _judge_metrics(m, results, name, sname, kind, items, coherent[name][sname], j, vs)
        _model_metrics(m, suites, coherent[name])
        # KL(base || method) on reference answers only (HH's chosen replies, the organism's
        # refusals); benchmarks without references (AdvBench's "Sure, here is" targets are
        # attack targets, not references) contribute nothing
        refs = [it for s, v in suites.items() if v and v[0].kind == "harmful" for it in v if it.gold]
        if base_model is not None and name != base and refs:
            m["kl_base"] = kl_to_base(model, base_model, tok, refs)
            m["kl_base_n"] = len(refs)
        runner.clear()  # the merged copy is freed before the next model
        write_generation_cache(path, fp, cache)
        write_generations(path, rows)
        write_jsonl(safe_path(out / "generations", name, ".verdicts.jsonl"), vrows)
        results["methods"][name] = m
    pairwise_safety(results, suites, gens, available, sft, seed, coherent)
    prompt_intervals(results, suites, verdicts, available, seed)
    judge_validation(results, suites, verdicts, available, seed, correct, judge_validations)
    pairwise_quality(results, suites, gens, quality_judges, sft, seed, out)
    judge_agreement(results, suites, verdicts, coherent, available)
    if any("@" in n for n in models):
        results["across_seeds"] = across_seeds(results)
    write_report(results, out)
    return results


def _available_judges(
    judges: list[Judge], gate: CoherenceGate
) -> tuple[list[Judge], dict[str, str], CoherenceGate]:
    """The judges that can run here, the others with their reason, and the gate without its LLM
    judge when that one cannot run."""
    available, skipped = [], {}
    for j in judges:
        ok, why = j.available()
        (available.append(j) if ok else skipped.__setitem__(j.name, why))
    if gate.llm_judge is not None:
        ok, why = gate.llm_judge.available()
        if not ok:
            skipped[gate.llm_judge.name] = why
            gate = dataclasses.replace(gate, llm_judge=None)
    return available, skipped, gate


def _results_skeleton(
    suites: dict[str, list[EvalItem]],
    available: list[Judge],
    skipped: dict[str, str],
    gate: CoherenceGate,
    max_new_tokens: int | dict[str, int],
) -> dict:
    """The results dict before any model runs: judges, suites, gate settings, budgets."""
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
    return results


def _answers(
    items: list[EvalItem],
    cache: dict,
    decoding: dict[str, Any],
    get_runner: Any,
    tok: Any,
    batch_size: int | None,
    token_budget: int | None,
) -> list[str]:
    """Each item's greedy answer (stripped): from ``cache`` (keyed by prompt and decoding
    settings) or generated now for the missing ones, which are added to ``cache``."""
    from dualselect.data.encoding import format_prompt

    dkey = decoding_key(decoding)
    todo = [i for i, it in enumerate(items) if (it.prompt, dkey) not in cache]
    if todo:
        new = generate(
            get_runner(),
            tok,
            [format_prompt(items[i].prompt, tok) for i in todo],
            max_new_tokens=decoding["max_new_tokens"],
            batch_size=batch_size,
            backend=decoding["backend"],
            token_budget=token_budget,
        )
        cache.update({(items[i].prompt, dkey): r for i, r in zip(todo, new)})
    return [cache[(it.prompt, dkey)].strip() for it in items]


def _generation_rows(
    name: str,
    seed: int,
    sname: str,
    items: list[EvalItem],
    resp: list[str],
    checks: list,
    fp: str,
    decoding: dict[str, Any],
) -> list[dict]:
    """The generations-file rows of one suite: each answer with its coherence verdict and
    provenance (model fingerprint, decoding settings); on a capability suite also its gold
    answer and per-item score (:func:`capability_scores`)."""
    scores = capability_scores(items, resp)
    return [
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
            **sc,
        }
        for it, r, c, sc in zip(items, resp, checks, scores)
    ]


def capability_scores(items: list[EvalItem], resp: list[str]) -> list[dict]:
    """Per item of a capability suite, its ``gold`` and the per-item verdict its suite's rate
    averages: ``label_correct`` (classification sets) or ``exact_match_strict`` and
    ``exact_match_flexible`` (lm-eval's GSM8K regexes); empty dicts for other suites."""
    if not items or items[0].kind != "capability":
        return [{} for _ in items]
    labels = items[0].meta.get("label_words")
    if labels:
        return [
            {"gold": it.gold, "label_correct": label_accuracy([r], [it.gold], labels) == 1.0}
            for it, r in zip(items, resp)
        ]
    return [
        {
            "gold": it.gold,
            "exact_match_strict": exact_match([r], [it.gold], "strict") == 1.0,
            "exact_match_flexible": exact_match([r], [it.gold], "flexible") == 1.0,
        }
        for it, r in zip(items, resp)
    ]


def _suite_metrics(m: dict, sname: str, items: list[EvalItem], resp: list[str], checks: list) -> None:
    """Incoherence and median base perplexity of one suite's answers; capability scores (label
    accuracy for classification sets, strict and flexible exact match otherwise)."""
    coh = [c.coherent for c in checks]
    m[f"incoherence_rate.{sname}"] = 1 - sum(coh) / max(1, len(coh))
    ppl = [c.metrics["perplexity"] for c in checks if c.metrics.get("perplexity") is not None]
    if ppl:
        m[f"median_base_perplexity.{sname}"] = float(sorted(ppl)[len(ppl) // 2])
    if items and items[0].kind == "capability":
        golds = [it.gold for it in items]
        labels = items[0].meta.get("label_words")
        if labels:  # classification: the first label word in the response
            m[f"label_accuracy.{sname}"] = label_accuracy(resp, golds, labels)
        else:
            m[f"exact_match_strict.{sname}"] = exact_match(resp, golds, "strict")
            m[f"exact_match_flexible.{sname}"] = exact_match(resp, golds, "flexible")


def _model_metrics(m: dict, suites: dict[str, list[EvalItem]], coherent: dict[str, list[bool]]) -> None:
    """Headline incoherence: the safety-relevant suites only (capability answers are scored by
    their own metric; their rate stays per suite)."""
    all_coh = [c for s, cs in coherent.items() if suites[s] and suites[s][0].kind != "capability" for c in cs]
    if all_coh:
        m["incoherence_rate"] = 1 - sum(all_coh) / len(all_coh)


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
