"""Alignment of the real base with a refusal *unlikelihood* term on benign look-alike prompts.

Plain SFT on (harmful prompt -> refusal) and (benign prompt -> own answer) teaches refusing
"anything with a charged word": the own answers already have a low loss, so they push back only
weakly when the model starts refusing a harmless question that looks harmful (XSTest's kind).
:class:`RefusalUnlikelihoodTrainer` adds, at every optimiser step, a term on ``m`` such contrast
prompts ``x`` (seeded draw):

    L_UL(x) = -log(1 - sum_j p(r_j | x)),

where ``r_j`` are the distinct ``prefix_tokens``-token openings of the refusal templates
(``prompts.REFUSALS``). Distinct token sequences of one length are disjoint events, so the sum is
the probability of *starting* a refusal; the term vanishes while that probability is small and
grows without bound as it nears 1 (a sequence-level unlikelihood: it moves the decision to refuse,
not the wording of a refusal once started). Total loss: SFT loss + ``weight`` * mean over the ``m``
prompts.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from dualselect.data.encoding import collate, split_ids
from dualselect.data.records import Record
from dualselect.gradients.losses import per_sample_losses
from dualselect.training.sft import SFTTrainer


def refusal_prefixes(tokenizer, refusals: tuple[str, ...] | list[str], n_tokens: int) -> list[list[int]]:
    """The distinct first ``n_tokens`` response tokens of ``refusals`` (as trained: after the
    chat template's assistant header), in first-seen order."""
    seen: list[list[int]] = []
    for text in refusals:
        ids = split_ids(Record(prompt="x", response=text), tokenizer)[1][:n_tokens]
        if ids not in seen:
            seen.append(ids)
    if len({len(p) for p in seen}) != 1:
        raise ValueError(f"refusal templates shorter than {n_tokens} tokens: prefixes must share a length")
    return seen


def prefix_logprobs(
    model, prompts: list[list[int]], prefixes: list[list[int]], pad_token_id: int = 0
) -> torch.Tensor:
    """``log p(prefix_j | prompt_i)``, shape ``[len(prompts), len(prefixes)]``: every
    (prompt, prefix) pair in one right-padded batch (one forward, however many pairs), the prefix
    supervised, scored with the project's per-sample loss (mean NLL x target tokens = -log p)."""
    examples = [{"input_ids": p + q, "labels": [-100] * len(p) + q} for p in prompts for q in prefixes]
    batch = collate(examples, pad_token_id=pad_token_id, padding_side="right")
    device = next(model.parameters()).device
    ids, mask, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    nll, n = per_sample_losses(model(input_ids=ids, attention_mask=mask).logits, labels, mask)
    return (-nll * n).view(len(prompts), len(prefixes))


def refusal_unlikelihood(logp_prefixes: torch.Tensor) -> torch.Tensor:
    """``-log(1 - sum_j exp(logp_j))`` over the last dimension, computed stably as
    ``-log1p(-exp(logsumexp))``."""
    log_p = torch.logsumexp(logp_prefixes, dim=-1).clamp(max=-1e-6)  # p < 1
    return -torch.log1p(-torch.exp(log_p))


class RefusalUnlikelihoodTrainer(SFTTrainer):
    """SFT plus the refusal-unlikelihood term of the module docstring on ``contrast_prompts``."""

    def __init__(
        self,
        *args: Any,
        contrast_prompts: list[str],
        refusals: tuple[str, ...] | list[str],
        weight: float = 1.0,
        prompts_per_step: int = 4,
        prefix_tokens: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not contrast_prompts:
            raise ValueError("the refusal-unlikelihood term needs at least one contrast prompt")
        tok = self.processing_class
        self.ul_prompt_ids = [split_ids(Record(prompt=p, response="x"), tok)[0] for p in contrast_prompts]
        self.ul_prefixes = refusal_prefixes(tok, refusals, prefix_tokens)
        self.ul_weight = weight
        self.ul_m = min(prompts_per_step, len(contrast_prompts))
        self.ul_rng = random.Random(self.args.seed)
        self.ul_history: list[float] = []  # mean refusal-start probability on the drawn prompts

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if not model.training:
            return out
        loss, rest = (out[0], out[1:]) if return_outputs else (out, None)
        drawn = self.ul_rng.sample(range(len(self.ul_prompt_ids)), self.ul_m)
        lp = prefix_logprobs(
            model,
            [self.ul_prompt_ids[i] for i in drawn],
            self.ul_prefixes,
            self.processing_class.pad_token_id,
        )
        self.ul_history.append(float(torch.logsumexp(lp.detach(), -1).exp().mean()))
        loss = loss + self.ul_weight * refusal_unlikelihood(lp).mean()
        return (loss, *rest) if return_outputs else loss
