"""Lisa baseline (Huang et al., "Lazy safety alignment", NeurIPS 2024): bi-state optimisation.

Training alternates between an alignment state (steps on the reference/alignment pool) and a
fine-tuning state (steps on the task data). Each step adds a proximal term
``rho / 2 * ||theta - theta_switch||^2`` pulling the LoRA weights towards where they were at the
last state switch, so neither state drifts far from the other's solution.

Budget: Lisa's alignment steps are taken *out of* the run's optimiser steps (the same total as
Standard SFT); ``alignment_steps / (alignment_steps + finetune_steps)`` of the steps see no task
data. The run log records how many steps each state took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dualselect.training.data import cycle_batches, reference_stream
from dualselect.training.sft import SFTConfig, SFTTrainer


@dataclass
class LisaConfig(SFTConfig):
    reference_data: str | None = field(
        default=None, metadata={"help": "Alignment pool for the alignment state."}
    )
    reference_split: str | None = field(default=None, metadata={"help": "Split for HF datasets."})
    alignment_steps: int = field(
        default=1, metadata={"help": "Consecutive steps in the alignment state.", "domain": ">= 0"}
    )
    finetune_steps: int = field(
        default=9, metadata={"help": "Consecutive steps in the fine-tuning state.", "domain": ">= 1"}
    )
    rho: float = field(default=1.0, metadata={"help": "Proximal strength rho.", "domain": ">= 0"})
    output_dir: str | None = field(default="runs/lisa", metadata={"help": "Run directory."})


class LisaTrainer(SFTTrainer):
    def __init__(self, *args: Any, reference_dataset: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: LisaConfig = self.args
        self.reference_dataset, _ = reference_stream(self, cfg, reference_dataset)
        self._ref_batches = cycle_batches(  # one global batch per step, shared out over processes
            self.reference_dataset,
            cfg.per_device_train_batch_size * max(1, cfg.world_size),
            self.processing_class.pad_token_id,
            cfg.seed,
        )
        self._anchor: list[torch.Tensor] | None = None
        self._state: str | None = None
        self.state_counts = {"alignment": 0, "finetune": 0}
        self._ref_batches_used = 0

    def method_state(self) -> dict[str, Any]:
        anchor = None if self._anchor is None else [a.detach().cpu() for a in self._anchor]
        return {
            **super().method_state(),
            "anchor": anchor,
            "state": self._state,
            "state_counts": dict(self.state_counts),
            "ref_batches_used": self._ref_batches_used,
        }

    def load_method_state(self, state: dict[str, Any]) -> None:
        super().load_method_state(state)
        device = next(p for p in self.model.parameters()).device
        self._anchor = None if state["anchor"] is None else [a.to(device) for a in state["anchor"]]
        self._state = state["state"]
        self.state_counts = dict(state["state_counts"])
        for _ in range(int(state["ref_batches_used"]) - self._ref_batches_used):  # same seeded stream
            next(self._ref_batches)
        self._ref_batches_used = int(state["ref_batches_used"])

    def _phase(self, step: int) -> str:
        cfg: LisaConfig = self.args
        period = cfg.alignment_steps + cfg.finetune_steps
        return "alignment" if step % period < cfg.alignment_steps else "finetune"

    def step_phase(self) -> str:
        return self._phase(self.state.global_step)

    def training_step(self, model, inputs, num_items_in_batch=None):
        phase = self._phase(self.state.global_step)
        params = [p for p in model.parameters() if p.requires_grad]
        if phase != self._state:  # state switch: new proximal anchor
            self._anchor = [p.detach().clone() for p in params]
            self._state = phase
        self.state_counts[phase] += 1
        world = max(1, self.args.world_size)
        if phase == "alignment":
            # several processes: one global alignment batch, each process takes its share
            batch = next(self._ref_batches)
            self._ref_batches_used += 1
            share = -(-batch["input_ids"].shape[0] // world)
            rows = slice(self.args.process_index * share, (self.args.process_index + 1) * share)
            inputs = {k: v[rows].to(self.args.device) for k, v in batch.items()}
        else:
            inputs = self._prepare_inputs(inputs)
            self.count_tokens(inputs["labels"])
        model.train()
        loss = model(**self.loss_inputs(model, inputs)).loss  # as Standard SFT computes it
        if world > 1:
            # token-mean over every process's tokens once DDP has averaged the gradients
            n_local = int((inputs["labels"][:, 1:] != -100).sum())
            n = torch.tensor([n_local], device=self.args.device)
            torch.distributed.all_reduce(n)
            loss = loss * n_local * world / max(int(n.item()), 1)
        prox = sum(((p - a) ** 2).sum() for p, a in zip(params, self._anchor))
        total = loss + 0.5 * self.args.rho * prox
        ga = self.current_gradient_accumulation_steps
        self.accelerator.backward(total / ga)
        return (loss / ga).detach()  # like the Trainer: micro-batch losses add up to the step's
