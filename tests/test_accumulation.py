"""Selection covers the optimiser step's whole batch (every accumulation
micro-batch); configurations that make selection a no-op say so."""

from __future__ import annotations

import pytest
import torch

from dualselect.training import run_training
from dualselect.utils import read_jsonl
from training_helpers import lora_state, small_cfg


def _run(organism_dir, out, batch, accum, **kw):
    torch.set_num_threads(1)
    cfg = small_cfg(
        organism_dir,
        out,
        "dualselect",
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        lora_dropout=0.0,  # dropout masks depend on the micro-batch shapes
        max_steps=6,
        **kw,
    )
    trainer = run_training("dualselect", cfg)
    return trainer, read_jsonl(out / "selection_log.jsonl")


@pytest.mark.parametrize("kw", [{"k_task": 4}, {"task_token_fraction": 0.6, "task_mode": "hard"}])
def test_batch_8_equals_batch_4_times_accumulation_2(organism_dir, tmp_path, kw):
    a, log_a = _run(organism_dir, tmp_path / "b8", 8, 1, **kw)
    b, log_b = _run(organism_dir, tmp_path / "b4x2", 4, 2, **kw)
    steps_a = [r for r in log_a if r["event"] == "step"]
    steps_b = [r for r in log_b if r["event"] == "step"]
    assert len(steps_a) == len(steps_b) == 4
    for x, y in zip(steps_a, steps_b):
        assert x["batch_indices"] == y["batch_indices"] and len(x["batch_indices"]) == 8
        assert x["task_indices"] == y["task_indices"]
        assert len(x["task_indices"]) < 8  # filtering is on: fewer than the 8 samples are kept
    refs = [(r["indices"], r["step"]) for r in log_a if r["event"] == "refresh"]
    assert refs == [(r["indices"], r["step"]) for r in log_b if r["event"] == "refresh"]
    la, lb = lora_state(a), lora_state(b)
    for n in la:
        rel = float((la[n] - lb[n]).norm() / la[n].norm().clamp_min(1e-12))
        assert rel <= 1e-5, (n, rel)
    assert a.supervised_tokens == b.supervised_tokens


def test_no_op_configurations_warn(organism_dir, tmp_path):
    with pytest.warns(UserWarning, match="k_task=4 >= the optimiser step's batch"):
        small_cfg_trainer(
            organism_dir, tmp_path / "k", per_device_train_batch_size=2, gradient_accumulation_steps=2
        )
    with pytest.warns(UserWarning, match="plain SFT"):
        small_cfg_trainer(organism_dir, tmp_path / "w", max_steps=3, selection_warmup_steps=3)


def small_cfg_trainer(organism_dir, out, **kw):
    from dualselect.training import DualSelectTrainer

    cfg = small_cfg(organism_dir, out, "dualselect", **kw)
    return DualSelectTrainer(model=cfg.model_name_or_path, args=cfg, train_dataset=cfg.train_data)


def test_selection_statistics_reach_the_trainer_logs(organism_dir, tmp_path):
    trainer, log = _run(organism_dir, tmp_path / "logs", 8, 1, k_task=4)
    rows = [r for r in trainer.state.log_history if "loss" in r]
    assert len(rows) == 6  # logging_steps=1
    sel = [r for r in rows if "selection/kept_token_share" in r]
    assert len(sel) == 4  # the 4 selection steps after 2 warm-up steps
    steps = [r for r in log if r["event"] == "step"]
    for r, s in zip(sel, steps):
        assert r["selection/kept_sample_share"] == 0.5
        assert abs(r["selection/kept_token_share"] - s["kept_token_share"]) < 1e-6
        assert abs(r["selection/cos_d_r"] - s["cos_d_r"]) < 1e-6
        # the logged loss is the whole batch's token-mean loss, as Standard SFT logs it
        assert abs(r["loss"] - s["batch_loss"]) < 1e-3 and r["selection/kept_loss"] < r["loss"] + 1e-6
    assert "selection/refresh_overlap" in sel[-1]  # the second refresh (step 5) compared with the first
