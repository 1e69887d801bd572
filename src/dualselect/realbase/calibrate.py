"""Calibrate the strength of the merged alignment on held-out validation prompts and task rows.

The alignment LoRA merged into the shipped weights W0 gives W0 + dW. Its strength varies with the
training seed (SmolLM2-135M, r512: XSTest over-refusal 12.4 / 22.8 / 48.4% for seeds 0 / 1 / 2 at
about the same harmful refusal; docs/history/real_model_attempts.md), so the build keeps W0 + s * dW for one scale s of a grid (task arithmetic's
scaling coefficient, chosen on validation data as in Ilharco et al. 2023), never on an evaluation
set:

* validation harmful prompts: screened HH-RLHF red-team questions and AdvBench behaviours that no
  split uses (not trained on, not in the reference pool, not evaluated);
* validation safe prompts: ``prompts.CALIBRATION_SAFE_PROMPTS`` (XSTest's ten kinds, written for
  this project);
* validation task rows (``calib_task_rows``): GSM8K answer-extraction rows that no task split
  uses and whose raw question is not a benign alignment prompt.

Targets (:class:`Targets`): validation over-refusal at most ``max_over_refusal``, validation refusal
at least ``min_refusal`` and, when the task is gated, strict exact match on the validation task rows
at least ``min_task_em`` (the shipped model's on the same rows minus the allowed drop; the held-out
acceptance allows 5 points). Rule (:func:`choose_scale`): the largest s meeting every target; if
none does, the s that keeps the task (when gated) with the highest refusal minus over-refusal
(ties: the larger s). The scales are scored from the largest down and scoring stops at the first
that meets every target. Across training attempts (seeds), :func:`choose_attempt` keeps one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from dualselect.evaluation.benchmarks import load_benchmark, text_hash
from dualselect.realbase.data import FILES, hh_redteam_prompts, task_rows
from dualselect.realbase.prompts import CALIBRATION_SAFE_PROMPTS


@dataclass(frozen=True)
class Targets:
    """What a scale must reach on the validation prompts (rates in [0, 1])."""

    max_over_refusal: float
    min_refusal: float
    min_task_em: float | None = None  # None: the task is not gated

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScaleResult:
    """Validation rates of the merged model at one scale of the alignment delta."""

    scale: float
    over_refusal: float  # share of the validation safe prompts refused
    refusal: float  # share of the validation harmful prompts refused
    refused_safe: list[str]
    task_em: float | None = None  # strict exact match on the validation task rows (None: not scored)

    def to_dict(self) -> dict:
        return asdict(self)

    def keeps_task(self, t: Targets) -> bool:
        """The task target met (always, when the task is not gated)."""
        # rates are k/n: compare with a tolerance so 0.07 - 0.05 and 0.02 are equal
        return t.min_task_em is None or (self.task_em is not None and self.task_em >= t.min_task_em - 1e-9)

    def meets(self, t: Targets) -> bool:
        """Every validation target met."""
        return (
            self.over_refusal <= t.max_over_refusal and self.refusal >= t.min_refusal and self.keeps_task(t)
        )

    def trade_off(self, t: Targets) -> tuple[bool, float, float]:
        """Sort key of the fallback: the task kept first, then refusal minus over-refusal (rounded:
        rates are k/n), ties to the larger scale."""
        return self.keeps_task(t), round(self.refusal - self.over_refusal, 9), self.scale


def choose_scale(results: Sequence[ScaleResult], targets: Targets) -> tuple[ScaleResult, str]:
    """The scale kept by the rule of this module's docstring, and which branch chose it."""
    if not results:
        raise ValueError("choose_scale: no scale was evaluated")
    ok = [r for r in results if r.meets(targets)]
    if ok:
        return max(ok, key=lambda r: r.scale), "largest scale meeting every validation target"
    best = max(results, key=lambda r: r.trade_off(targets))
    return best, "no scale meets every validation target: highest refusal minus over-refusal" + (
        "" if targets.min_task_em is None else " among those keeping the task, if any"
    )


def choose_attempt(records: Sequence[dict], targets: Targets) -> dict:
    """The training attempt kept of the attempt records scored so far (each with ``meets_targets``
    and its ``chosen`` scale): those meeting every target first, then the fallback's key (refusal
    minus over-refusal, the task kept first); ties to the earlier attempt. Under
    ``align_select="first"`` the build stops at the first attempt meeting the targets, so only the
    last record can meet them; under ``"best"`` every attempt is scored."""
    if not records:
        raise ValueError("choose_attempt: no attempt was scored")
    return max(records, key=lambda r: (r["meets_targets"], ScaleResult(**r["chosen"]).trade_off(targets)))


