"""Fp16 with a GradScaler and bf16 autocast give the fp32 update within a stated
tolerance, and DualSelect scores under the same autocast as it trains.

bf16 runs as a user would run it on a CPU (``bf16=True, use_cpu=True``). fp16 on a CPU is ignored
by accelerate (no scaler, fp32 maths), so the test switches on the path a GPU run takes, on the
CPU: native AMP (``torch.autocast("cpu", float16)`` around the model's forward) and a
``torch.amp.GradScaler("cpu")`` in the accelerator and its optimiser wrapper.

Tolerances (measured on the organism, 4 steps, dropout 0, seed 0; see docs/method.md): the
gradient the optimiser receives each step, relative L2 error vs fp32, <= 8e-2 (bf16: 8-bit
mantissa; up to 3.7e-2 on the organism of the previous world, up to 5.8e-2 for Standard SFT's 4th step on the
shipped organism of the current world) and <= 2e-2 (fp16); the parameter change after 4 AdamW steps <= 0.12 (bf16) and
<= 0.05 (fp16) relative: early AdamW steps are nearly sign steps, so rounding of small gradient
coordinates shows up there. The same numbers hold for Standard SFT, the reference point.
"""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from dualselect.gradients import flat_grad
from dualselect.training import METHODS
from training_helpers import lora_state, small_cfg

TOL = {"bf16": (8e-2, 0.12), "fp16": (2e-2, 0.05)}


class Recorder(TrainerCallback):
    """The (unscaled, clipped) gradient handed to the optimiser each step."""

    def __init__(self, trainer) -> None:
        self.trainer, self.grads = trainer, []

    def on_pre_optimizer_step(self, args, state, control, **kw):
        self.grads.append(flat_grad(self.trainer.model))


def _run(organism_dir, out, method, precision):
    torch.set_num_threads(1)
    kw = {} if precision == "fp32" else {precision: True, "use_cpu": True}
    cfg = small_cfg(organism_dir, out, method, max_steps=4, lora_dropout=0.0, **kw)
    trainer = METHODS[method][1](model=cfg.model_name_or_path, args=cfg, train_dataset=cfg.train_data)
    if precision == "fp16":  # what accelerate sets up on a GPU (see the module doc)
        trainer.accelerator.native_amp = True
        trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    rec = Recorder(trainer)
    trainer.add_callback(rec)
    autocast_seen: list[bool] = []
    base = trainer.model.get_base_model()
    base.register_forward_pre_hook(lambda m, a: autocast_seen.append(torch.is_autocast_enabled("cpu")))
    before = lora_state(trainer)
    trainer.train()
    after = lora_state(trainer)
    return {n: after[n] - before[n] for n in after}, rec.grads, trainer, autocast_seen


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["dualselect", "sft"])
def test_mixed_precision_update_matches_fp32(organism_dir, tmp_path, method, precision):
    ref, g_ref, _, seen32 = _run(organism_dir, tmp_path / "fp32", method, "fp32")
    upd, g, trainer, seen = _run(organism_dir, tmp_path / precision, method, precision)
    assert not any(seen32)
    # every forward, the scoring passes of the refresh and of task filtering included, ran under
    # the training autocast
    assert seen and all(seen)
    if method == "dualselect":  # 4 training forwards would be SFT; the rest are scoring passes
        assert len(seen) > 4
    tol_grad, tol_update = TOL[precision]
    assert len(g) == len(g_ref) == 4
    errs = [_rel(a, b) for a, b in zip(g, g_ref)]
    assert max(errs) <= tol_grad, errs
    num = sum(float((upd[n] - ref[n]).norm() ** 2) for n in ref) ** 0.5
    den = sum(float(ref[n].norm() ** 2) for n in ref) ** 0.5
    assert num / den <= tol_update
    if precision == "fp16":  # the scaler ran and no step overflowed (it would halve the scale)
        assert trainer.accelerator.scaler.get_scale() == 2.0**12
