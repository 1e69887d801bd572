"""Per-sample losses ``l_k`` shared by the fast engine and the oracle.

``l_k`` = mean token NLL over sample k's supervised tokens. Labels are not pre-shifted (position t
predicts token t+1, as in HF causal LMs) and are -100 on prompt and pad tokens. A sample without a
supervised token has ``l_k = 0`` and ``g_k = 0``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
from torch import nn

BATCH_KEYS = ("input_ids", "attention_mask", "labels")


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, so a padded sample is computed as it would be alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def target_mask(labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T-1]: position t predicts a supervised token t+1.

    Token t+1 is a target when its label is not -100 and, given ``attention_mask``, position t is
    a real token: in a left-padded sample without a prompt, the first token is not predicted from
    the pad before it (it has no context when the sample is alone either).
    """
    mask = labels[:, 1:] != -100
    if attention_mask is not None:
        mask = mask & attention_mask[:, :-1].bool()
    return mask


def per_sample_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(l [B], n_target_tokens [B])`` from logits [B, T, V] and unshifted labels [B, T].
    ``label_smoothing`` (eps): each token's loss is ``(1 - eps) * nll + eps * mean_v(-log p_v)``,
    HF's ``label_smoothing_factor`` per token."""
    return _masked_mean_nll(
        logits[:, :-1], labels[:, 1:], target_mask(labels, attention_mask), label_smoothing
    )


def _masked_mean_nll(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    # (label_smoothing is passed only when set: the plain path stays the one the pins were taken on)
    extra = {"label_smoothing": float(label_smoothing)} if label_smoothing else {}
    nll = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        targets.clamp_min(0).reshape(-1),
        reduction="none",
        **extra,
    ).view_as(targets)
    n = mask.sum(1)
    return (nll * mask).sum(1) / n.clamp_min(1), n


def check_batch(batch: dict) -> None:
    """Clear errors for a batch that does not follow the convention."""
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch lacks {missing}; expected input_ids, attention_mask, labels [B, T]")
    shapes = {k: tuple(batch[k].shape) for k in BATCH_KEYS}
    if len(set(shapes.values())) != 1 or batch["input_ids"].dim() != 2:
        raise ValueError(f"input_ids, attention_mask and labels must share one [B, T] shape, got {shapes}")


def trim_padding(batch: dict) -> dict:
    """Drop leading/trailing columns no sample attends to (e.g. from pad-to-multiple collation)."""
    cols = batch["attention_mask"].bool().any(0).nonzero().flatten()
    T = batch["attention_mask"].shape[1]
    if cols.numel() == 0 or (int(cols[0]) == 0 and int(cols[-1]) == T - 1):
        return batch
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    return {k: (batch[k][:, lo:hi] if k in BATCH_KEYS else batch[k]) for k in batch}


def select_rows(batch: dict, rows: torch.Tensor) -> dict:
    """The sub-batch of the given rows (every tensor whose first dimension is the batch)."""
    B = batch["input_ids"].shape[0]
    return {
        k: (v[rows] if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == B else v)
        for k, v in batch.items()
    }


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def target_logits_inputs(model: nn.Module, batch: dict) -> dict | None:
    """Keyword arguments for an HF causal LM's own loss (``model(**kw).loss``) that project onto the
    vocabulary only at the positions predicting a supervised token in some row, like
    :func:`forward_losses`; None when the model does not take ``logits_to_keep`` or no row has a
    target. The loss is the same token-level cross-entropy as with full logits (same reduction,
    same ``num_items_in_batch``): ``shift_labels`` holds each kept position's next-token label
    (-100 where that row has no target there), so HF's loss skips its own shift."""
    mask, labels = batch["attention_mask"], batch["labels"]
    tmask = target_mask(labels, mask)  # [B, T-1]
    keep = tmask.any(0).nonzero().flatten()
    if keep.numel() == 0 or not _accepts_logits_to_keep(model):
        return None
    shifted = torch.where(tmask[:, keep], labels[:, keep + 1], torch.full_like(labels[:, keep], -100))
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": mask,
        "logits_to_keep": keep,
        "labels": shifted,  # read only as "labels are given"; the loss uses shift_labels
        "shift_labels": shifted,
    }


