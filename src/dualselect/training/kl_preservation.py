"""KL-preservation baseline: task loss + lambda * KL(base || current) on reference batches.

The aligned base is the same network with the LoRA adapter disabled, so no second copy of the
model is held. KL is taken per supervised token of the reference answers (prompt tokens masked),
as in the DualSelect diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dualselect.gradients.losses import row_kl_sum, token_kl_sum
from dualselect.training.data import cycle_batches, reference_stream
from dualselect.training.sft import MODEL_INPUTS, SFTConfig, SFTTrainer


@dataclass
class KLConfig(SFTConfig):
    reference_data: str | None = field(default=None, metadata={"help": "Pool whose behaviour KL preserves."})
    reference_split: str | None = field(default=None, metadata={"help": "Split for HF datasets."})
    kl_lambda: float = field(
        default=1.0, metadata={"help": "Weight lambda of the KL term.", "domain": ">= 0"}
    )
    output_dir: str | None = field(default="runs/kl", metadata={"help": "Run directory."})


class KLTrainer(SFTTrainer):
    def __init__(self, *args: Any, reference_dataset: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: KLConfig = self.args
        self.reference_dataset, _ = reference_stream(self, cfg, reference_dataset)
        # several processes: one global reference batch (per-device size x processes) per
        # micro-batch, each process taking its contiguous share, like the task batches
        self._world, self._rank = max(1, cfg.world_size), cfg.process_index
        self._ref_batches = cycle_batches(
            self.reference_dataset,
            cfg.per_device_train_batch_size * self._world,
            self.processing_class.pad_token_id,
            cfg.seed,
        )
        self._ref_batches_used = 0

    def method_state(self) -> dict[str, Any]:
        return {**super().method_state(), "ref_batches_used": self._ref_batches_used}

    def load_method_state(self, state: dict[str, Any]) -> None:
        super().load_method_state(state)
        for _ in range(int(state["ref_batches_used"]) - self._ref_batches_used):  # same seeded stream
            next(self._ref_batches)
        self._ref_batches_used = int(state["ref_batches_used"])

    def _reference_batch(self) -> dict:
        batch = next(self._ref_batches)
        self._ref_batches_used += 1
        n = batch["input_ids"].shape[0]
        share = -(-n // self._world)
        rows = slice(self._rank * share, (self._rank + 1) * share)
        return {k: v[rows].to(self.args.device) for k, v in batch.items() if k in MODEL_INPUTS}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # the task term exactly as Standard SFT computes it (token-mean over the accumulated,
        # all-process batch when the model takes num_items_in_batch)
        task, out = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        ref = self._reference_batch()
        # logits only where a supervised token is predicted, when the task loss takes that path too
        at = self.loss_inputs(model, ref)
        fwd = {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
        if "logits_to_keep" in at:
            fwd["logits_to_keep"] = at["logits_to_keep"]
        # the base is the same network with the adapter off (unwrapped: DDP has no disable_adapter)
        with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
            base_logits = model(**fwd).logits
        logits = model(**fwd).logits
        if "logits_to_keep" in at:
            mask = at["shift_labels"] != -100  # [B, kept positions]
            kl_sum, count = row_kl_sum(base_logits[mask], logits[mask]), int(mask.sum())
        else:
            kl_sum, count = token_kl_sum(base_logits, logits, ref["labels"])
        if self._world > 1:  # token-mean over every process's reference tokens after DDP's average
            n = torch.tensor([count], device=self.args.device)
            torch.distributed.all_reduce(n)
            kl = kl_sum * self._world / max(int(n.item()), 1)
        else:
            kl = kl_sum / max(count, 1)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            kl = kl / self.current_gradient_accumulation_steps  # the Trainer will not divide
        loss = task + self.args.kl_lambda * kl
        return (loss, out) if return_outputs else loss
