"""The one hook owner: each LoRA sub-layer's input ``x_kt`` (forward hook) and output gradient
``delta_kt`` (tensor hook on the output, fired by the backward).

peft's ``LoraLayer`` computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``; ``lora_A[adapter]``
and ``lora_B[adapter]`` are plain ``nn.Linear`` modules, so ``G_k = sum_t delta_kt x_kt^T`` per
sub-layer (see ``samplers.py``). Which projections carry LoRA (q/v or all linear layers) does not
matter: every trainable parameter must sit in one of the hooked sub-layers, or we refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from dualselect.gradients.flat import named_trainable_parameters


@dataclass
class LayerRecord:
    """What one call of a hooked sub-layer left behind: activations ``x`` [B, T, in] and, after
    the backward, backprops ``delta`` [B, T, out] (``None`` if the loss never reached it)."""

    module: nn.Module
    activations: torch.Tensor | None
    backprops: torch.Tensor | None = None
    # set when the hooks' ``reduce`` turned (x, delta) into per-sample gradients {param: G [B, ...]}
    # as soon as delta arrived; x and delta are then dropped
    grad_sample: dict | None = None


def lora_sublayers(model: nn.Module) -> list[nn.Module]:
    """``lora_A[a]`` and ``lora_B[a]`` of every peft ``LoraLayer`` for its active adapters ``a``.

    Raises ``NotImplementedError`` when a trainable parameter lies outside them (DoRA magnitudes,
    embedding adapters, ``modules_to_save``, ...): use the oracle engine for those models.
    """
    from peft.tuners.lora import LoraLayer

    mods: list[nn.Module] = []
    for layer in model.modules():
        if not isinstance(layer, LoraLayer):
            continue
        for name in layer.active_adapters:
            if name not in layer.lora_A:
                continue
            if getattr(layer, "merged", False) or getattr(layer, "disable_adapters", False):
                raise ValueError("LoRA adapters are merged or disabled: their gradients do not flow")
            if name in getattr(layer, "lora_variant", {}):
                raise NotImplementedError(
                    f"LoRA variant {type(layer.lora_variant[name]).__name__} (e.g. DoRA) is not covered "
                    "by the fast engine; use engine='oracle'"
                )
            mods += [layer.lora_A[name], layer.lora_B[name]]
    owned = {id(p) for m in mods for p in m.parameters()}
    stray = [n for n, p in named_trainable_parameters(model) if id(p) not in owned]
    if stray:
        raise NotImplementedError(
            f"trainable parameters outside the active LoRA sub-layers ({', '.join(stray[:3])}, ...): "
            "the fast engine covers LoRA A/B matrices only; use engine='oracle'"
        )
    return mods


class LoraGradSampleHooks:
    """Context manager owning all hooks. Inside it, a forward pass records every hooked call's
    input; :meth:`backward` (or any backward through the outputs) fills in the output gradients.

    ``pop_records()`` hands the buffers over and empties them; leaving the context removes every
    hook and drops whatever is still held.
    """

    def __init__(
        self,
        model: nn.Module,
        reduce: Callable[[nn.Module, torch.Tensor, torch.Tensor], dict | None] | None = None,
    ) -> None:
        """``reduce(module, x, delta)``: called inside the backward as each sub-layer's output
        gradient arrives; a dict of per-sample gradients replaces ``x`` and ``delta`` in the record
        at once (``None``: keep them), so the output gradients of all layers are never held together."""
        self.modules = lora_sublayers(model)
        self.reduce = reduce
        self.records: list[LayerRecord] = []
        self._outputs: list[torch.Tensor] = []
        self._handles: list = []

    # -- hooks ---------------------------------------------------------------------------------
    def _forward_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not output.requires_grad:  # e.g. under torch.no_grad: nothing to differentiate
            return
        rec = LayerRecord(module, inputs[0].detach())  # x_kt
        self.records.append(rec)
        self._outputs.append(output)
        output.register_hook(partial(self._save_backprop, rec))

    def _save_backprop(self, rec: LayerRecord, grad: torch.Tensor) -> None:
        g = grad.detach()  # delta_kt = d(sum_k l_k) / d(output_kt)
        if self.reduce is not None and rec.activations is not None:
            G = self.reduce(rec.module, rec.activations, g)
            if G is not None:
                rec.grad_sample = G if rec.grad_sample is None else {p: rec.grad_sample[p] + G[p] for p in G}
                rec.activations = None  # G_k replaces what it came from
                return
        rec.backprops = g if rec.backprops is None else rec.backprops + g

    # -- use -----------------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` to the hooked outputs only (no parameter ``.grad`` is touched)."""
        if not self._outputs:
            raise RuntimeError("no LoRA sub-layer ran with gradients enabled in this forward pass")
        if self.reduce is None:
            torch.autograd.grad(loss, self._outputs, allow_unused=True)
        else:
            # differentiate w.r.t. the (small) LoRA parameters, not the outputs: autograd.grad
            # returns every requested gradient at the end, so asking for the outputs would hold
            # all layers' delta at once; the hooks still see each delta as it passes
            params = [p for m in self.modules for p in m.parameters() if p.requires_grad]
            torch.autograd.grad(loss, params, allow_unused=True)
        self._outputs = []  # release the graph

    def pop_records(self) -> list[LayerRecord]:
        """The captured records (those the backward reached); the hook buffers are emptied."""
        out = [r for r in self.records if r.backprops is not None or r.grad_sample is not None]
        self.records, self._outputs = [], []
        return out

    @property
    def empty(self) -> bool:
        """True when no activation, backprop or output tensor is held."""
        return not self.records and not self._outputs

    def __enter__(self) -> LoraGradSampleHooks:
        self._handles = [m.register_forward_hook(self._forward_hook) for m in self.modules]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.records, self._outputs = [], []


def _backward_bytes(records: list[LayerRecord]) -> int:
    """Bytes of output gradients (delta) and per-sample gradients (G) the records hold."""
    held = 0
    for r in records:
        if r.backprops is not None:
            held += r.backprops.numel() * r.backprops.element_size()
        if r.grad_sample is not None:
            held += sum(g.numel() * g.element_size() for g in r.grad_sample.values())
    return held


@contextmanager
def tracking_held_peak() -> Iterator[list[int]]:
    """Diagnostic (benchmarks, tests; not for training): within the block, every hook call
    measures the bytes of delta and G the records hold; yields a one-element list with the peak."""
    peak = [0]
    orig = LoraGradSampleHooks._save_backprop

    def tracked(self: LoraGradSampleHooks, rec: LayerRecord, grad: torch.Tensor) -> None:
        orig(self, rec, grad)
        peak[0] = max(peak[0], _backward_bytes(self.records))

    LoraGradSampleHooks._save_backprop = tracked
    try:
        yield peak
    finally:
        LoraGradSampleHooks._save_backprop = orig