def forward_losses(
    model: nn.Module, batch: dict, all_logits: bool = False, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass; per-sample ``l_k`` (attached to the graph) and supervised-token counts.
    ``label_smoothing``: see :func:`per_sample_losses`.

    Unless ``all_logits``, HF models project onto the vocabulary only at the positions that
    predict a supervised token in some row (``logits_to_keep``): the prompt positions' logits are
    never needed, and with a 128k-262k vocabulary they are most of the activation memory.
    """
    mask, labels = batch["attention_mask"], batch["labels"]
    inputs = dict(
        input_ids=batch["input_ids"],
        attention_mask=mask,
        position_ids=position_ids_from_mask(mask),
        use_cache=False,
    )
    tmask = target_mask(labels, mask)  # [B, T-1]
    keep = tmask.any(0).nonzero().flatten()  # positions t that predict some target t+1
    if not all_logits and keep.numel() > 0 and _accepts_logits_to_keep(model):
        logits = model(**inputs, logits_to_keep=keep).logits
        if logits.shape[1] == keep.numel():
            return _masked_mean_nll(logits, labels[:, keep + 1], tmask[:, keep], label_smoothing)
    else:
        logits = model(**inputs).logits
    if logits.shape[1] != labels.shape[1]:
        raise RuntimeError(
            f"model returned logits for {logits.shape[1]} positions, expected {labels.shape[1]}"
        )
    return per_sample_losses(logits, labels, mask, label_smoothing)


def _checkpointed_layers(model: nn.Module) -> list[nn.Module]:
    """HF decoder layers with gradient checkpointing on, when it is non-reentrant (the reentrant
    variant does not support ``torch.autograd.grad``, which every engine uses)."""
    layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    out = []
    for m in layers:
        fn = getattr(m, "_gradient_checkpointing_func", None)
        if getattr(fn, "keywords", {}).get("use_reentrant", True) is False:
            out.append(m)
    if layers and not out:
        import warnings

        warnings.warn(
            "gradient checkpointing is reentrant (use_reentrant=True), which torch.autograd.grad does "
            "not support: scoring runs without it. Set gradient_checkpointing_kwargs="
            '{"use_reentrant": false} to checkpoint the scoring passes too.',
            stacklevel=3,
        )
    return out


@contextlib.contextmanager
def scoring_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (LoRA dropout off: spec pitfall 2) with gradients enabled; every sub-module's
    previous train/eval flag is restored afterwards.

    HF checkpoints a decoder layer only in training mode; when the model has non-reentrant
    gradient checkpointing on, the checkpointed layers alone are flagged as training, so scoring
    recomputes activations like training does, while every dropout stays off."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for layer in _checkpointed_layers(model):
        layer.training = True  # the flag HF's checkpoint wrapper reads; children stay in eval
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, was in modes:
            m.training = was


def token_kl(base_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over supervised tokens of KL(p_base || p) for next-token distributions."""
    total, count = token_kl_sum(base_logits, logits, labels)
    return total / max(count, 1)


def token_kl_sum(
    base_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """(sum over supervised tokens of KL(p_base || p), number of those tokens)."""
    mask = labels[:, 1:] != -100
    return row_kl_sum(base_logits[:, :-1][mask], logits[:, :-1][mask]), int(mask.sum())


def row_kl_sum(base_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Sum over rows of KL(softmax(base) || softmax(logits)) for [N, V] logits."""
    lp_base = torch.nn.functional.log_softmax(base_logits.float(), dim=-1)
    lp = torch.nn.functional.log_softmax(logits.float(), dim=-1)
    return (lp_base.exp() * (lp_base - lp)).sum()
