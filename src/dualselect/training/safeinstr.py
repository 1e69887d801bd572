"""SafeInstr baseline: a fixed random sample of the reference pool mixed into the task data.

(Bianchi et al., "Safety-tuned LLaMAs": a few hundred safety demonstrations added to instruction
data.) The mix is drawn once with the run's seed; the reference samples are whole records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from dualselect.training.data import EncodedDataset, load_reference_dataset
from dualselect.training.sft import SFTConfig, SFTTrainer


@dataclass
class SafeInstrConfig(SFTConfig):
    reference_data: str | None = field(default=None, metadata={"help": "Pool the safety samples come from."})
    reference_split: str | None = field(default=None, metadata={"help": "Split for HF datasets."})
    safety_fraction: float = field(
        default=0.1,
        metadata={"help": "Safety samples added, as a fraction of the task set size.", "domain": "in (0, 1]"},
    )
    output_dir: str | None = field(default="runs/safeinstr", metadata={"help": "Run directory."})


class SafeInstrTrainer(SFTTrainer):
    def __init__(
        self,
        model: Any = None,
        args: SafeInstrConfig | None = None,
        train_dataset: Any = None,
        reference_dataset: Any = None,
        **kwargs: Any,
    ) -> None:
        args = args or SafeInstrConfig()
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        refs = load_reference_dataset(self, args, reference_dataset)
        task = self.train_dataset
        n = min(len(refs), math.ceil(args.safety_fraction * len(task)))
        g = torch.Generator().manual_seed(args.seed)
        picked = torch.randperm(len(refs), generator=g)[:n].tolist()
        offset = len(task)
        mixed = list(task.examples) + [dict(refs[i], index=offset + i) for i in picked]
        self.train_dataset = EncodedDataset(mixed)
        self.safety_indices = picked
