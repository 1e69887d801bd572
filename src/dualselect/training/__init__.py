"""Trainers: one config dataclass and one ``transformers.Trainer`` subclass per method.

Every name is imported on first use: the trainer modules load torch and transformers, and
importing any ``dualselect`` module runs this file, so the command line can parse its arguments,
print help and report config errors without loading them.
"""

from __future__ import annotations

import importlib
from typing import Any

# the config and trainer of every built-in method (the flat API of ``dualselect`` reuses it)
_TRAINERS = {
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
_LAZY = {
    **_TRAINERS,
    **dict.fromkeys(("METHODS", "ConfigError", "load_config", "run_training"), "dualselect.training.run"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dualselect.training' has no attribute {name!r}")


__all__ = sorted(_LAZY)
