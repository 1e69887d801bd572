"""Retention-focused continual learning: a sequence of tasks learned one after the
other on one LoRA adapter, with DualSelect's references drawn from a bounded replay buffer of
earlier stages plus the safety pool. See docs/continual.md."""

from dualselect.continual.buffer import ReservoirBuffer
from dualselect.continual.methods import CONTINUAL_METHODS, ContinualMethod
from dualselect.continual.metrics import continual_metrics
from dualselect.continual.tasks import TASK_NAMES_ALL, TaskData, load_task

__all__ = [
    "CONTINUAL_METHODS",
    "TASK_NAMES_ALL",
    "ContinualMethod",
    "ReservoirBuffer",
    "TaskData",
    "continual_metrics",
    "load_task",
]
