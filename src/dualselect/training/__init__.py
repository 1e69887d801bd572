"""Trainers: one config dataclass and one ``transformers.Trainer`` subclass per method.

The trainer modules (torch, transformers) are imported on first use, so the command line can
parse its arguments, print help and report config errors without loading them.
"""

from __future__ import annotations

import importlib
from typing import Any

from dualselect.training.run import METHODS, ConfigError, load_config, run_training

_LAZY = {
    "DualSelectConfig": "dualselect.training.dualselect_config",
    "DualSelectTrainer": "dualselect.training.dualselect_trainer",
    "KLConfig": "dualselect.training.kl_preservation",
    "KLTrainer": "dualselect.training.kl_preservation",
    "LisaConfig": "dualselect.training.lisa",
    "LisaTrainer": "dualselect.training.lisa",
    "SFTConfig": "dualselect.training.sft",
    "SFTTrainer": "dualselect.training.sft",
    "SafeInstrConfig": "dualselect.training.safeinstr",
    "SafeInstrTrainer": "dualselect.training.safeinstr",
    "L2PrevConfig": "dualselect.training.l2_prev",
    "L2PrevTrainer": "dualselect.training.l2_prev",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dualselect.training' has no attribute {name!r}")


__all__ = ["METHODS", "ConfigError", "load_config", "run_training", *sorted(_LAZY)]
