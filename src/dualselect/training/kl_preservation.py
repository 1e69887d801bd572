"""KL-preservation baseline: task loss + lambda * KL(base || current) on reference batches.

The aligned base is the same network with the LoRA adapter disabled, so no second copy of the
model is held. KL is taken per supervised token of the reference answers (prompt tokens masked),
as in the DualSelect diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dualselect.training.data import reference_stream
from dualselect.training.sft import MODEL_INPUTS, SFTConfig, SFTTrainer


@dataclass
class KLConfig(SFTConfig):
    reference_data: str | None = field(default=None, metadata={"help": "Pool whose behaviour KL preserves."})
    reference_split: str | None = field(default=None, metadata={"help": "Split for HF datasets."})
    kl_lambda: float = field(default=1.0, metadata={"help": "Weight lambda of the KL term."})
    output_dir: str | None = field(default="runs/kl", metadata={"help": "Run directory."})

    def __post_init__(self) -> None:
        if self.kl_lambda < 0:
            raise ValueError(f"invalid KLConfig: kl_lambda={self.kl_lambda}: must be >= 0")
        super().__post_init__()


def token_kl(base_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over supervised tokens of KL(p_base || p) for next-token distributions."""
    mask = labels[:, 1:] != -100
    lp_base = F.log_softmax(base_logits[:, :-1][mask].float(), dim=-1)
    lp = F.log_softmax(logits[:, :-1][mask].float(), dim=-1)
    return (lp_base.exp() * (lp_base - lp)).sum(-1).mean()


class KLTrainer(SFTTrainer):
    def __init__(self, *args: Any, reference_dataset: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: KLConfig = self.args
        self.reference_dataset, self._ref_batches = reference_stream(self, cfg, reference_dataset)
        self._ref_batches_used = 0

    def method_state(self) -> dict[str, Any]:
        return {**super().method_state(), "ref_batches_used": self._ref_batches_used}

    def load_method_state(self, state: dict[str, Any]) -> None:
        super().load_method_state(state)
        for _ in range(int(state["ref_batches_used"]) - self._ref_batches_used):  # same seeded stream
            next(self._ref_batches)
        self._ref_batches_used = int(state["ref_batches_used"])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.count_tokens(inputs["labels"])
        out = model(**{k: inputs[k] for k in MODEL_INPUTS})
        ref = {k: v.to(self.args.device) for k, v in next(self._ref_batches).items() if k in MODEL_INPUTS}
        self._ref_batches_used += 1
        # the base is the same network with the adapter off (unwrapped: DDP has no disable_adapter)
        with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
            base_logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
        logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).logits
        loss = out.loss + self.args.kl_lambda * token_kl(base_logits, logits, ref["labels"])
        return (loss, out) if return_outputs else loss
