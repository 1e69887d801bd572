"""DualSelect (and a baseline) under torchrun, 2 processes on gloo/CPU, give the
selections and the adapter of 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training_helpers import max_abs_diff

WORKER = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from pathlib import Path
from training_helpers import lora_state, small_cfg
from dualselect.training import METHODS

method, out, batch = {method!r}, {out!r}, {batch}
cfg = small_cfg(Path({organism!r}), out, method, max_steps=6, per_device_train_batch_size=batch,
                lora_dropout=0.0, use_cpu=True, save_strategy="steps", save_steps=3)
trainer = METHODS[method][1](model=cfg.model_name_or_path, args=cfg, train_dataset=cfg.train_data)
trainer.train()
tokens = trainer.global_supervised_tokens()
if trainer.args.process_index == 0:
    torch.save(lora_state(trainer), os.path.join(out, "final.pt"))
    json.dump({{"tokens": tokens, "world": trainer.args.world_size}}, open(os.path.join(out, "extra.json"), "w"))
"""


def _launch(organism_dir, method, out, batch, procs):
    out.mkdir(parents=True, exist_ok=True)
    script = out / "worker.py"
    script.write_text(
        WORKER.format(
            tests=str(Path(__file__).parent),
            organism=str(organism_dir),
            method=method,
            out=str(out),
            batch=batch,
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(script)]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    return torch.load(out / "final.pt"), json.loads((out / "extra.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dualselect", "kl", "sft", "lisa"])
def test_two_processes_equal_one_process_with_the_same_global_batch(organism_dir, tmp_path, method):
    one, e1 = _launch(organism_dir, method, tmp_path / "one", 8, 1)
    two, e2 = _launch(organism_dir, method, tmp_path / "two", 4, 2)
    assert (e1["world"], e2["world"]) == (1, 2)
    assert e1["tokens"] == e2["tokens"]  # counters summed over ranks
    diff = max_abs_diff(one, two)
    print(f"{method}: max abs diff 1 vs 2 processes {diff:.3g}")
    assert diff <= 1e-5
    # checkpoints: each process writes its own method state into the staging
    # directory, the main one publishes it; the per-process counters add up to the run's
    for n, (run, extra) in {1: (tmp_path / "one", e1), 2: (tmp_path / "two", e2)}.items():
        ckpt = run / "checkpoint-6"
        names = sorted(p.name for p in ckpt.glob("method_state*.pt"))
        assert names == ["method_state.pt", "method_state_1.pt"][:n], names
        assert (ckpt / "trainer_state.json").exists() and not list(run.glob(".checkpoint-*"))
        states = [torch.load(ckpt / x, weights_only=True) for x in names]
        assert sum(s["supervised_tokens"] for s in states) == extra["tokens"]
    if method == "dualselect":
        rows = lambda p: [json.loads(x) for x in (p / "selection_log.jsonl").read_text().splitlines()]  # noqa: E731
        la, lb = rows(tmp_path / "one"), rows(tmp_path / "two")
        assert [(r["event"], r["step"]) for r in la] == [(r["event"], r["step"]) for r in lb]
        for a, b in zip(la, lb):
            key = "indices" if a["event"] == "refresh" else "task_indices"
            assert a[key] == b[key]
            if a["event"] == "step":
                assert a["batch_indices"] == b["batch_indices"] and len(a["batch_indices"]) == 8


def _fake_trainer(**kw):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    args = SimpleNamespace(n_gpu=kw.pop("n_gpu", 1), world_size=kw.pop("world_size", 1))
    acc = SimpleNamespace(distributed_type=kw.pop("kind", DistributedType.NO))
    return SimpleNamespace(args=args, accelerator=acc, **kw)


def test_unsupported_multi_device_setups_are_refused_clearly():
    from accelerate.utils import DistributedType

    from dualselect.training.distributed import refuse_distributed

    refuse_distributed(_fake_trainer(), "X")  # one process: fine
    refuse_distributed(_fake_trainer(world_size=2, kind=DistributedType.MULTI_CPU), "X")  # DDP: fine
    with pytest.raises(NotImplementedError, match="FSDP and DeepSpeed"):
        refuse_distributed(_fake_trainer(is_fsdp_enabled=True), "X")
    with pytest.raises(NotImplementedError, match="FSDP and DeepSpeed"):
        refuse_distributed(_fake_trainer(is_deepspeed_enabled=True), "X")
    with pytest.raises(NotImplementedError, match="DataParallel"):
        refuse_distributed(_fake_trainer(n_gpu=2), "X")
    with pytest.raises(NotImplementedError, match="distributed type"):
        refuse_distributed(_fake_trainer(world_size=2, kind=DistributedType.XLA), "X")


def test_bucket_slack_has_a_per_device_default():
    from dualselect.training import load_config

    cfg = load_config("dualselect")
    assert cfg.bucket_slack == "auto"
    assert cfg.resolved_bucket_slack("cpu") == 0.25 and cfg.resolved_bucket_slack("cuda") is None
    assert load_config("dualselect", overrides={"bucket_slack": "none"}).resolved_bucket_slack("cpu") is None
    assert load_config("dualselect", overrides={"bucket_slack": "0.5"}).resolved_bucket_slack("cuda") == 0.5
    with pytest.raises(ValueError, match="bucket_slack='wide'"):
        load_config("dualselect", overrides={"bucket_slack": "wide"})
