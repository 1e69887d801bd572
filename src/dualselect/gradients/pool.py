"""Streaming a reference pool (the lazy refresh): per reference keep scalars only.

Each batch is captured, reduced to ``l_i``, ``cos(g_i, direction)`` and token counts, and released
before the next one, so memory does not grow with the pool size (spec: "A refresh can stream the
pool in batches and keep only scores"). The reference direction ``r`` is then recomputed from the
selected indices with ``engine.weighted_gradient``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dualselect.gradients.engine import length_buckets
from dualselect.gradients.losses import check_batch, forward_losses, scoring_mode, select_rows, trim_padding


@dataclass
class PoolScores:
    """One entry per scored reference, in streaming order."""

    indices: torch.Tensor  # pool positions (the batches' ``index``)
    losses: torch.Tensor  # l_i
    cos: torch.Tensor  # cos(g_i, direction)
    n_tokens: torch.Tensor  # supervised target tokens

    def __len__(self) -> int:
        return int(self.indices.numel())


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_host_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim(0)``; a no-op elsewhere).

    Why: each scoring batch allocates activations of a new shape; glibc raises its mmap threshold
    after the first large free, so later ones come from the heap and fragment it, and the process
    RSS creeps up with the number of batches (+18% at 16k references on the organism). Trimming
    every few batches keeps the refresh peak flat in the pool size."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def score_pool(
    engine, model: nn.Module, batches: Iterable[dict], direction: torch.Tensor, trim_every: int = 16
) -> PoolScores:
    """Score every reference of ``batches`` (each with an ``index`` LongTensor [B] of pool positions)
    against ``direction`` (e.g. the task direction u), one batch at a time. On a CPU, freed heap
    memory is returned to the OS every ``trim_every`` batches (see :func:`release_host_memory`)."""
    direction = direction.detach().float()
    on_cpu = direction.device.type == "cpu"
    idx, losses, cos, ntok = [], [], [], []
    for i, batch in enumerate(batches):
        if on_cpu and trim_every and i % trim_every == trim_every - 1:
            release_host_memory()
        if "index" not in batch:
            raise ValueError("score_pool: every batch needs an 'index' LongTensor of pool positions")
        cap = engine.capture(model, batch)
        idx.append(torch.as_tensor(batch["index"]).long().reshape(-1).cpu())
        losses.append(cap.losses.float().cpu())
        cos.append(cap.cos(direction).cpu())
        ntok.append(cap.n_target_tokens.long().cpu())
        cap.release()  # no per-sample gradient outlives its batch
        del cap
    if not idx:
        empty = torch.zeros(0)
        return PoolScores(empty.long(), empty, empty.clone(), empty.long())
    return PoolScores(torch.cat(idx), torch.cat(losses), torch.cat(cos), torch.cat(ntok))


@dataclass
class PoolLosses:
    """Forward-only pass over a pool: one entry per reference, in streaming order."""

    indices: torch.Tensor  # pool positions (the batches' ``index``)
    losses: torch.Tensor  # l_i
    n_tokens: torch.Tensor  # supervised target tokens

    def __len__(self) -> int:
        return int(self.indices.numel())


def pool_losses(
    model: nn.Module,
    batches: Iterable[dict],
    bucket_slack: float | None = 0.25,
    label_smoothing: float = 0.0,
) -> PoolLosses:
    """Every reference's preservation loss ``l_i`` from forward passes only (no graph, no hooks,
    no backward): the first stage of the prefiltered refresh. Same ``l_i`` as
    :func:`score_pool` (same :func:`forward_losses`, eval mode, length buckets of ``bucket_slack``
    as the fast engine forms them), at the cost of the forward alone."""
    idx, losses, ntok = [], [], []
    with scoring_mode(model), torch.no_grad():  # eval mode (dropout off); no_grad wins inside
        for batch in batches:
            if "index" not in batch:
                raise ValueError("pool_losses: every batch needs an 'index' LongTensor of pool positions")
            check_batch(batch)
            B = batch["input_ids"].shape[0]
            lb = torch.zeros(B, dtype=torch.float32)
            nb = torch.zeros(B, dtype=torch.long)
            for rows in length_buckets(batch["attention_mask"].sum(1), bucket_slack):
                sub = trim_padding(select_rows(batch, rows))
                l_k, n_k = forward_losses(model, sub, label_smoothing=label_smoothing)
                rows_cpu = rows.cpu()
                lb[rows_cpu], nb[rows_cpu] = l_k.float().cpu(), n_k.long().cpu()
            idx.append(torch.as_tensor(batch["index"]).long().reshape(-1).cpu())
            losses.append(lb)
            ntok.append(nb)
    if not idx:
        empty = torch.zeros(0)
        return PoolLosses(empty.long(), empty, empty.long())
    return PoolLosses(torch.cat(idx), torch.cat(losses), torch.cat(ntok))
