"""dualselect: safe LoRA fine-tuning with coupled task/reference selection, and
capability-grounded, multi-judge safety evaluation.

The public API is flat, as in TRL and PEFT::

    from dualselect import DualSelectConfig, DualSelectTrainer

Names are imported on first use, so ``import dualselect`` (and the command line's help and config
checks) does not load torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from dualselect._version import __version__
from dualselect.training import _TRAINERS

# the trainers and configs (one table, in dualselect.training), then the rest of the flat API
_LAZY = {
    **_TRAINERS,
    "PRESETS": "dualselect.training.presets",
    "load_config": "dualselect.training.run",
    "run_training": "dualselect.training.run",
    "evaluate": "dualselect.evaluation.harness",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dualselect' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *sorted(_LAZY)]
