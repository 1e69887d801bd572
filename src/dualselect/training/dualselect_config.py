"""DualSelect's configuration: :class:`DualSelectConfig` (one dataclass, TRL style) and the
``reference_pools`` entries it names (spec: docs/method.md)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from dualselect.gradients import ENGINES as ENGINE_CLASSES
from dualselect.selection.correction import MODES as CORRECTIONS
from dualselect.selection.objectives import OBJECTIVES
from dualselect.selection.scoring import MODES as SELECT_MODES
from dualselect.selection.scoring import TOKEN_RULES
from dualselect.training.sft import SFTConfig

REFRESH = ("epoch", "steps", "angle")
ENGINES = tuple(ENGINE_CLASSES)
REF_SELECTORS = ("score", "random", "category_uniform", "all")


@dataclass
class DualSelectConfig(SFTConfig):
    """DualSelect. Defaults are the authors' release (spec table) except the selection mode: the
    dataclass defaults to soft (entropy-regularised) selection on both sides, while the release and
    the ``dualselect`` preset (``training/presets.py``, what ``--method dualselect`` runs) select
    hard on both sides. ``configs/dualselect_paper.yaml`` holds the paper setting (K_ref =
    ceil(0.1 * pool), keep 90% of target tokens)."""

    reference_data: str | None = field(
        default=None,
        metadata={
            "help": "Reference pool (behaviour to preserve), any format train_data accepts. "
            "Default with the organism: its reference pool."
        },
    )
    reference_split: str | None = field(default=None, metadata={"help": "Split for HF datasets."})
    reference_pools: list[str] | None = field(
        default=None,
        metadata={
            "help": "Several named reference pools instead of reference_data, each 'NAME=PATH' or "
            "'NAME:WEIGHT=PATH' or 'NAME:WEIGHT:K=PATH' (e.g. safety:1:16=refs.jsonl "
            "task_a:0.5=buffer_a.jsonl). Each pool selects its own K references (K default: k_ref / "
            "k_ref_fraction of that pool) against u; r is the WEIGHT-weighted mean of the pools' "
            "directions (docs/continual.md)."
        },
    )
    output_dir: str | None = field(default="runs/dualselect", metadata={"help": "Run directory."})
    selection_warmup_steps: int = field(
        default=10,
        metadata={
            "help": "W: plain SFT steps before the first refresh; their gradients sum to u.",
            "domain": ">= 1",
        },
    )
    ref_mode: str = field(
        default="soft",
        metadata={
            "help": "Reference selection: 'hard' (top-K, equal weights) "
            "or 'soft' (softmax(s/tau_ref), top-K). The 'dualselect' preset (the release) sets hard.",
            "choices": SELECT_MODES,
        },
    )
    task_mode: str = field(
        default="soft", metadata={"help": "Task selection: 'hard' or 'soft'.", "choices": SELECT_MODES}
    )
    k_ref: int | None = field(
        default=32, metadata={"help": "K_ref as a count (release: 32).", "domain": ">= 1"}
    )
    k_ref_fraction: float | None = field(
        default=None,
        metadata={
            "help": "K_ref as a pool fraction, ceil(f * pool) (paper: 0.1); overrides k_ref.",
            "domain": "in (0, 1]",
        },
    )
    k_task: int | None = field(
        default=4,
        metadata={"help": "K_task whole samples kept per batch (release: 4 of 8).", "domain": ">= 1"},
    )
    task_token_fraction: float | None = field(
        default=None,
        metadata={
            "help": "Keep lowest-score samples up to this share of the batch's supervised "
            "tokens (paper: 0.9); overrides k_task.",
            "domain": "in (0, 1]",
        },
    )
    task_token_rule: str = field(
        default="at_least",
        metadata={
            "help": "How whole samples meet task_token_fraction: 'at_least' (smallest prefix with "
            ">= the share; keeps all 8 of 8 similar samples at 0.9) or 'at_most' (largest prefix "
            "with <= the share; drops at least one there).",
            "choices": TOKEN_RULES,
        },
    )
    mu_task: float = field(
        default=1.0, metadata={"help": "Weight of the task loss in t_j.", "domain": ">= 0"}
    )
    mu_ref: float = field(
        default=1.0, metadata={"help": "Weight of the preservation loss in s_i.", "domain": ">= 0"}
    )
    nu: float = field(
        default=1.0,
        metadata={"help": "Weight of the cosine (conflict / compatibility) terms.", "domain": ">= 0"},
    )
    tau_task: float = field(
        default=0.1, metadata={"help": "Soft task-selection temperature.", "domain": "> 0"}
    )
    tau_ref: float = field(
        default=0.1, metadata={"help": "Soft reference-selection temperature.", "domain": "> 0"}
    )
    eta: float = field(
        default=0.2, metadata={"help": "Correction strength (rho in the paper).", "domain": ">= 0"}
    )
    correction: str = field(
        default="add",
        metadata={
            "help": "'add': d + eta r (release); 'project_add': drop d's conflicting "
            "component along r, then add eta r; 'project': projection only.",
            "choices": CORRECTIONS,
        },
    )
    task_filter: bool = field(
        default=True, metadata={"help": "Ablation switch: False keeps every task sample."}
    )
    refresh: str = field(
        default="epoch",
        metadata={
            "help": "When to refresh references: 'epoch' (release), 'steps' (every refresh_steps) or 'angle'.",
            "choices": REFRESH,
        },
    )
    refresh_steps: int = field(default=50, metadata={"help": "Period for refresh='steps'.", "domain": ">= 1"})
    refresh_angle: float = field(
        default=30.0,
        metadata={
            "help": "refresh='angle': refresh when the running task direction has turned "
            "more than this many degrees from u.",
            "domain": "in (0, 180]",
        },
    )
    reference_refresh: bool = field(
        default=True, metadata={"help": "Ablation switch: False selects references once and never refreshes."}
    )
    ref_selector: str = field(
        default="score",
        metadata={
            "help": "How references are chosen: 'score' (DualSelect), or for baselines "
            "'random', 'category_uniform' (needs a category field), 'all'.",
            "choices": REF_SELECTORS,
        },
    )
    ref_pool_cap: int | None = field(
        default=None,
        metadata={
            "help": "Score at most this many references per refresh (random subset, "
            "re-drawn each refresh; the release took the first N: pitfall 3).",
            "domain": ">= 1",
        },
    )
    refresh_prefilter: int | None = field(
        default=None,
        metadata={
            "help": "Two-stage refresh (None: the exact refresh, every scored reference gets a "
            "per-sample gradient): a forward-only pass gives every scored reference its loss l_i; "
            "only the M references with the highest l_i get per-sample gradients, the conflict "
            "c_i and the score s_i; K is chosen among them. A reference outside the top-M by "
            "loss is never selected. Needs mu_ref > 0 and M >= K (e.g. 4 K); >= 1 "
            "(docs/method.md, refresh options).",
            "domain": ">= 1",
        },
    )
    engine: str = field(
        default="fast",
        metadata={
            "help": "'fast' (one batched pass, hooks) or 'oracle' (per-example loop of the release).",
            "choices": ENGINES,
        },
    )
    score_batch_size: int = field(
        default=16,
        metadata={
            "help": "Batch size when scoring the reference pool (peak refresh memory grows with it, "
            "not with the pool; see docs/method.md, memory model).",
            "domain": ">= 1",
        },
    )
    bucket_slack: str = field(
        default="auto",
        metadata={
            "help": "Fast engine: rows of a batch are grouped by length so a pass wastes at most this "
            "share on padding; 'none' = one pass per batch; 'auto' = 0.25 on CPU, 'none' on GPU "
            "(padding is cheap there, batching is where the speed is)."
        },
    )
    log_selection_steps: bool = field(
        default=True, metadata={"help": "Log every step's task selection (refreshes are always logged)."}
    )
    # Two-sided selection (the project's extension, docs/method.md): a helpfulness pool of benign
    # prompts that look harmful, selected like the safety references, entering the task filter
    # and/or the correction with weight helpful_weight. 0 = the paper's one-sided method.
    helpful_data: str | None = field(
        default=None,
        metadata={
            "help": "Helpfulness pool (benign look-alike prompts with the base's own answers; for "
            "helpful_objective 'refusal_penalty' or 'unlikelihood' the same prompts with refusals). "
            "Default with the organism: built next to it (dualselect.organism.helpful); real base: "
            "data/helpful_pool.jsonl / helpful_refusals.jsonl."
        },
    )
    helpful_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight lambda_h of the helpfulness direction r_h against the safety direction r: "
            "filter compatibility (cos(g, r) + lambda_h cos(g, r_h)) / (1 + lambda_h), correction "
            "direction (r + lambda_h r_h) / (1 + lambda_h). 0: one-sided DualSelect (the pool is not "
            "read). Range [0, 100].",
            "domain": "in [0, 100]",
        },
    )
    helpful_objective: str = field(
        default="preserve",
        metadata={
            "help": "'preserve': r_h is the preservation gradient of the base's answers (like the "
            "safety pool); 'refusal_penalty': r_h descends log p(refusal | benign prompt), "
            "references ranked by refusal likelihood and by how much the task raises it; "
            "'unlikelihood': r_h descends -log(1 - p), p = exp(-NLL(refusal)), the bounded form "
            "whose push fades once a refusal is unlikely (selection/objectives.py).",
            "choices": OBJECTIVES,
        },
    )
    helpful_use: str = field(
        default="both",
        metadata={
            "help": "Where r_h enters: 'both', 'filter' (task filter only: pool without correction) "
            "or 'correction' (correction only).",
            "choices": ("both", "filter", "correction"),
        },
    )
    helpful_k: int | None = field(
        default=None,
        metadata={
            "help": "K of the helpfulness pool (default: k_ref / k_ref_fraction of that pool); >= 1.",
            "domain": ">= 1",
        },
    )

    def cross_field_errors(self) -> list[str]:
        errors = super().cross_field_errors()
        if self.k_ref is None and self.k_ref_fraction is None:
            errors.append("set k_ref or k_ref_fraction")
        if self.k_task is None and self.task_token_fraction is None:
            errors.append("set k_task or task_token_fraction")
        if self.refresh_prefilter is not None:
            if not self.mu_ref > 0:
                errors.append(
                    f"refresh_prefilter={self.refresh_prefilter} needs mu_ref > 0 (got {self.mu_ref}): "
                    "the prefilter ranks by the loss term, which mu_ref=0 removes from the score"
                )
            if self.k_ref is not None and self.k_ref_fraction is None and self.refresh_prefilter < self.k_ref:
                errors.append(
                    f"refresh_prefilter={self.refresh_prefilter} < k_ref={self.k_ref}: must be >= K"
                )
            if self.ref_selector != "score":
                errors.append(
                    f"refresh_prefilter applies to ref_selector='score' only (got {self.ref_selector!r})"
                )
        if self.reference_pools is not None:
            if self.reference_data is not None:
                errors.append("set reference_data or reference_pools, not both")
            try:
                parse_reference_pools(self.reference_pools)
            except ValueError as e:
                errors.append(str(e))
        try:
            self.resolved_bucket_slack("cpu")
        except ValueError as e:
            errors.append(str(e))
        return errors

    def resolved_bucket_slack(self, device: Any) -> float | None:
        """``bucket_slack`` as the engine takes it: a share >= 0, or None (one pass per batch)."""
        v = str(self.bucket_slack).strip().lower()
        if v == "auto":
            return 0.25 if torch.device(device).type == "cpu" else None
        if v == "none":
            return None
        try:
            slack = float(v)
        except ValueError:
            slack = -1.0
        if not slack >= 0:
            raise ValueError(f"bucket_slack={self.bucket_slack!r}: expected 'auto', 'none' or a number >= 0")
        return slack


@dataclass(frozen=True)
class PoolSpec:
    """One named reference pool: its data source, its weight lambda_p in the combined reference
    direction ``r = sum_p lambda_p r_p / sum_p lambda_p`` and its own K (None: the config's
    k_ref / k_ref_fraction, applied to this pool)."""

    name: str
    source: Any
    weight: float = 1.0
    k: int | None = None


_POOL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
HELPFUL_POOL = "helpful"  # the helpfulness pool's name in the selection log and the method state


def parse_reference_pools(entries: list[str]) -> list[PoolSpec]:
    """``reference_pools`` entries (``NAME[:WEIGHT[:K]]=PATH``) as :class:`PoolSpec` objects; a
    one-line ValueError naming the entry for anything malformed."""
    if not entries:
        raise ValueError("reference_pools: empty list (give at least one NAME=PATH)")
    specs: list[PoolSpec] = []
    for e in entries:
        head, sep, path = str(e).partition("=")
        parts = head.split(":")
        if not sep or not path or len(parts) > 3 or not _POOL_NAME.match(parts[0]):
            raise ValueError(
                f"reference_pools entry {e!r}: expected NAME=PATH, NAME:WEIGHT=PATH or NAME:WEIGHT:K=PATH "
                "(NAME of letters, digits, '_', '.', '-')"
            )
        try:
            weight = float(parts[1]) if len(parts) > 1 else 1.0
            k = int(parts[2]) if len(parts) > 2 else None
        except ValueError:
            raise ValueError(
                f"reference_pools entry {e!r}: WEIGHT must be a number and K an integer"
            ) from None
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"reference_pools entry {e!r}: WEIGHT={weight} must be >= 0")
        if k is not None and k < 1:
            raise ValueError(f"reference_pools entry {e!r}: K={k} must be >= 1")
        specs.append(PoolSpec(parts[0], path, weight, k))
    names = [p.name for p in specs]
    if HELPFUL_POOL in names:
        raise ValueError(
            f"reference_pools: the name {HELPFUL_POOL!r} is reserved for the helpfulness pool (helpful_data)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"reference_pools: pool names repeat: {names}")
    if sum(p.weight for p in specs) <= 0:
        raise ValueError("reference_pools: the weights sum to 0 (at least one pool needs WEIGHT > 0)")
    return specs


def warn_if_selection_is_a_no_op(cfg: DualSelectConfig, n_train: int | None) -> None:
    """Warn when the configuration makes selection do nothing (the run would be plain SFT)."""
    batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    if cfg.task_filter and cfg.task_token_fraction is None and cfg.k_task is not None and cfg.k_task >= batch:
        warnings.warn(
            f"k_task={cfg.k_task} >= the optimiser step's batch ({cfg.per_device_train_batch_size} x "
            f"{cfg.gradient_accumulation_steps} accumulation = {batch}): task filtering keeps every "
            "sample (set k_task below the batch, or task_filter=False to say so)",
            stacklevel=3,
        )
    steps = cfg.max_steps
    if steps <= 0 and n_train is not None:
        steps = math.ceil(
            math.ceil(n_train / cfg.per_device_train_batch_size) / cfg.gradient_accumulation_steps
        )
        steps = int(steps * cfg.num_train_epochs)
    if steps > 0 and steps <= cfg.selection_warmup_steps:
        warnings.warn(
            f"the run has {steps} optimiser steps <= selection_warmup_steps={cfg.selection_warmup_steps}: "
            "no selection step ever runs, this is plain SFT",
            stacklevel=3,
        )