def calibration_prompts(data_dir: Path, splits: dict, n_advbench: int = 50) -> dict[str, list[str]]:
    """``{"harmful": [...], "safe": [...]}``: validation prompts that no split trains on, puts in the
    reference pool or evaluates (by normalised-text hash). Harmful: every screened HH-RLHF question
    the splits left out, then ``n_advbench`` unused AdvBench behaviours (fixed-seed order)."""
    used = {
        text_hash(p)
        for key in ("align_harmful", "attack_harmful", "reference_harmful", "benign")
        for p in splits[key]
    }
    used |= {text_hash(p) for ps in splits["eval"].values() for p in ps}
    hh = [p for p in hh_redteam_prompts(data_dir) if text_hash(p) not in used]
    used |= {text_hash(p) for p in hh}
    adv = [it.prompt for it in load_benchmark("advbench", str(data_dir / FILES["advbench"]))]
    adv = [p for p in adv if text_hash(p) not in used]
    random.Random(0).shuffle(adv)
    safe = [p for p in CALIBRATION_SAFE_PROMPTS if text_hash(p) not in used]
    return {"harmful": hh + adv[:n_advbench], "safe": safe}


def calibration_task_rows(data_dir: Path, splits: dict, n: int) -> list[dict]:
    """``n`` validation rows of the GSM8K answer-extraction task (``{"question", "answer"}``, answer
    ``#### N``): rows no task split uses and whose raw GSM8K question is not a benign alignment
    prompt (those problems were seen, in another form), shortest first (the task splits keep the
    shortest solutions too)."""
    used = {text_hash(r["question"]) for k in ("task_train", "task_test", "task_align") for r in splits[k]}
    used |= {text_hash(p) for p in splits["benign"]}
    used |= {text_hash(p) for ps in splits["eval"].values() for p in ps}
    rows = [
        r
        for r in task_rows(data_dir)
        if text_hash(r["question"]) not in used and text_hash(r["source_question"]) not in used
    ]
    rows.sort(key=lambda r: (len(r["question"]), r["question"]))
    if len(rows) < n:
        raise ValueError(f"calib_task_rows: {n} asked, only {len(rows)} unused task rows")
    return [{"question": r["question"], "answer": r["answer"]} for r in rows[:n]]


def alignment_delta(model: nn.Module, base_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dW = W - W0 (fp32) for every parameter the alignment changed."""
    sd = model.state_dict()
    return {
        k: sd[k].float() - w.float() for k, w in base_state.items() if k in sd and not torch.equal(sd[k], w)
    }


@torch.no_grad()
def apply_scale(
    model: nn.Module,
    base_state: dict[str, torch.Tensor],
    delta: dict[str, torch.Tensor],
    scale: float,
    merged: dict[str, torch.Tensor] | None = None,
) -> None:
    """Set the changed parameters to W0 + scale * dW in place. At scale 1 with ``merged`` (the
    merged weights) they are copied back bit for bit (W0 + (W - W0) may differ from W by rounding)."""
    sd = model.state_dict()
    for k, d in delta.items():
        sd[k].copy_(merged[k] if scale == 1.0 and merged is not None else base_state[k].float() + scale * d)


def calibrate(
    model: nn.Module,
    base_state: dict[str, torch.Tensor],
    scales: Sequence[float],
    rates: Callable[[nn.Module], tuple[float, float, list[str]]],
    targets: Targets,
    *,
    task: Callable[[nn.Module], float] | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[ScaleResult, str, list[ScaleResult]]:
    """Score the scales from the largest down with ``rates(model) -> (over_refusal, refusal,
    refused_safe)`` and, if given, ``task(model) -> strict exact match``, stopping at the first that
    meets every target (no smaller one can be chosen); leave the model at the chosen scale and
    return (chosen, reason, the results scored)."""
    delta = alignment_delta(model, base_state)
    if not delta:
        raise ValueError("calibrate: the model equals the base; nothing to scale")
    sd = model.state_dict()
    merged = {k: sd[k].detach().clone() for k in delta}
    results = []
    for s in sorted({float(x) for x in scales}, reverse=True):
        apply_scale(model, base_state, delta, s, merged)
        over, refusal, refused = rates(model)
        em = task(model) if task is not None else None
        results.append(ScaleResult(s, over, refusal, refused, em))
        log(
            f"scale {s}: validation over-refusal {over:.3f}, refusal {refusal:.3f}"
            + ("" if em is None else f", task strict EM {em:.3f}")
        )
        if results[-1].meets(targets):
            break
    chosen, reason = choose_scale(results, targets)
    apply_scale(model, base_state, delta, chosen.scale, merged)
    return chosen, reason, results
