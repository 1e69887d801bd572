"""No trainer or engine code creates a tensor on, or hands one to, a device
other than the model's. Proved on a CPU with :class:`training_helpers.DeviceGuard` (see its doc)."""

from __future__ import annotations

import pytest
import torch

from dualselect.training import METHODS, run_training
from training_helpers import METHOD_NAMES, DeviceGuard, small_cfg


def test_guard_catches_host_tensor_indexed_with_device_indices():
    lin = torch.nn.Linear(3, 3)
    with DeviceGuard(lin) as guard:
        scores = lin(torch.ones(4, 3, device="cpu")).sum(1)  # on the model's device
        keep = torch.topk(scores, 2).indices
        w = torch.zeros(4)  # implicit device: the host on a GPU run
        w[keep] = 0.5
    assert [v[0].split(".")[-1] for v in guard.violations] == ["__setitem__"]
    with DeviceGuard(lin) as guard:
        scores = lin(torch.ones(4, 3).to("cpu")).sum(1)
        w = torch.zeros(4, device=scores.device)
        w[torch.topk(scores, 2).indices] = 0.5
        _ = (w * scores).sum() * torch.tensor(2.0)  # 0-dim host scalars are legal on CUDA
    assert guard.violations == [] and guard.checked > 0
    with DeviceGuard(lin) as guard:  # an unmoved batch reaching the model
        lin(torch.ones(4, 3))
    assert guard.violations


VARIANTS = [(m, {}) for m in METHOD_NAMES] + [
    ("dualselect", {"engine": "oracle", "ref_mode": "hard", "task_mode": "hard"}),
    (
        "dualselect",
        {"task_token_fraction": 0.8, "k_ref": None, "k_ref_fraction": 0.2, "ref_selector": "random"},
    ),
    (
        "dualselect",
        {"gradient_accumulation_steps": 2, "per_device_train_batch_size": 4, "correction": "project_add"},
    ),
]


@pytest.mark.parametrize(("method", "extra"), VARIANTS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(VARIANTS)])
def test_every_method_keeps_tensors_on_the_model_device(organism_dir, tmp_path, method, extra, monkeypatch):
    torch.set_num_threads(1)
    cfg = small_cfg(organism_dir, tmp_path / method, method, max_steps=5, **extra)
    _, trainer_cls = METHODS[method]
    guards: list[DeviceGuard] = []
    init = trainer_cls.train

    def guarded_train(self, *a, **kw):  # enter the guard once the model exists
        with DeviceGuard(self.model) as guard:
            guards.append(guard)
            return init(self, *a, **kw)

    monkeypatch.setattr(trainer_cls, "train", guarded_train)
    trainer = run_training(method, cfg)
    assert trainer.state.global_step == 5
    (guard,) = guards
    assert guard.checked > 100
    report = "\n\n".join(f"{op}\n{stack}" for op, stack in guard.violations[:5])
    assert not guard.violations, f"{len(guard.violations)} host/device mixes, first:\n{report}"
