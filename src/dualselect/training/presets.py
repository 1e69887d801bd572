"""Named methods: each baseline and ablation is a trainer plus config overrides, so every
method shares data, config, logging and budgets. ``dualselect compare`` runs these by name.

``dualselect`` is the authors' public release: ONE selection mode for both sides, hard (top-K) by
default. Every ``ds_*`` ablation starts from it and changes one thing (``ds_soft`` the selection
mode). ``dualselect_paper`` is the paper's setting (token budget, K_ref fraction), with the
paper's entropy-regularised (soft) selection; ``ds_paper_eta_*`` are its eta sweep, from which
``dualselect compare`` picks a value on the validation probes only (``tune`` in its config).
"""

from __future__ import annotations

# The release's selection: one --selection-mode for both sides, default hard.
RELEASE = {"ref_mode": "hard", "task_mode": "hard"}
# The paper's budgets (K_ref = ceil(0.1 * pool), keep 90% of the batch's target tokens), soft selection.
PAPER = {
    "task_token_fraction": 0.9,
    "k_ref": None,
    "k_ref_fraction": 0.1,
    "ref_mode": "soft",
    "task_mode": "soft",
}

# Two-sided selection's defaults (chosen on validation: results/two_sided_organism/README.md).
# Validation score over organism instances 0-2 x seeds 0-2: preserve 0.5 97.65, 1.0 97.36;
# unlikelihood 0.5 98.06, 1.0 97.72; refusal_penalty 0.5 70.98, 1.0 64.74. Unlikelihood 0.5 minus
# preserve 0.5 is +0.41 [-0.17, +0.98] (paired, t over instances): not a clear win, preserve stays.
TWO_SIDED = {**RELEASE, "helpful_weight": 0.5, "helpful_objective": "preserve", "helpful_use": "both"}

