"""The fast path: per-sample statistics of a batch from one batched forward and backward (one
per length bucket of the batch, see :func:`length_buckets`; ``bucket_slack=None``: exactly one).

The backward is taken of ``sum_k l_k``. Each ``l_k`` depends only on sample k (attention mask and
mask-derived position ids keep padded samples apart), so the output gradient a LoRA sub-layer
receives at sample k's positions is exactly ``d l_k / d output``, and the hooks recover every
``g_k = grad l_k`` as ``G_k = sum_t delta_kt x_kt^T`` per sub-layer (spec, "What the release does
slowly, and what we do instead"). Per-sample gradients live only inside one :class:`Capture`.
Only LoRA A/B matrices are covered (the hooks refuse anything else); the oracle covers any model.
"""

from __future__ import annotations

import torch
from torch import nn

from dualselect.gradients.flat import trainable_parameters
from dualselect.gradients.hooks import LayerRecord, LoraGradSampleHooks
from dualselect.gradients.losses import (
    check_batch,
    forward_losses,
    scoring_mode,
    select_rows,
    trim_padding,
)
from dualselect.gradients.samplers import sampler_for

STRATEGIES = ("auto", "materialise", "ghost")


def normalise_weights(w: torch.Tensor, n: int) -> torch.Tensor:
    """``w / sum(w)`` after checking: n finite, non-negative weights, not all zero."""
    w = torch.as_tensor(w).detach().float().flatten()
    if w.numel() != n:
        raise ValueError(f"{w.numel()} weights for a batch of {n} samples")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    total = w.sum()
    if float(total) <= 0:
        raise ValueError("the weights sum to zero: no sample is selected")
    return w / total


def _check_rows(batch: dict) -> None:
    empty = (~batch["attention_mask"].bool().any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"batch rows {empty} have no attended token")


