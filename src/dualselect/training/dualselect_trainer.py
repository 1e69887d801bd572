"""DualSelect's trainer: coupled reference/task selection with gradient correction (spec: docs/method.md).

Per optimiser step, after ``W`` warm-up SFT steps whose gradients sum to the first task direction u:

* lazily (per epoch, every N steps, or when the task direction has turned by more than an angle)
  refresh the references: score every reference i (or a random capped subset) by
  ``s_i = mu_ref * l_i + nu * c_i`` with ``c_i = -cos(g_i, u)``, keep K_ref (hard top-K, or soft
  ``softmax(s / tau_ref)`` then top-K), and set ``r = sum_i w_i g_i / sum_i w_i``;
* filter the task mini-batch: ``t_j = mu_task * l_j - nu * cos(g_j, r)``, keep whole samples with
  the lowest scores (K_task, or a share of the batch's supervised tokens), ``d = sum_j w_j g_j``;
* update with ``correct(d, r)``: ``d + eta * r`` (release), or PCGrad-style variants;
* at the next refresh, u is the mean of the period's d's.

The per-sample quantities come from one batched forward/backward (``engine="fast"``) or from the
release's per-example loop (``engine="oracle"``); both give the same numbers.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from dualselect.data.encoding import collate, length_bucketed_order
from dualselect.gradients import (
    flat_grad,
    make_engine,
    num_trainable,
    pool_losses,
    score_pool,
    trainable_parameters,
)
from dualselect.gradients.flat import split_flat
from dualselect.selection import (
    Selection,
    correct,
    objective_sign,
    objective_slopes,
    objective_values,
    prefilter_by_loss,
    prefilter_is_exact,
    reference_scores,
    resolve_k,
    select_by_token_budget,
    select_top,
    task_scores,
)
from dualselect.selection.baselines import baseline_selection
from dualselect.selection.diagnostics import overlap, random_overlap_null
from dualselect.training.data import EncodedDataset, load_reference_dataset, resolve_helpful_data
from dualselect.training.distributed import (
    all_reduce_sum,
    gather_cat,
    gathered_pool_scores,
    rank_world,
    refuse_distributed,
)
from dualselect.training.dualselect_config import (
    HELPFUL_POOL,
    DualSelectConfig,
    PoolSpec,
    parse_reference_pools,
    warn_if_selection_is_a_no_op,
)
from dualselect.training.sft import MODEL_INPUTS, SFTTrainer


class DualSelectTrainer(SFTTrainer):
    """Standard SFT trainer whose training step selects references and task samples."""

    def __init__(
        self, *args: Any, reference_dataset: Any = None, helpful_dataset: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cfg: DualSelectConfig = self.args
        refuse_distributed(self, "DualSelectTrainer")
        self._is_main = self.args.process_index == 0  # the selection log is written once
        # the reference pools: name -> (encoded pool, weight lambda_p, own K or None)
        self.reference_pools: dict[str, tuple[EncodedDataset, float, int | None]] = {}
        if isinstance(reference_dataset, dict):
            specs = [PoolSpec(str(name), src) for name, src in reference_dataset.items()]
            if cfg.reference_pools is not None:  # weights and K by position, from the config
                conf = parse_reference_pools(cfg.reference_pools)
                if len(conf) != len(specs):
                    raise ValueError(
                        f"reference_dataset has {len(specs)} pools, reference_pools {len(conf)}: "
                        "give one entry per pool, in the same order"
                    )
                specs = [PoolSpec(p.name, p.source, c.weight, c.k) for p, c in zip(specs, conf)]
        elif cfg.reference_pools is not None and reference_dataset is None:
            specs = parse_reference_pools(cfg.reference_pools)
        else:
            specs = [PoolSpec("reference", reference_dataset)]
        for spec in specs:
            if len(specs) == 1 and spec.name == "reference":
                ds = load_reference_dataset(self, cfg, spec.source)
            else:
                ds = load_reference_dataset(self, cfg, spec.source, name=f"reference_{spec.name}")
            self.reference_pools[spec.name] = (ds, spec.weight, spec.k)
        # the first pool: what single-pool code (pool warnings, category baselines) reads
        self.reference_dataset = next(iter(self.reference_pools.values()))[0]
        if len(self.reference_pools) > 1:  # one pool: run.pool_warnings says it
            for name, (ds, _, k_pool) in self.reference_pools.items():
                k = self._requested_k(k_pool)
                scored = min(len(ds), cfg.ref_pool_cap or len(ds))
                if k is not None and k > scored:
                    warnings.warn(
                        f"reference pool {name!r}: K={k} > its {scored} scored references: clipped to "
                        f"{scored}, every scored reference is selected",
                        stacklevel=2,
                    )
        # two-sided selection: the helpfulness pool, read only when it has weight
        self.helpful_pool: EncodedDataset | None = None
        if cfg.helpful_weight > 0:
            self.helpful_pool = load_reference_dataset(
                self,
                cfg,
                helpful_dataset if helpful_dataset is not None else resolve_helpful_data(cfg),
                name="helpful",
            )
        if cfg.engine == "fast":
            self.engine = make_engine("fast", bucket_slack=cfg.resolved_bucket_slack(cfg.device))
        else:
            self.engine = make_engine(cfg.engine)
        warn_if_selection_is_a_no_op(cfg, len(self.train_dataset) if self.train_dataset is not None else None)
        self._u_sum: torch.Tensor | None = None  # sum of warm-up gradients, then of the period's d
        self._u: torch.Tensor | None = None  # task direction used at the last refresh
        self._r: torch.Tensor | None = None  # reference direction
        self._r_help: torch.Tensor | None = None  # helpfulness direction r_h (two-sided)
        self._period_steps = 0
        self._refreshes = 0
        self._last_refresh_epoch = -1
        self._last_refresh_step = -1
        self._prev_ref_indices: dict[str, list[int]] | None = None  # per pool
        self._step_batches: list[dict] = []  # the current optimiser step's micro-batches
        self._metrics: list[tuple] = []  # per-step selection statistics since the last log
        self._refresh_overlap: float | None = None
        self.selection_log_path = Path(cfg.output_dir) / "selection_log.jsonl"
        self._log_fh = None
        self._resume_step: int | None = None

    # ------------------------------------------------------------------------------ the step

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Keep the optimiser step's micro-batches: selection runs over all of them at once."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._step_batches = batches
        return batches, num_items

    def _grad_scale(self) -> float:
        """The fp16 GradScaler's current loss scale (1 without one): ``.grad`` holds scaled values."""
        scaler = getattr(self.accelerator, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0

    def step_phase(self) -> str:
        """``"warmup"`` (plain SFT steps whose gradients sum to u) or ``"selection"``."""
        return "warmup" if self.state.global_step < self.args.selection_warmup_steps else "selection"

    def training_step(self, model, inputs, num_items_in_batch=None):
        cfg: DualSelectConfig = self.args
        step = self.state.global_step
        if step < cfg.selection_warmup_steps:
            # 1. Warm-up: a plain SFT step; the sum of the warm-up gradients is the first u.
            before = flat_grad(model)  # .grad may already hold earlier accumulation micro-batches
            loss = super().training_step(model, inputs, num_items_in_batch)
            g = (flat_grad(model) - before) / self._grad_scale()  # unscaled under fp16
            self._u_sum = g.clone() if self._u_sum is None else self._u_sum + g
            return loss
        micro = self._step_batches if any(b is inputs for b in self._step_batches) else [inputs]
        if micro[0] is not inputs:
            # Later micro-batches of an accumulation cycle were selected from (and their
            # gradient applied) with the first one: selection covers the optimiser step's batch.
            return torch.zeros((), device=self.args.device)
        return self._selection_step(model, micro)

    def _to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.args.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def _selection_step(self, model, micro: list[dict]) -> torch.Tensor:
        """Steps 2-4 on the optimiser step's whole batch (every accumulation micro-batch)."""
        cfg: DualSelectConfig = self.args
        step = self.state.global_step
        if self._needs_refresh():
            with self.phase_times.timed("refresh"):
                self._refresh(model)
        # 3. Task filtering: one batched forward/backward per micro-batch (fast engine), under the
        # training autocast; then ONE selection over all samples of the step.
        core = self.accelerator.unwrap_model(model)
        caps = []
        for mb in micro:
            batch = self._to_device({k: mb[k] for k in MODEL_INPUTS})
            with self.compute_loss_context_manager():
                # the task loss is the training objective: HF's label smoothing, per sample (the
                # warm-up steps get it from the Trainer's label smoother)
                eps = cfg.label_smoothing_factor
                kw = {"label_smoothing": eps} if eps else {}  # engines without the option still work
                caps.append(self.engine.capture(core, batch, **kw))
        # several processes: the statistics of every rank's samples, rank-major, so the
        # selection below is global and the same on every rank
        local_n = sum(c.num_samples for c in caps)
        offset0, losses = gather_cat(torch.cat([c.losses for c in caps]))
        _, ntok = gather_cat(torch.cat([c.n_target_tokens for c in caps]))
        _, cos_r = gather_cat(torch.cat([c.cos(self._r) for c in caps]))
        lam = cfg.helpful_weight
        if self._r_help is not None and cfg.helpful_use != "correction":
            # two-sided: compatibility with both pools, each by its own cosine (scale-free)
            _, cos_h = gather_cat(torch.cat([c.cos(self._r_help) for c in caps]))
            cos_r = (cos_r + lam * cos_h) / (1 + lam)
        t = task_scores(losses, cos_r, cfg.mu_task, cfg.nu)
        n = t.numel()
        if not cfg.task_filter:
            keep = torch.arange(n, device=t.device)
            w_keep = torch.full((n,), 1.0 / n, dtype=losses.dtype, device=t.device)
        elif cfg.task_token_fraction is not None:
            sel = select_by_token_budget(
                t,
                ntok,
                cfg.task_token_fraction,
                mode=cfg.task_mode,
                tau=cfg.tau_task,
                rule=cfg.task_token_rule,
            )
            keep, w_keep = sel.indices, sel.weights
        else:
            sel = select_top(t, mode=cfg.task_mode, k=cfg.k_task, tau=cfg.tau_task, largest=False)
            keep, w_keep = sel.indices, sel.weights
        w = torch.zeros(n, dtype=losses.dtype, device=losses.device)
        w[keep] = w_keep.to(w.dtype)
        # d = sum_j w_j g_j (w sums to 1 over the step): each micro-batch (of each rank) adds its
        # share; the ranks' parts are summed
        d = torch.zeros(num_trainable(core), dtype=torch.float32, device=self.args.device)
        offset = offset0
        for cap in caps:
            wm = w[offset : offset + cap.num_samples]
            offset += cap.num_samples
            share = float(wm.sum())
            if share > 0:
                d += cap.weighted_sum(wm) * share
            cap.release()
        d = all_reduce_sum(d)
        # 4. Gradient correction, handed to the Trainer's backward (GradScaler, then clip + AdamW).
        r_corr = self._r
        if self._r_help is not None and cfg.helpful_use != "filter":
            r_corr = (self._r + lam * self._r_help) / (1 + lam)
        g = correct(d, r_corr, eta=cfg.eta, mode=cfg.correction)
        self._backward_flat(model, g)
        self._u_sum = d.clone() if self._u_sum is None else self._u_sum + d
        self._period_steps += 1
        kept_tokens = int(ntok[keep].sum())
        local = (keep >= offset0) & (keep < offset0 + local_n)
        self.supervised_tokens += int(ntok[keep[local]].sum())  # summed over ranks in log.json
        kept_share = kept_tokens / max(1, int(ntok.sum()))
        cos_d_r = _cos(d, self._r)
        kept_loss = float((w * losses).sum())
        # the loss every method logs: token-mean NLL over the whole batch (Standard SFT's loss)
        batch_loss = float((losses * ntok).sum() / ntok.sum().clamp_min(1))
        self._metrics.append((kept_share, cos_d_r, kept_loss, len(keep) / n))
        if cfg.log_selection_steps:
            idx = (
                gather_cat(torch.cat([torch.as_tensor(mb["index"]) for mb in micro]))[1].tolist()
                if all("index" in mb for mb in micro)
                else list(range(n))
            )
            self._log(
                {
                    "event": "step",
                    "step": step,
                    "task_indices": [idx[i] for i in keep.tolist()],
                    "batch_indices": idx,
                    "weights": w_keep.tolist(),
                    "scores": t.tolist(),
                    "losses": losses.tolist(),
                    "cos_r": cos_r.tolist(),
                    "kept_token_share": kept_share,
                    "cos_d_r": cos_d_r,
                    "kept_loss": kept_loss,
                    "batch_loss": batch_loss,
                }
            )
        return torch.tensor(batch_loss, device=self.args.device)

    def _backward_flat(self, model, g: torch.Tensor) -> None:
        """Put the flat gradient ``g`` into ``.grad`` through ``accelerator.backward`` of the linear
        surrogate ``sum_p <p, g_p>`` (its gradient is exactly ``g``): the fp16 GradScaler scales it
        like any loss (and unscales it before clipping), instead of dividing a raw write. Under DDP
        ``g`` is already the same on every rank (all-reduced) and the surrogate does not pass
        through DDP's forward, so no second reduction happens."""
        params = trainable_parameters(self.accelerator.unwrap_model(model))
        ga = getattr(self.accelerator, "gradient_accumulation_steps", 1)  # accelerate divides by it
        surrogate = sum((p * gp.to(p.dtype)).sum() for p, gp in split_flat(params, g.detach())) * ga
        self.accelerator.backward(surrogate)

    # ------------------------------------------------------------------------------ refresh

    def _needs_refresh(self) -> bool:
        cfg: DualSelectConfig = self.args
        if self._r is None:
            return True
        if not cfg.reference_refresh:
            return False
        if cfg.refresh == "epoch":
            return int(self.state.epoch or 0) > self._last_refresh_epoch
        if cfg.refresh == "steps":
            return self.state.global_step - self._last_refresh_step >= cfg.refresh_steps
        # "angle": has the running task direction turned away from u?
        if self._period_steps == 0 or self._u is None:
            return False
        return math.degrees(math.acos(max(-1.0, min(1.0, _cos(self._u_sum, self._u))))) > cfg.refresh_angle

    def _refresh(self, model) -> None:
        """2. For every reference pool p: score the (capped) pool against u, select its K_p
        references, compute its direction r_p; then r = sum_p lambda_p r_p / sum_p lambda_p (one
        pool: r = r_1, the spec's r). Selection is per pool, never across pools: the pools' losses
        live on different scales (a refusal vs. an arithmetic answer), so one top-K over their
        union would give every slot to the pool with the largest losses."""
        cfg: DualSelectConfig = self.args
        u = self._u_sum / max(1, self._period_steps) if self._period_steps else self._u_sum
        core = self.accelerator.unwrap_model(model)  # scoring bypasses DDP's gradient hooks
        r = torch.zeros(num_trainable(core), dtype=torch.float32, device=self.args.device)
        total_weight = 0.0
        chosen_by_pool: dict[str, list[int]] = {}
        overlaps: list[float] = []
        rows = []
        for p, (name, (ds, weight, k_pool)) in enumerate(self.reference_pools.items()):
            # the first pool's stream is the single-pool trainer's; the others get their own
            g = torch.Generator().manual_seed(cfg.seed + 7919 * self._refreshes + 104729 * p)
            r_p, row = self._refresh_pool(core, ds, k_pool, u, g)
            r += weight * r_p
            total_weight += weight
            chosen = row["indices"]
            prev = (self._prev_ref_indices or {}).get(name)
            ov = overlap(prev, chosen) if prev is not None else None
            row["summary"]["overlap_with_previous"] = ov
            row["summary"]["overlap_random_null"] = (
                random_overlap_null(row["k_ref"], row["scored"]) if ov is not None else None
            )
            if ov is not None:
                overlaps.append(ov)
            chosen_by_pool[name] = chosen
            rows.append((name, weight, r_p, row))
        self._r = r / total_weight
        self._u = u
        if self.helpful_pool is not None:
            # two-sided: the helpfulness pool is selected like a safety pool, on its own stream;
            # the refusal objectives rank and descend o(NLL(refusal)) (selection/objectives.py)
            g = torch.Generator().manual_seed(
                cfg.seed + 7919 * self._refreshes + 104729 * len(self.reference_pools)
            )
            self._r_help, row = self._refresh_pool(
                core, self.helpful_pool, cfg.helpful_k, u, g, objective=cfg.helpful_objective
            )
            prev = (self._prev_ref_indices or {}).get(HELPFUL_POOL)
            row["summary"]["overlap_with_previous"] = overlap(prev, row["indices"]) if prev else None
            row["summary"]["cos_u_r_pool"] = _cos(u, self._r_help)
            row["summary"]["cos_r_r_help"] = _cos(self._r, self._r_help)
            row["objective"] = cfg.helpful_objective
            chosen_by_pool[HELPFUL_POOL] = row["indices"]
            rows.append((HELPFUL_POOL, cfg.helpful_weight, self._r_help, row))
        for name, weight, r_p, row in rows:
            row["summary"]["cos_u_r"] = _cos(u, self._r)
            if len(self.reference_pools) > 1 and name != HELPFUL_POOL:
                row["summary"]["cos_u_r_pool"] = _cos(u, r_p)
            self._log(
                {
                    "event": "refresh",
                    "step": self.state.global_step,
                    "epoch": self.state.epoch,
                    "refresh": self._refreshes,
                    "pool": name,
                    "pool_weight": weight,
                    **row,
                }
            )
        self._prev_ref_indices = chosen_by_pool
        self._refresh_overlap = sum(overlaps) / len(overlaps) if overlaps else None
        self._refreshes += 1
        self._last_refresh_epoch = int(self.state.epoch or 0)
        self._last_refresh_step = self.state.global_step
        self._u_sum = None
        self._period_steps = 0

    def _refresh_pool(
        self,
        core,
        ds: EncodedDataset,
        k_pool: int | None,
        u: torch.Tensor,
        g: torch.Generator,
        objective: str = "preserve",
    ) -> tuple[torch.Tensor, dict]:
        """One pool's refresh: (r_p = sum_i w_i grad o_i / sum_i w_i over its chosen references,
        the log row without the overlap fields). The pool's ``objective`` o(l_i)
        (:mod:`dualselect.selection.objectives`; ``preserve``: o = l, the spec's refresh) is what
        the scores rank (``mu_ref o_i - nu cos(grad o_i, u)``) and ``r_p`` descends, with
        ``grad o_i = o'(l_i) g_i``."""
        cfg: DualSelectConfig = self.args
        sign = objective_sign(objective)
        pool = len(ds)
        subset = list(range(pool))
        if cfg.ref_pool_cap is not None and cfg.ref_pool_cap < pool:
            subset = sorted(torch.randperm(pool, generator=g)[: cfg.ref_pool_cap].tolist())
        rank, world = rank_world()
        k_req = self._requested_k(k_pool)
        k = resolve_k(k_req, cfg.k_ref_fraction if k_req is None else None, len(subset))
        m = cfg.refresh_prefilter
        prefilter: dict | None = None
        candidates = subset
        if m is not None and cfg.ref_selector == "score" and m < len(subset):
            # two-stage refresh: forward-only losses of the whole (capped) pool, then per-sample
            # gradients for the top-M by (signed) loss only (docs/method.md, refresh options)
            if m < k:
                raise ValueError(f"refresh_prefilter={m} < K={k} references to select: must be >= K")
            with self.compute_loss_context_manager():
                part = pool_losses(core, self._pool_batches(subset[rank::world], g, ds), self.engine_slack())
            _, all_idx = gather_cat(part.indices)
            _, all_loss = gather_cat(part.losses)
            order = torch.sort(all_idx, stable=True).indices  # pool order
            all_idx, all_loss = all_idx[order], all_loss[order]
            all_obj = objective_values(all_loss, objective)  # o is monotone in l: same candidates
            cand_pos = prefilter_by_loss(all_obj, m, cfg.mu_ref)
            candidates = all_idx[cand_pos].tolist()
            outside = torch.ones(all_idx.numel(), dtype=torch.bool)
            outside[cand_pos] = False
            prefilter = {"m": m, "all_losses": all_loss, "outside_losses": all_obj[outside]}
        with self.compute_loss_context_manager():  # scoring under the training autocast
            # several processes: each scores every world-th reference, then all gather
            scores = score_pool(self.engine, core, self._pool_batches(candidates[rank::world], g, ds), u)
        scores = gathered_pool_scores(scores)  # in pool order: independent of the batching
        # conflict is -cos(grad o_i, u) = -sign * cos(g_i, u): o' has one sign per objective
        # (sign 1.0 leaves every bit of the spec's scores as they were)
        s = reference_scores(
            objective_values(scores.losses, objective), sign * scores.cos, cfg.mu_ref, cfg.nu
        )
        if cfg.ref_selector == "score":
            sel = select_top(s, mode=cfg.ref_mode, k=k, tau=cfg.tau_ref, largest=True)
        else:
            sel = self._baseline_selection(scores.indices, k, g, ds)
        chosen = scores.indices[sel.indices].tolist()  # pool positions
        weights = dict(zip(chosen, sel.weights.tolist()))
        # |o'(l_i)| of the chosen (1 for preserve and refusal_penalty); its sign is applied to r_p
        slope = dict(zip(chosen, objective_slopes(scores.losses[sel.indices], objective).abs().tolist()))
        # r_p = sum_i w_i grad o_i / sum_i w_i, one weighted pass over the chosen references.
        # Several processes: each takes every world-th chosen reference; sums are all-reduced.
        r = torch.zeros(num_trainable(core), dtype=torch.float32, device=self.args.device)
        total = torch.zeros((), dtype=torch.float64, device=self.args.device)
        for batch in self._pool_batches(sorted(chosen)[rank::world], g, ds, shuffle=False):
            ib = batch["index"].tolist()
            wb = torch.tensor([weights[i] for i in ib], device=self.args.device)
            wo = wb * torch.tensor([slope[i] for i in ib], device=wb.device)  # w_i |o'(l_i)|
            if float(wo.sum()) > 0:  # the unlikelihood's o' underflows to 0 for l_i >~ 100
                with self.compute_loss_context_manager():
                    r += self.engine.weighted_gradient(core, batch, wo) * float(wo.sum())
            total += wb.sum().double()
        r_p = sign * (all_reduce_sum(r) / float(all_reduce_sum(total)))
        row = {
            "pool_size": pool,
            "scored": len(subset),
            "k_ref": k,
            "indices": chosen,
            "weights": [weights[i] for i in chosen],
            "scores": s[sel.indices].tolist(),
            "losses": scores.losses[sel.indices].tolist(),
            "cos_u": scores.cos[sel.indices].tolist(),
            "summary": {
                "mean_selected_loss": float(scores.losses[sel.indices].mean()),
                "mean_selected_cos_u": float(scores.cos[sel.indices].mean()),
                "mean_pool_loss": float(scores.losses.mean()),
                "mean_pool_cos_u": float(scores.cos.mean()),
            },
        }
        if prefilter is not None:
            # mean_pool_* above are over the M candidates; the forward pass gives every l_i
            row["prefilter"] = prefilter["m"]
            row["summary"]["mean_pool_loss"] = float(prefilter["all_losses"].mean())
            row["summary"]["mean_candidate_loss"] = float(scores.losses.mean())
            row["summary"]["mean_pool_cos_u"] = None  # not computed outside the candidates
            row["summary"]["mean_candidate_cos_u"] = float(scores.cos.mean())
            row["summary"]["prefilter_exact"] = prefilter_is_exact(
                s[sel.indices], prefilter["outside_losses"], cfg.mu_ref, cfg.nu
            )
        return r_p, row

    def engine_slack(self) -> float | None:
        """The fast engine's length-bucket slack (the forward-only pass buckets rows the same way,
        so its losses are the scoring pass's); 0 for the oracle, which runs unpadded rows (slack 0
        groups rows of equal length only: no padding either)."""
        return getattr(self.engine, "bucket_slack", 0.0)

    def _requested_k(self, k_pool: int | None) -> int | None:
        """K asked of a pool before clipping to what it scores: its own K, else ``k_ref``; None
        when ``k_ref_fraction`` applies instead."""
        cfg: DualSelectConfig = self.args
        if k_pool is not None:
            return k_pool
        return cfg.k_ref if cfg.k_ref_fraction is None else None

    def _baseline_selection(
        self, pool_indices: torch.Tensor, k: int, g: torch.Generator, ds: EncodedDataset
    ) -> Selection:
        """Reference choices of the baselines (:func:`dualselect.selection.baselines.baseline_selection`)."""
        cfg: DualSelectConfig = self.args
        categories = None
        if cfg.ref_selector == "category_uniform":  # each scored reference's category, from its record
            if ds.records is None:
                raise ValueError("ref_selector='category_uniform' needs reference records with a category")
            categories = []
            for i in pool_indices.tolist():
                meta = ds.records[i].meta
                cat = meta.get("category") or meta.get("harm_category")
                if cat is None:
                    raise ValueError(
                        f"reference {ds.records[i].source or i}: no 'category' field "
                        "(needed by ref_selector='category_uniform')"
                    )
                categories.append(str(cat))
        return baseline_selection(cfg.ref_selector, pool_indices.numel(), k, g, categories)

    def _pool_batches(self, subset: list[int], g: torch.Generator, ds: EncodedDataset, shuffle: bool = True):
        lengths = [len(ds[i]["input_ids"]) for i in subset]
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        for order in length_bucketed_order(lengths, self.args.score_batch_size, seed=seed, shuffle=shuffle):
            batch = collate([ds[subset[j]] for j in order], pad_token_id=self.processing_class.pad_token_id)
            yield self._to_device(batch)

    # ------------------------------------------------------------------------------ resume

    _VECTORS = ("_u_sum", "_u", "_r", "_r_help")
    _SCALARS = (
        "_period_steps",
        "_refreshes",
        "_last_refresh_epoch",
        "_last_refresh_step",
        "_prev_ref_indices",
        "_refresh_overlap",
    )

    def method_state(self) -> dict[str, Any]:
        """u (running sum), the u of the last refresh, r, the period and refresh counters (the
        refresh RNG is seeded from ``seed`` and the refresh counter, so they restore it too)."""
        state = super().method_state()
        for name in self._VECTORS:
            v = getattr(self, name)
            state[name] = None if v is None else v.detach().cpu()
        state.update({name: getattr(self, name) for name in self._SCALARS})
        state["global_step"] = self.state.global_step
        return state

    def load_method_state(self, state: dict[str, Any]) -> None:
        super().load_method_state(state)
        device = self.args.device
        for name in self._VECTORS:  # .get: checkpoints from before the helpfulness pool
            setattr(self, name, None if state.get(name) is None else state[name].to(device))
        for name in self._SCALARS:
            setattr(self, name, state[name])
        if isinstance(self._prev_ref_indices, list):  # a checkpoint of the single-pool trainer
            self._prev_ref_indices = {next(iter(self.reference_pools)): self._prev_ref_indices}
        self._resume_step = int(state["global_step"])

    # ------------------------------------------------------------------------------ logging

    def _log(self, row: dict) -> None:
        import json

        if not self._is_main:
            return
        if self._log_fh is None:
            path = self.selection_log_path
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = "w"
            if self._resume_step is not None and path.exists():
                # resumed: keep the rows of the steps before the checkpoint (a killed run may have
                # logged steps after it, which are run again now), then append
                with path.open(encoding="utf-8") as fh:
                    rows = [
                        line for line in fh if line.strip() and json.loads(line)["step"] < self._resume_step
                    ]
                tmp = path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(rows), encoding="utf-8")
                os.replace(tmp, path)
                mode = "a"
            self._log_fh = open(path, mode, encoding="utf-8")  # noqa: SIM115

        self._log_fh.write(json.dumps(row) + "\n")
        self._log_fh.flush()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the selection statistics since the last log to the Trainer's training logs, so
        TensorBoard / W&B / log_history get them: ``selection/kept_token_share``, ``kept_sample_share``,
        ``cos_d_r``, ``kept_loss`` (the weighted loss of the kept samples; ``loss`` itself is the
        token-mean over the whole batch, comparable with every other method), and
        ``selection/refresh_overlap`` (with the previous refresh's references)."""
        if "loss" in logs and self._metrics:
            cols = list(zip(*self._metrics))
            for name, vals in zip(("kept_token_share", "cos_d_r", "kept_loss", "kept_sample_share"), cols):
                logs[f"selection/{name}"] = round(sum(vals) / len(vals), 6)
            self._metrics = []
            if self._refresh_overlap is not None:
                logs["selection/refresh_overlap"] = self._refresh_overlap
        super().log(logs, start_time)

    def train(self, *args: Any, **kwargs: Any):
        try:
            return super().train(*args, **kwargs)
        finally:
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12))
