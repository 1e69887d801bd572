"""L2 to the previous stage: the established parameter-space regulariser of continual learning
(the "L2" baseline of Kirkpatrick et al. 2017, EWC with an identity Fisher).

``loss = task loss + lambda * sum_p ||theta_p - theta_p^prev||^2`` over the trainable (LoRA)
parameters, where ``theta^prev`` is the adapter the stage starts from (the previous stage's
result; at the first stage the fresh adapter, i.e. the aligned base model's function).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dualselect.training.sft import SFTConfig, SFTTrainer


@dataclass
class L2PrevConfig(SFTConfig):
    """SFT plus an L2 pull towards the adapter the run starts from."""

    l2_lambda: float = field(
        default=1.0,
        metadata={
            "help": "lambda: weight of sum ||theta - theta_prev||^2 over the LoRA parameters.",
            "domain": ">= 0",
        },
    )
    output_dir: str | None = field(default="runs/l2_prev", metadata={"help": "Run directory."})


class L2PrevTrainer(SFTTrainer):
    """Standard SFT whose loss adds ``l2_lambda * ||theta - theta_prev||^2`` (theta_prev: the
    trainable parameters when the trainer is built)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.anchor = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def l2_penalty(self, model) -> torch.Tensor:
        """sum_p ||theta_p - theta_p^prev||^2 over the anchored parameters."""
        named = dict(self.accelerator.unwrap_model(model).named_parameters())
        terms = [((named[n] - a.to(named[n].device)) ** 2).sum() for n, a in self.anchor.items()]
        return torch.stack(terms).sum()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        task, out = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        reg = self.args.l2_lambda * self.l2_penalty(model)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            reg = reg / self.current_gradient_accumulation_steps  # the Trainer will not divide
        loss = task + reg
        return (loss, out) if return_outputs else loss
