"""The continual-learning methods: each is a method of the one method table (a trainer of
``training.run.METHODS`` or a preset of ``training.presets.PRESETS``, as ``train`` and ``compare``
accept) plus what the stage's data and memory become.

Memory kinds (what a method may use of the past, all under the same budget):

* ``none``: the current task only (sequential SFT, L2 to the previous stage);
* ``replay``: the current task's training set joined with the memory (the task buffer of earlier
  stages plus the safety samples), shuffled together; replayed samples take batch slots;
* ``references``: the memory as DualSelect's named reference pools (``safety`` plus one pool per
  earlier task); they are scored, selected and enter the update through r, never as batch slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MEMORY_KINDS = ("none", "replay", "references")


@dataclass(frozen=True)
class ContinualMethod:
    """A row of the continual comparison."""

    method: str  # a trainer or preset name (training.run.method_names())
    memory: str  # one of MEMORY_KINDS
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of the preset's settings
    description: str = ""

    @property
    def trainer(self) -> str:
        """The trainer ``method`` runs (a preset's trainer, or ``method`` itself)."""
        from dualselect.training.run import resolve_method

        return resolve_method(self.method)[0]


CONTINUAL_METHODS: dict[str, ContinualMethod] = {
    "sft": ContinualMethod("sft", "none", {}, "sequential LoRA SFT, one task after the other"),
    "replay": ContinualMethod(
        "sft", "replay", {}, "experience replay: task + random (reservoir) buffer + safety samples"
    ),
    "l2": ContinualMethod(
        "l2_prev",
        "none",
        {"l2_lambda": 0.01},
        "SFT + 0.01 * ||theta - theta_prev||^2 (L2 to the previous stage)",
    ),
    "l2_strong": ContinualMethod(
        "l2_prev",
        "none",
        {"l2_lambda": 0.1},
        "SFT + 0.1 * ||theta - theta_prev||^2 (L2 to the previous stage)",
    ),
    "ds_retention": ContinualMethod(
        "dualselect",
        "references",
        {},
        "DualSelect with the memory as reference pools (safety + one per earlier task)",
    ),
    "ds_retention_no_filter": ContinualMethod(
        "dualselect",
        "references",
        {"task_filter": False},
        "DualSelect-retention without task filtering",
    ),
    "ds_retention_no_correction": ContinualMethod(
        "dualselect",
        "references",
        {"eta": 0.0},
        "DualSelect-retention without gradient correction",
    ),
    # spec pitfall 4: is it the coupling, or only dropping high-loss samples (learning less)?
    "ds_retention_loss_only": ContinualMethod(
        "dualselect",
        "references",
        {"nu": 0.0, "eta": 0.0},
        "task filtering by loss only (nu = 0, eta = 0): no reference reaches selection or update",
    ),
}


def resolve_continual_method(name: str) -> ContinualMethod:
    """The :class:`ContinualMethod` called ``name``; a one-line error listing the names otherwise."""
    if name not in CONTINUAL_METHODS:
        raise ValueError(f"unknown continual method {name!r}; choose from {sorted(CONTINUAL_METHODS)}")
    return CONTINUAL_METHODS[name]
