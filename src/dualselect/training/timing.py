"""Where a training run's wall time goes: per-phase seconds recorded by the real trainers.

Every trainer of this package holds a :class:`PhaseTimes` (``trainer.phase_times``) and names the
phase of its next optimiser step (``trainer.step_phase()``: ``"plain"`` for Standard SFT and KL,
``"warmup"`` / ``"selection"`` for DualSelect, ``"alignment"`` / ``"finetune"`` for Lisa).
DualSelect times its reference refreshes itself (``"refresh"``: two ``perf_counter`` calls per
refresh, so nothing measurable when unused). Per-step times are recorded only when asked, by
adding :class:`PhaseTimingCallback`::

    trainer = DualSelectTrainer(...)
    trainer.add_callback(PhaseTimingCallback(trainer))
    trainer.train()
    trainer.phase_times.summary()   # {"warmup": {...}, "refresh": {...}, "selection": {...}}

A step's time runs from the Trainer's ``on_step_begin`` (after the step's batches were fetched) to
``on_step_end`` (after clipping, the optimiser and the scheduler): forward, backward, selection and
update. The refresh seconds spent inside a step are booked under ``"refresh"`` and taken out of
that step's own phase, so the phases add up to the steps' total.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback


class PhaseTimes:
    """Seconds per occurrence of each named phase, in the order they happened."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def add(self, phase: str, seconds: float) -> None:
        """Record one occurrence of ``phase`` that took ``seconds``."""
        self.seconds.setdefault(phase, []).append(float(seconds))

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Record the wall time of the ``with`` block as one occurrence of ``phase``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)

    def total(self, phase: str) -> float:
        """Seconds summed over every occurrence of ``phase`` (0 if it never happened)."""
        return float(sum(self.seconds.get(phase, ())))

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per phase: ``count``, ``total_s``, ``median_s``, ``min_s``, ``max_s``."""
        return {
            phase: {
                "count": len(v),
                "total_s": sum(v),
                "median_s": statistics.median(v),
                "min_s": min(v),
                "max_s": max(v),
            }
            for phase, v in self.seconds.items()
            if v
        }


class PhaseTimingCallback(TrainerCallback):
    """Books the wall time of every optimiser step under ``trainer.step_phase()``, minus the
    refresh seconds the trainer recorded during that step (booked under ``"refresh"``)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self._t0: float | None = None
        self._phase = "plain"
        self._refresh_before = 0.0

    def on_step_begin(self, args, state, control, **kwargs: Any):
        self._phase = self.trainer.step_phase()
        self._refresh_before = self.trainer.phase_times.total("refresh")
        self._sync()
        self._t0 = time.perf_counter()
        return control

    def on_step_end(self, args, state, control, **kwargs: Any):
        if self._t0 is None:
            return control
        self._sync()
        dt = time.perf_counter() - self._t0
        times: PhaseTimes = self.trainer.phase_times
        times.add(self._phase, dt - (times.total("refresh") - self._refresh_before))
        self._t0 = None
        return control

    def _sync(self) -> None:
        import torch

        if torch.cuda.is_available() and str(self.trainer.args.device).startswith("cuda"):
            torch.cuda.synchronize()