# name -> (trainer method in training.METHODS, config overrides, one-line description)
PRESETS: dict[str, tuple[str, dict, str]] = {
    "sft": ("sft", {}, "Standard LoRA SFT"),
    "dualselect": (
        "dualselect",
        {**RELEASE},
        "DualSelect, release defaults (hard/hard, K_ref 32, K_task 4/8, eta 0.2)",
    ),
    "dualselect_paper": (
        "dualselect",
        {**PAPER},
        "DualSelect, paper setting (soft; keep 90% of target tokens, K_ref = ceil(0.1 * pool), eta 0.2)",
    ),
    "ds_paper_eta_0.1": ("dualselect", {**PAPER, "eta": 0.1}, "paper setting with eta = 0.1 (eta sweep)"),
    "ds_paper_eta_0.05": ("dualselect", {**PAPER, "eta": 0.05}, "paper setting with eta = 0.05 (eta sweep)"),
    "ds_paper_eta_0": ("dualselect", {**PAPER, "eta": 0.0}, "paper setting with eta = 0 (eta sweep)"),
    "safeinstr": ("safeinstr", {}, "SafeInstr: fixed random 10% of the reference pool mixed into the task"),
    "static_refs": (
        "dualselect",
        {**RELEASE, "reference_refresh": False, "task_filter": False},
        "references chosen once by conflict with the warm-up task direction; correction only",
    ),
    "random_refs": (
        "dualselect",
        {**RELEASE, "ref_selector": "random", "task_filter": False},
        "random references, re-drawn every refresh; correction only",
    ),
    "category_refs": (
        "dualselect",
        {**RELEASE, "ref_selector": "category_uniform", "task_filter": False},
        "category-uniform random references; correction only",
    ),
    "task_filter_only": (
        "dualselect",
        {**RELEASE, "ref_selector": "all", "reference_refresh": False, "eta": 0.0},
        "one-sided: task samples filtered (hard, 4 of 8) by a fixed reference direction (whole pool)",
    ),
    "pcgrad_fixed": (
        "dualselect",
        {
            "ref_selector": "random",
            "reference_refresh": False,
            "task_filter": False,
            "correction": "project",
            "eta": 0.0,
        },
        "gradient surgery: PCGrad projection against fixed random references",
    ),
    # Two-sided selection (the project's extension, not the paper's method; docs/method.md): the
    # release plus a helpfulness pool (benign look-alike prompts, the base's own answers) selected
    # like the safety pool, in the task filter and the correction with weight helpful_weight.
    # Defaults chosen on the organism's validation probes (results/two_sided_organism/).
    "dualselect_2s": (
        "dualselect",
        {**TWO_SIDED},
        "two-sided DualSelect (extension): release + helpfulness pool (weight 0.5) in filter and correction",
    ),
    "ds_2s_w1": (
        "dualselect",
        {**TWO_SIDED, "helpful_weight": 1.0},
        "two-sided DualSelect with helpful_weight 1 (validation sweep)",
    ),
    "ds_2s_refpen": (
        "dualselect",
        {**TWO_SIDED, "helpful_objective": "refusal_penalty", "helpful_weight": 1.0},
        "two-sided DualSelect, refusal-penalty objective on the helpfulness pool, weight 1 (design sweep)",
    ),
    "ds_2s_refpen_w0.5": (
        "dualselect",
        {**TWO_SIDED, "helpful_objective": "refusal_penalty", "helpful_weight": 0.5},
        "two-sided DualSelect, refusal penalty, helpful_weight 0.5 (validation sweep)",
    ),
    # the bounded design (selection/objectives.py): -log(1 - p(refusal)), whose push fades once a
    # refusal is unlikely; the refusal penalty above has no floor (it broke the organism's model)
    "ds_2s_ul": (
        "dualselect",
        {**TWO_SIDED, "helpful_objective": "unlikelihood", "helpful_weight": 1.0},
        "two-sided DualSelect, bounded unlikelihood of refusals on the helpfulness pool, weight 1 (design sweep)",
    ),
    "ds_2s_ul_w0.5": (
        "dualselect",
        {**TWO_SIDED, "helpful_objective": "unlikelihood", "helpful_weight": 0.5},
        "two-sided DualSelect, bounded unlikelihood, helpful_weight 0.5 (validation sweep)",
    ),
    # its ablations: the helpfulness pool in the task filter only / in the correction only
    "ds_2s_pool_no_correction": (
        "dualselect",
        {**TWO_SIDED, "helpful_use": "filter"},
        "two-sided ablation: helpfulness pool in the task filter, not in the correction",
    ),
    "ds_2s_correction_no_pool": (
        "dualselect",
        {**TWO_SIDED, "helpful_use": "correction"},
        "two-sided ablation: helpfulness direction in the correction, not in the task filter",
    ),
    "lisa": ("lisa", {}, "Lisa: alternating alignment / fine-tuning states with a proximal term"),
    "kl": ("kl", {}, "task loss + lambda * KL(base || current) on reference batches"),
    # DualSelect ablations: the release (`dualselect`) with one change each
    "ds_no_filter": ("dualselect", {**RELEASE, "task_filter": False}, "DualSelect without task filtering"),
    "ds_no_refresh": (
        "dualselect",
        {**RELEASE, "reference_refresh": False},
        "DualSelect without reference refresh",
    ),
    "ds_no_correction": ("dualselect", {**RELEASE, "eta": 0.0}, "DualSelect without gradient correction"),
    "ds_soft": (
        "dualselect",
        {"ref_mode": "soft", "task_mode": "soft"},
        "DualSelect, soft (entropy-regularised) selection on both sides",
    ),
    # Spec pitfall 4: loss-only filtering with NO references: nu = 0 removes the compatibility term
    # from t_j (and the conflict term from s_i), eta = 0 removes the correction, so no reference
    # reaches the update or the selection; r is still computed and logged, and nothing uses it.
    "ds_loss_only": (
        "dualselect",
        {**RELEASE, "nu": 0.0, "eta": 0.0},
        "task filtering by loss only, no references (nu = 0, eta = 0; spec pitfall 4)",
    ),
    "ds_compat_only": (
        "dualselect",
        {**RELEASE, "mu_task": 0.0},
        "task filtering by compatibility only (mu_task = 0), correction kept",
    ),
}


def resolve_preset(name: str) -> tuple[str, dict]:
    """(trainer method, overrides) for a preset name."""
    if name not in PRESETS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(PRESETS)}")
    method, overrides, _ = PRESETS[name]
    return method, dict(overrides)
