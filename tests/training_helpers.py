"""Helpers of the training-path tests (device, precision, resume, distributed): a device guard
and small trainer configs.

:class:`DeviceGuard` proves device correctness on a machine without a GPU. The model is declared
to live on an accelerator; every tensor is tagged by where it would live there:

* ``"dev"``: the model's parameters and buffers, tensors moved with ``.to(<device>)`` / ``.cuda()``
  and results of ``*_like`` of a device tensor;
* ``"any"``: factory calls (``zeros``, ``arange``, ``full``, ...) given an explicit ``device=``: the
  code placed them deliberately (typically ``device=other.device``), so they take the place of
  whatever they meet (an explicit ``device="cpu"`` mixed with device tensors is not caught);
* ``"host"``: factory calls without ``device=`` (they land on the CPU on a real GPU run too), numpy
  imports, and ``.cpu()`` results.

Every torch function and tensor method then propagates the tags; an op that mixes a device tensor
with a host tensor of one or more dimensions (0-dim CPU scalars are legal on CUDA) is recorded
with the caller's stack. That is exactly what fails on CUDA ("Expected all tensors to be on the
same device") and what runs silently on a CPU, e.g. ``w = torch.zeros(n); w[keep] = ...`` with
``keep`` on the model's device. ``.to(<device>)`` returns a distinct (cloned) tensor under the
guard, so a host tensor whose device copy was made and then *not used* is still caught.
"""

from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakTensorKeyDictionary

FACTORIES = {
    torch.zeros,
    torch.ones,
    torch.full,
    torch.empty,
    torch.arange,
    torch.linspace,
    torch.eye,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.tensor,
    torch.as_tensor,
    torch.from_numpy,
}
LIKE = {
    torch.zeros_like,
    torch.ones_like,
    torch.full_like,
    torch.empty_like,
    torch.rand_like,
    torch.randn_like,
}
# reading a value out (host side by construction) or plain metadata: no device mixing possible
NEUTRAL_NAMES = {"tolist", "item", "numpy", "__len__", "__repr__", "__format__", "dim", "size", "numel"}


def _tensors(obj, out: list) -> list:
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out)
    return out


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


def _to_target(args: tuple, kwargs: dict):
    """The device a ``Tensor.to`` call targets: a device, a tensor (take its tag), or None."""
    if "device" in kwargs and kwargs["device"] is not None:
        return torch.device(kwargs["device"])
    if "other" in kwargs:
        return kwargs["other"]
    for a in args[1:]:
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (str, torch.device)):
            return torch.device(a)
    return None


class DeviceGuard(TorchFunctionMode):
    """Record every op that would mix the model's device with the host (see the module doc).

    ``with DeviceGuard(model) as guard: ...`` then ``guard.violations`` is a list of
    ``(op name, short stack)``; ``guard.checked`` counts the ops seen with device tensors.
    """

    def __init__(self, *modules: torch.nn.Module) -> None:
        super().__init__()
        self.tags = WeakTensorKeyDictionary()
        self.violations: list[tuple[str, str]] = []
        self.checked = 0
        for m in modules:
            self.declare(m)

    def declare(self, module: torch.nn.Module) -> None:
        """Tag ``module``'s parameters and buffers as living on the model's device."""
        for t in list(module.parameters()) + list(module.buffers()):
            self.tags[t] = "dev"

    def _tag(self, obj, tag: str):
        for t in _tensors(obj, []):
            self.tags[t] = tag
        return obj

    def _record(self, func) -> None:
        stack = [
            f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}"
            for f in traceback.extract_stack()[:-3]
            if "training_helpers" not in f.filename
        ]
        self.violations.append((_name(func), "\n".join(stack[-6:])))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func).split(".")[-1]
        if name in NEUTRAL_NAMES:
            return func(*args, **kwargs)
        if name == "cpu":
            out = func(*args, **kwargs)
            return self._tag(out.clone() if out is args[0] else out, "host")  # a copy on a GPU run
        if func in FACTORIES:
            out = func(*args, **kwargs)
            src = _tensors(list(args), [])
            if kwargs.get("device") is not None:
                return self._tag(out, "any")
            if src and func in (torch.as_tensor, torch.tensor):  # as_tensor(t): t's place
                return self._tag(out, self.tags.get(src[0], "host"))
            return self._tag(out, "host")
        if func in LIKE:
            out = func(*args, **kwargs)
            if kwargs.get("device") is not None:
                return self._tag(out, "any")
            return self._tag(out, self.tags.get(args[0], "host"))
        if name in ("to", "cuda") and args and isinstance(args[0], torch.Tensor):
            target = torch.device("cuda") if name == "cuda" else _to_target(args, kwargs)
            out = func(*args, **kwargs)
            if target is None:  # dtype only: stays where it is
                return self._tag(out, self.tags.get(args[0], "host")) if args[0] in self.tags else out
            if isinstance(target, torch.Tensor):
                tag = self.tags.get(target)
                return self._tag(out, tag) if tag else out
            if out is args[0]:  # a no-op on this CPU; on the accelerator it is a copy
                out = out.clone()
            return self._tag(out, "dev")
        tensors = _tensors(list(args), []) + _tensors(list(kwargs.values()), [])
        tags = {self.tags.get(t) for t in tensors if t.dim() > 0}
        out = func(*args, **kwargs)
        if "dev" in tags:
            self.checked += 1
            if "host" in tags:
                self._record(func)
            self._tag(out, "dev")
            if name.endswith("_") or name in ("__setitem__", "__iadd__", "__imul__", "__isub__"):
                self._tag(args[0], "dev")
        elif "host" in tags:
            self._tag(out, "host")
            if "any" in tags and (name.endswith("_") or name == "__setitem__"):
                self._tag(args[0], "host")
        elif "any" in tags:
            self._tag(out, "any")
        return out


# ------------------------------------------------------------------------------ trainer configs

METHOD_NAMES = ("sft", "dualselect", "kl", "lisa", "safeinstr")
DS_ONLY = {"selection_warmup_steps", "refresh", "refresh_steps", "k_ref", "ref_pool_cap", "k_task"}


def small_cfg(organism_dir, out, method: str = "dualselect", **kw):
    """A few-step config of ``method`` on the organism (0.45M parameters): CPU-cheap."""
    from dualselect.training import load_config

    base = {
        "model_name_or_path": str(organism_dir),
        "output_dir": str(out),
        "train_data": str(organism_dir / "data" / "redorca_train.jsonl"),
        "learning_rate": 1e-3,
        "max_steps": 6,
        "selection_warmup_steps": 2,
        "refresh": "steps",
        "refresh_steps": 3,
        "k_ref": 4,
        "ref_pool_cap": 24,
        "disable_tqdm": True,
        "report_to": "none",
        "logging_steps": 1,
    }
    if method != "dualselect":
        base = {k: v for k, v in base.items() if k not in DS_ONLY}
        kw = {k: v for k, v in kw.items() if k not in DS_ONLY}
    return load_config(method, overrides={**base, **kw})


def sft_cfg(organism_dir, out, **kw):
    """A two-step Standard SFT config on the organism (run-directory and output tests)."""
    from dualselect.training.run import load_config

    return load_config(
        "sft",
        overrides={
            "model_name_or_path": str(organism_dir),
            "output_dir": str(out),
            "max_steps": 2,
            "max_length": 128,
            "learning_rate": 1e-3,
            "report_to": "none",
            "disable_tqdm": True,
            **kw,
        },
    )


def lora_state(trainer) -> dict:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max()) for n in a)
