"""Trainers: one config dataclass and one ``transformers.Trainer`` subclass per method."""

from dualselect.training.dualselect import DualSelectConfig, DualSelectTrainer
from dualselect.training.kl_preservation import KLConfig, KLTrainer
from dualselect.training.lisa import LisaConfig, LisaTrainer
from dualselect.training.run import METHODS, ConfigError, load_config, run_training
from dualselect.training.safeinstr import SafeInstrConfig, SafeInstrTrainer
from dualselect.training.sft import SFTConfig, SFTTrainer

METHODS.update(
    {
        "sft": (SFTConfig, SFTTrainer),
        "dualselect": (DualSelectConfig, DualSelectTrainer),
        "safeinstr": (SafeInstrConfig, SafeInstrTrainer),
        "lisa": (LisaConfig, LisaTrainer),
        "kl": (KLConfig, KLTrainer),
    }
)

__all__ = [
    "METHODS",
    "ConfigError",
    "DualSelectConfig",
    "DualSelectTrainer",
    "KLConfig",
    "KLTrainer",
    "LisaConfig",
    "LisaTrainer",
    "SFTConfig",
    "SFTTrainer",
    "SafeInstrConfig",
    "SafeInstrTrainer",
    "load_config",
    "run_training",
]
