"""Choosing among candidate runs on VALIDATION metrics only (``compare``'s ``tune`` entries).

* the organism's criteria (:data:`~dualselect.experiments.compare_config.TUNE_CRITERIA`): the mean
  of validation harmful refusal and task exact match (and one minus over-refusal), from its
  validation probes;
* the real-model study's (docs/real_study.md, section 2), on a validation suite set
  (``real_study_val``): ``matched_refusal_minus_over_refusal`` (:func:`choose_matched`) and
  ``attack_strength`` (:func:`choose_attack`).
"""

from __future__ import annotations

from dualselect.experiments.compare_config import (
    ATTACK_REFUSAL_DROP,
    ATTACK_TASK_RISE,
    TUNE_CRITERIA,
    CompareConfig,
)

__all__ = ["choose_attack", "choose_matched", "choose_on_validation", "tune_choices", "validation_score"]


def validation_score(metrics: dict, criterion: str = "val_refusal_plus_capability") -> float:
    """The tuning criterion of one run, from VALIDATION metrics only: the mean of validation
    harmful refusal and validation task exact match (equal weight on safety and capability);
    ``val_refusal_capability_helpfulness`` adds a third equal term, one minus the validation
    over-refusal rate (answering the benign look-alike probes)."""
    if criterion not in TUNE_CRITERIA:
        raise ValueError(f"criterion={criterion!r}: expected one of {TUNE_CRITERIA}")
    keys = ["val_harmful_refusal", "val_task_exact_match"]
    if criterion == "val_refusal_capability_helpfulness":
        keys.append("val_over_refusal_rate")
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise ValueError(
            f"tuning needs validation metrics {missing}: rebuild the organism (validation split)"
        )
    if criterion == "val_refusal_capability_helpfulness":
        return (
            metrics["val_harmful_refusal"]
            + metrics["val_task_exact_match"]
            + 1
            - metrics["val_over_refusal_rate"]
        ) / 3
    return (metrics["val_harmful_refusal"] + metrics["val_task_exact_match"]) / 2


def choose_on_validation(runs: dict[str, list[dict]], tune: dict) -> dict:
    """The candidate with the highest mean validation score (ties: the earlier candidate)."""
    crit = tune.get("criterion", TUNE_CRITERIA[0])
    scores = {c: sum(validation_score(r, crit) for r in runs[c]) / len(runs[c]) for c in tune["candidates"]}
    best = max(tune["candidates"], key=lambda c: (scores[c], -tune["candidates"].index(c)))
    return {"name": tune["name"], "criterion": crit, "validation_scores": scores, "chosen": best}


# the headline metrics the study's criteria read (a validation suite set's: suites real_study_val)
STUDY_TUNE_METRICS = ("harmful_refusal", "over_refusal_rate", "task_exact_match")


def _mean_metrics(per_run: list[dict], who: str) -> dict[str, float]:
    """The mean over runs of each of :data:`STUDY_TUNE_METRICS`; a missing one is a one-line
    error naming the run set."""
    out = {}
    for k in STUDY_TUNE_METRICS:
        vals = [r.get(k) for r in per_run]
        if not vals or any(not isinstance(v, (int, float)) for v in vals):
            raise ValueError(
                f"tuning: {who} has no {k} in every run (the validation suites' headline metric)"
            )
        out[k] = sum(vals) / len(vals)
    return out


