"""A safety-aligned *real* base (SmolLM2-135M-Instruct aligned on refusals to a training split of
real harmful prompts), the harmful fine-tuning attack data on a real task, and held-out evaluation
splits, all built from the verbatim benchmark files in ``../shared/data`` and checked
prompt-disjoint by normalised-text hash. See docs/real_model.md."""