class Capture:
    """Per-sample quantities of one batch (both engines return one).

    Attributes: ``losses`` [B] (``l_k``, detached), ``n_target_tokens`` [B] (supervised tokens).
    Flat vectors ``v`` follow :mod:`dualselect.gradients.flat`.
    """

    losses: torch.Tensor
    n_target_tokens: torch.Tensor

    def dots(self, v: torch.Tensor) -> torch.Tensor:
        """``<g_k, v>`` for every sample k, [B]."""
        raise NotImplementedError

    def sq_norms(self) -> torch.Tensor:
        """``||g_k||^2`` for every sample k, [B]."""
        raise NotImplementedError

    def weighted_sum(self, w: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k g_k / sum_k w_k`` as a flat vector (zero weights allowed, not all zero)."""
        raise NotImplementedError

    def per_sample_flat(self) -> torch.Tensor:
        """The [B, P] per-sample gradients (tests and debugging; the fast path never needs it)."""
        raise NotImplementedError

    def release(self) -> None:
        """Free every per-sample buffer; only ``losses`` and ``n_target_tokens`` stay usable."""
        raise NotImplementedError

    def cos(self, v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
        """``cos(g_k, v)`` [B]; 0 where ``g_k`` or ``v`` vanishes."""
        v = v.detach().float()
        return self.dots(v) / (self.sq_norms().clamp_min(0).sqrt() * v.norm()).clamp_min(eps)

    @property
    def num_samples(self) -> int:
        return int(self.losses.numel())


def _cat_tokens(ts: list) -> torch.Tensor:
    return ts[0].float() if len(ts) == 1 else torch.cat([t.float() for t in ts], dim=1)


class _Layer:
    """One hooked sub-layer: its trainable parameters' places in the flat layout, and either the
    materialised per-sample gradients ``G`` or the captured ``x``/``delta`` they come from."""

    def __init__(self, module: nn.Module, records: list[LayerRecord], slices: dict, materialise: bool):
        self.module = module
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.slices = [slices[id(p)] for p in self.params]
        if any(r.grad_sample is not None for r in records):  # reduced inside the backward hooks
            G: dict | None = None
            for r in records:
                g = r.grad_sample
                if g is None:
                    g = sampler_for(module, "per_sample")(module, r.activations.float(), r.backprops.float())
                G = g if G is None else {p: G[p] + g[p] for p in G}
            self.G, self.x, self.delta = G, None, None
            return
        # several calls of one module in a forward: their tokens are simply more t's in sum_t
        self.x: torch.Tensor | None = _cat_tokens([r.activations for r in records])
        self.delta: torch.Tensor | None = _cat_tokens([r.backprops for r in records])
        self.G: dict | None = None
        if materialise:
            self.G = sampler_for(module, "per_sample")(module, self.x, self.delta)
            self.x = self.delta = None  # G_k replaces what it came from

    def per_sample(self) -> dict:
        return (
            self.G
            if self.G is not None
            else sampler_for(self.module, "per_sample")(self.module, self.x, self.delta)
        )


def length_buckets(lengths: torch.Tensor, slack: float | None) -> list[torch.Tensor]:
    """Group batch rows for the forward passes. ``None``: one group, the whole batch. Otherwise rows
    sorted by length are grouped greedily while ``rows * max_len <= (1 + slack) * sum(len)``: each
    pass wastes at most a ``slack`` share on padding (spec: "padding-aware, length-sorted buckets")."""
    if slack is None:
        return [torch.arange(lengths.numel(), device=lengths.device)]
    order = torch.sort(lengths, stable=True).indices.tolist()
    groups: list[list[int]] = []
    total = 0
    for i in order:
        n = int(lengths[i])
        if groups and (len(groups[-1]) + 1) * n <= (1 + slack) * (total + n):
            groups[-1].append(i)
            total += n
        else:
            groups.append([i])
            total = n
    return [torch.tensor(sorted(g), dtype=torch.long, device=lengths.device) for g in groups]


class _Chunk:
    """The sub-layers' data of one forward/backward over the batch rows ``rows``."""

    def __init__(self, rows: torch.Tensor, records: list[LayerRecord], slices: dict, strategy: str) -> None:
        self.rows = rows
        grouped: dict[int, list[LayerRecord]] = {}
        for r in records:
            grouped.setdefault(id(r.module), []).append(r)
        self.layers: list[_Layer] = []
        for recs in grouped.values():
            module = recs[0].module
            if any(r.grad_sample is not None for r in recs):
                self.layers.append(_Layer(module, recs, slices, True))
                continue
            T = sum(r.activations.shape[1] for r in recs)
            if strategy == "auto":
                mat = bool(sampler_for(module, "materialise")(module, T))
            else:
                mat = strategy == "materialise"
            self.layers.append(_Layer(module, recs, slices, mat))


class HookCapture(Capture):
    """Fast-engine capture: per sub-layer either materialised ``G_k`` or the hooks' ``x``, ``delta``,
    for each length bucket of the batch."""

    def __init__(
        self,
        params: list[nn.Parameter],
        losses: torch.Tensor,
        n_target_tokens: torch.Tensor,
    ) -> None:
        self.losses = losses
        self.n_target_tokens = n_target_tokens
        self.num_params = sum(p.numel() for p in params)
        self.slices, offset = {}, 0
        for p in params:
            self.slices[id(p)] = slice(offset, offset + p.numel())
            offset += p.numel()
        self.chunks: list[_Chunk] | None = []
        self._sq_norms: torch.Tensor | None = None

    def add_chunk(self, rows: torch.Tensor, records: list[LayerRecord], strategy: str) -> None:
        """Take over the hooks' records of one forward/backward over ``rows``."""
        self._live().append(_Chunk(rows, records, self.slices, strategy))

    def _live(self) -> list[_Chunk]:
        if self.chunks is None:
            raise RuntimeError("this capture was released")
        return self.chunks

    @property
    def layers(self) -> list[_Layer]:
        """Every captured sub-layer of every chunk (inspection and tests)."""
        return [L for c in self._live() for L in c.layers]

    def _zeros(self) -> torch.Tensor:
        return torch.zeros(self.num_samples, dtype=torch.float32, device=self.losses.device)

    def dots(self, v: torch.Tensor) -> torch.Tensor:
        chunks = self._live()
        if v.dim() != 1 or v.numel() != self.num_params:
            raise ValueError(f"flat vector of shape {tuple(v.shape)}; expected ({self.num_params},)")
        v = v.detach().float()
        out = self._zeros()
        for c in chunks:
            part = torch.zeros(c.rows.numel(), dtype=torch.float32, device=out.device)
            for L in c.layers:
                if L.G is not None:
                    for p, s in zip(L.params, L.slices):
                        part += L.G[p].flatten(1) @ v[s]  # <G_k, V>
                else:
                    V = {p: v[s].view(p.shape) for p, s in zip(L.params, L.slices)}
                    part += sampler_for(L.module, "dots")(L.module, L.x, L.delta, V)
            out[c.rows] += part
        return out

    def sq_norms(self) -> torch.Tensor:
        chunks = self._live()
        if self._sq_norms is None:
            out = self._zeros()
            for c in chunks:
                part = torch.zeros(c.rows.numel(), dtype=torch.float32, device=out.device)
                for L in c.layers:
                    if L.G is not None:
                        for g in L.G.values():
                            part += g.flatten(1).pow(2).sum(1)
                    else:
                        part += sampler_for(L.module, "sq_norms")(L.module, L.x, L.delta)
                out[c.rows] += part
            self._sq_norms = out
        return self._sq_norms

    def weighted_sum(self, w: torch.Tensor) -> torch.Tensor:
        chunks = self._live()
        wn = normalise_weights(w, self.num_samples).to(self.losses.device)
        out = torch.zeros(self.num_params, dtype=torch.float32, device=self.losses.device)
        for c in chunks:
            wc = wn[c.rows]
            if not bool((wc > 0).any()):
                continue
            for L in c.layers:
                if L.G is not None:
                    grads = {p: torch.einsum("b,b...->...", wc, L.G[p]) for p in L.params}
                else:
                    grads = sampler_for(L.module, "weighted_sum")(L.module, L.x, L.delta, wc)
                for p, s in zip(L.params, L.slices):
                    out[s] += grads[p].reshape(-1)
        return out

    def per_sample_flat(self) -> torch.Tensor:
        chunks = self._live()
        out = torch.zeros(self.num_samples, self.num_params, dtype=torch.float32, device=self.losses.device)
        for c in chunks:
            for L in c.layers:
                G = L.per_sample()
                for p, s in zip(L.params, L.slices):
                    out[c.rows, s] += G[p].flatten(1)
        return out

    def release(self) -> None:
        self.chunks = None
        self._sq_norms = None

    @property
    def held_bytes(self) -> int:
        """Bytes of the per-sample buffers held (``x``/``delta`` or ``G`` of every sub-layer)."""
        if self.chunks is None:
            return 0
        total = 0
        for c in self.chunks:
            for L in c.layers:
                ts = list(L.G.values()) if L.G is not None else [L.x, L.delta]
                total += sum(t.numel() * t.element_size() for t in ts if t is not None)
        return total

    @property
    def held_tensors(self) -> int:
        """Number of per-sample buffers still held (0 after :meth:`release`)."""
        if self.chunks is None:
            return 0
        return sum((len(L.G) if L.G is not None else 2) for c in self.chunks for L in c.layers)


class FastEngine:
    """Batched forward/backward passes with hooks on the LoRA sub-layers.

    ``strategy``: ``"auto"`` (per sub-layer, the rule in ``samplers.linear_materialise``),
    ``"materialise"`` (always form ``G_k``) or ``"ghost"`` (never: dots and norms from ``x``, ``delta``).
    ``reduce_in_hooks``: materialised sub-layers turn ``(x, delta)`` into ``G_k`` inside the backward
    hook, so no more than one layer's output gradient is held at a time (False: after the backward,
    as the release-shaped reference does; same numbers).
    ``bucket_slack``: rows are grouped by length so that no pass spends more than this share on
    padding (see :func:`length_buckets`); ``None`` runs the whole batch in ONE pass (on a GPU,
    where batching is where the speed is). On a CPU, padded tokens are paid in full, and the
    masked attention path is slower than the unpadded causal one, so buckets win.
    """

    name = "fast"

    def __init__(
        self, strategy: str = "auto", bucket_slack: float | None = 0.25, reduce_in_hooks: bool = True
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r}: expected one of {STRATEGIES}")
        if bucket_slack is not None and bucket_slack < 0:
            raise ValueError(f"bucket_slack={bucket_slack}: must be >= 0 or None")
        self.strategy = strategy
        self.bucket_slack = bucket_slack
        self.reduce_in_hooks = reduce_in_hooks

    def _reduce_in_hook(self, module: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> dict | None:
        """Inside the backward: materialise ``G_k`` for this sub-layer at once when the rule (or the
        strategy) says so, so its ``delta`` [B, T, out] is freed before the next layer's arrives."""
        if self.strategy == "ghost" or not self.reduce_in_hooks:
            return None
        if self.strategy == "auto" and not sampler_for(module, "materialise")(module, x.shape[1]):
            return None
        return sampler_for(module, "per_sample")(module, x.float(), delta.float())

    def capture(self, model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> HookCapture:
        """Losses, dots, norms, cosines and weighted sums of the per-sample gradients of ``batch``
        (per-sample losses label-smoothed by ``label_smoothing``, HF's ``label_smoothing_factor``)."""
        check_batch(batch)
        _check_rows(batch)
        B = batch["input_ids"].shape[0]
        params = trainable_parameters(model)
        device = batch["input_ids"].device
        losses = torch.zeros(B, dtype=torch.float32, device=device)
        ntok = torch.zeros(B, dtype=torch.long, device=device)
        cap = HookCapture(params, losses, ntok)
        with scoring_mode(model), LoraGradSampleHooks(model, reduce=self._reduce_in_hook) as hooks:
            for rows in length_buckets(batch["attention_mask"].sum(1), self.bucket_slack):
                sub = trim_padding(select_rows(batch, rows))
                l_k, n_k = forward_losses(model, sub, label_smoothing=label_smoothing)
                hooks.backward(l_k.sum())  # sum_k l_k: each delta_kt belongs to l_k alone
                cap.add_chunk(rows, hooks.pop_records(), self.strategy)
                losses[rows], ntok[rows] = l_k.detach().float(), n_k
        return cap

    def weighted_gradient(self, model: nn.Module, batch: dict, weights: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k g_k / sum_k w_k``: the gradient of ``sum_k (w_k / sum w) l_k`` (one backward
        per length bucket), over the samples with a non-zero weight only."""
        check_batch(batch)
        wn = normalise_weights(weights, batch["input_ids"].shape[0]).to(batch["input_ids"].device)
        nonzero = (wn > 0).nonzero().flatten()
        batch = select_rows(batch, nonzero)
        wn = wn[nonzero]
        _check_rows(batch)
        params = trainable_parameters(model)
        out = torch.zeros(sum(p.numel() for p in params), dtype=torch.float32, device=wn.device)
        with scoring_mode(model):
            for rows in length_buckets(batch["attention_mask"].sum(1), self.bucket_slack):
                l_k, _ = forward_losses(model, trim_padding(select_rows(batch, rows)))
                grads = torch.autograd.grad((wn[rows] * l_k).sum(), params, allow_unused=True)
                out += torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                        for g, p in zip(grads, params)
                    ]
                )
        return out
