"""Issue 11, item 6: per-sample statistics are reduced inside the backward hooks (no more than one
layer's output gradient held at a time), with the same numbers; the memory model's terms."""

from __future__ import annotations

import pytest
import torch

from dualselect.gradients import FastEngine
from dualselect.gradients.hooks import LoraGradSampleHooks
from tiny_models import ALL_LINEAR, collate, make_examples, tiny_lora_model


def _batch(B=8, T=40):
    return collate(make_examples([(8, T - 8)] * B, seed=3))


def _held_delta_peak(engine, model, batch) -> tuple[int, object]:
    """Peak bytes of output gradients (delta) and per-sample gradients (G) held by the hook
    records during the backward, tracked at every hook call."""
    peak = [0]
    orig = LoraGradSampleHooks._save_backprop

    def tracked(self, rec, grad):
        orig(self, rec, grad)
        held = 0
        for r in self.records:
            if r.backprops is not None:
                held += r.backprops.numel() * r.backprops.element_size()
            if r.grad_sample is not None:
                held += sum(g.numel() * g.element_size() for g in r.grad_sample.values())
        peak[0] = max(peak[0], held)

    LoraGradSampleHooks._save_backprop = tracked
    try:
        cap = engine.capture(model, batch)
    finally:
        LoraGradSampleHooks._save_backprop = orig
    return peak[0], cap


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ALL_LINEAR])
def test_reduction_in_hooks_holds_less_and_gives_the_same_numbers(targets):
    torch.manual_seed(0)
    model = tiny_lora_model("llama", targets=targets, r=4)
    batch = _batch()
    v = torch.randn(sum(p.numel() for p in model.parameters() if p.requires_grad))
    peak_new, new = _held_delta_peak(FastEngine(bucket_slack=None), model, batch)
    peak_old, old = _held_delta_peak(FastEngine(bucket_slack=None, reduce_in_hooks=False), model, batch)
    # old: every layer's delta [B, T, out] until the end; new: G_k [B, out, in] (rank-sized) per layer
    assert peak_new * 3 < peak_old, (peak_new, peak_old)
    assert new.held_bytes == old.held_bytes  # after the backward both hold the same G_k
    torch.testing.assert_close(new.losses, old.losses, rtol=0, atol=0)
    torch.testing.assert_close(new.dots(v), old.dots(v), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new.sq_norms(), old.sq_norms(), rtol=1e-5, atol=1e-6)
    w = torch.rand(8)
    torch.testing.assert_close(new.weighted_sum(w), old.weighted_sum(w), rtol=1e-5, atol=1e-7)