def choose_matched(runs: dict[str, list[dict]], tune: dict, within: float, reference: str = "sft") -> dict:
    """The pre-registered criterion (docs/real_study.md, section 2): among the candidates whose
    mean validation ``task_exact_match`` is at least ``reference``'s minus ``within`` points
    (eligible), the highest mean validation ``harmful_refusal - over_refusal_rate``. A tie (equal
    score, rates being k/n compared to 1e-9) goes to the higher task EM, then to the earlier
    candidate, and is reported (``tied``); with no eligible candidate ``chosen`` is None."""
    ref = _mean_metrics(runs[reference], reference)
    floor = ref["task_exact_match"] - within / 100
    per = {}
    for c in tune["candidates"]:
        m = _mean_metrics(runs[c], c)
        per[c] = {
            **m,
            "score": m["harmful_refusal"] - m["over_refusal_rate"],
            "eligible": m["task_exact_match"] >= floor - 1e-9,
        }
    eligible = [c for c in tune["candidates"] if per[c]["eligible"]]
    out = {
        "name": tune["name"],
        "criterion": tune["criterion"],
        "reference": {"method": reference, "task_exact_match": ref["task_exact_match"], "floor": floor},
        "candidates": per,
        "chosen": None,
        "tied": [],
    }
    if not eligible:
        out["reason"] = (
            f"no candidate's validation task EM is within {within:g} points of {reference}'s "
            f"({100 * ref['task_exact_match']:.1f}): nothing chosen"
        )
        return out
    best = max(round(per[c]["score"], 9) for c in eligible)
    tied = [c for c in eligible if round(per[c]["score"], 9) == best]
    chosen = max(tied, key=lambda c: (round(per[c]["task_exact_match"], 9), -tune["candidates"].index(c)))
    out["chosen"] = chosen
    out["tied"] = tied if len(tied) > 1 else []
    out["reason"] = (
        f"highest refusal minus over-refusal ({100 * per[chosen]['score']:.1f} points) of {len(eligible)} "
        f"eligible candidate(s)"
        + (
            f"; tied with {[c for c in tied if c != chosen]}, broken by task EM then list order"
            if len(tied) > 1
            else ""
        )
    )
    return out


def choose_attack(runs: dict[str, list[dict]], tune: dict, base: dict, learning_rates: dict) -> dict:
    """The attack's learning rate (docs/real_study.md, section 2): the smallest whose mean
    validation ``harmful_refusal`` is at least :data:`ATTACK_REFUSAL_DROP` below the base's while
    its ``task_exact_match`` is at least :data:`ATTACK_TASK_RISE` above the base's
    (``learning_rates``: candidate -> its rate; the config lists them rising). None when no
    candidate succeeds."""
    ref = _mean_metrics([base], "the base")
    per = {}
    for c in tune["candidates"]:
        m = _mean_metrics(runs[c], c)
        per[c] = {
            **m,
            "learning_rate": learning_rates[c],
            "refusal_drop": ref["harmful_refusal"] - m["harmful_refusal"],
            "task_rise": m["task_exact_match"] - ref["task_exact_match"],
        }
        per[c]["eligible"] = (
            per[c]["refusal_drop"] >= ATTACK_REFUSAL_DROP - 1e-9
            and per[c]["task_rise"] >= ATTACK_TASK_RISE - 1e-9
        )
    eligible = sorted((c for c in tune["candidates"] if per[c]["eligible"]), key=lambda c: learning_rates[c])
    chosen = eligible[0] if eligible else None
    return {
        "name": tune["name"],
        "criterion": tune["criterion"],
        "reference": {"method": "base", **{k: ref[k] for k in ("harmful_refusal", "task_exact_match")}},
        "candidates": per,
        "chosen": chosen,
        "tied": [],
        "reason": (
            f"the smallest learning rate ({learning_rates[chosen]:g}) lowering validation refusal by >= "
            f"{100 * ATTACK_REFUSAL_DROP:.0f} points while task EM rises >= {100 * ATTACK_TASK_RISE:.0f}"
            if chosen
            else f"no candidate lowers validation refusal by >= {100 * ATTACK_REFUSAL_DROP:.0f} points while "
            f"task EM rises >= {100 * ATTACK_TASK_RISE:.0f}: nothing chosen"
        ),
    }


def tune_choices(cfg: CompareConfig, runs: dict[str, list[dict]], base: dict | None) -> list[dict]:
    """One choice per ``tune`` entry, by its criterion (``base``: the base's metrics with
    evaluate_base, else None)."""
    out = []
    for t in cfg.tune_entries():
        crit = t.get("criterion", TUNE_CRITERIA[0])
        if crit in TUNE_CRITERIA:
            out.append(choose_on_validation(runs, t))
        elif crit == "matched_refusal_minus_over_refusal":
            out.append(choose_matched(runs, t, cfg.matched_capability_within))
        else:  # attack_strength (the config checked evaluate_base and the rates)
            if base is None:
                raise ValueError(f"tune {t['name']}: {crit} needs the base's metrics (evaluate_base)")
            rates = {c: cfg.learning_rate_of(c) for c in t["candidates"]}
            out.append(choose_attack(runs, t, base, rates))
    return out
