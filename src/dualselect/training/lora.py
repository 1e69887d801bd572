"""LoRA set-up. Model-specific knowledge (which modules to target) lives in one table."""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model

# Default LoRA targets per `config.model_type`. The spec's (and the paper's) setting is q_proj and
# v_proj; architectures that name their projections differently get their own row.
DEFAULT_LORA_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "gemma3_text": ["q_proj", "v_proj"],
    "gemma3": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
}


def default_targets(model_type: str) -> list[str]:
    """Targets for ``model_type``; q_proj/v_proj when the architecture is not in the table."""
    return list(DEFAULT_LORA_TARGETS.get(model_type, ["q_proj", "v_proj"]))


def apply_lora(
    model,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: list[str] | None = None,
    peft_config=None,
) -> PeftModel:
    """Wrap ``model`` with a fresh LoRA adapter; the base weights are frozen.

    ``peft_config`` (TRL's ``SFTTrainer(peft_config=...)``, a ``peft.LoraConfig``) is used as it is
    instead of the ``r``/``alpha``/``dropout``/``target_modules`` arguments.
    Seed torch before calling: LoRA's A matrices are randomly initialised (spec pitfall 2).
    """
    if isinstance(model, PeftModel):
        if peft_config is not None:
            raise ValueError("model already has a PEFT adapter; pass either a PeftModel or peft_config")
        return model
    if peft_config is not None:
        if not isinstance(peft_config, LoraConfig):
            raise TypeError(
                f"peft_config must be a peft.LoraConfig (got {type(peft_config).__name__}): the "
                "gradient engine of the selection methods works on LoRA layers"
            )
        return get_peft_model(model, peft_config)
    targets = target_modules or default_targets(getattr(model.config, "model_type", ""))
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(model, cfg)
