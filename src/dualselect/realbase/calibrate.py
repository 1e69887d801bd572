"""Attempt 7: calibrate the strength of the merged alignment on held-out validation prompts.

The alignment LoRA merged into the shipped weights W0 gives W0 + dW. Its strength varies with the
training seed (attempt 6: XSTest over-refusal 12.4 / 22.8 / 48.4% for seeds 0 / 1 / 2 at the same
harmful refusal), so the build keeps W0 + s * dW for one scale s of a grid (task arithmetic's
scaling coefficient, chosen on validation data as in Ilharco et al. 2023), never on an evaluation
set:

* validation harmful prompts: screened HH-RLHF red-team questions and AdvBench behaviours that no
  split uses (not trained on, not in the reference pool, not evaluated);
* validation safe prompts: ``prompts.CALIBRATION_SAFE_PROMPTS`` (XSTest's ten kinds, written for
  this project).

Rule (:func:`choose_scale`): the largest s whose validation over-refusal is at most
``max_over_refusal`` and whose validation refusal is at least ``min_refusal``; if no s meets both,
the s with the highest refusal minus over-refusal (ties: the larger s). The scales are scored from
the largest down and scoring stops at the first that meets both.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from dualselect.evaluation.benchmarks import load_benchmark, text_hash
from dualselect.realbase.data import FILES, hh_redteam_prompts
from dualselect.realbase.prompts import CALIBRATION_SAFE_PROMPTS


@dataclass
class ScaleResult:
    """Validation rates of the merged model at one scale of the alignment delta."""

    scale: float
    over_refusal: float  # share of the validation safe prompts refused
    refusal: float  # share of the validation harmful prompts refused
    refused_safe: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def meets(self, max_over_refusal: float, min_refusal: float) -> bool:
        """Both validation targets met."""
        return self.over_refusal <= max_over_refusal and self.refusal >= min_refusal

    def trade_off(self) -> tuple[float, float]:
        """Sort key of the fallback: refusal minus over-refusal, ties to the larger scale (rates are
        k/n, so the difference is rounded before comparing)."""
        return round(self.refusal - self.over_refusal, 9), self.scale


def choose_scale(
    results: Sequence[ScaleResult], max_over_refusal: float, min_refusal: float
) -> tuple[ScaleResult, str]:
    """The scale kept by the rule of this module's docstring, and which branch chose it."""
    if not results:
        raise ValueError("choose_scale: no scale was evaluated")
    ok = [r for r in results if r.meets(max_over_refusal, min_refusal)]
    if ok:
        return max(ok, key=lambda r: r.scale), "largest scale meeting both validation targets"
    best = max(results, key=ScaleResult.trade_off)
    return best, "no scale meets both validation targets: highest refusal minus over-refusal"


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
    *,
    max_over_refusal: float,
    min_refusal: float,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[ScaleResult, str, list[ScaleResult]]:
    """Score the scales from the largest down with ``rates(model) -> (over_refusal, refusal,
    refused_safe)``, stopping at the first that meets both targets (no smaller one can be chosen);
    leave the model at the chosen scale and return (chosen, reason, the results scored)."""
    delta = alignment_delta(model, base_state)
    if not delta:
        raise ValueError("calibrate: the model equals the base; nothing to scale")
    sd = model.state_dict()
    merged = {k: sd[k].detach().clone() for k in delta}
    results = []
    for s in sorted({float(x) for x in scales}, reverse=True):
        apply_scale(model, base_state, delta, s, merged)
        over, refusal, refused = rates(model)
        results.append(ScaleResult(s, over, refusal, refused))
        log(f"scale {s}: validation over-refusal {over:.3f}, refusal {refusal:.3f}")
        if results[-1].meets(max_over_refusal, min_refusal):
            break
    chosen, reason = choose_scale(results, max_over_refusal, min_refusal)
    apply_scale(model, base_state, delta, chosen.scale, merged)
    return chosen, reason, results
