"""Issue 11, item 4: the method state is saved with every checkpoint and restored; a run killed
with SIGKILL mid-run and resumed ends with the same adapter as an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paths_helpers import max_abs_diff

WORKER = r"""
import json, os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from paths_helpers import lora_state, small_cfg
from transformers import TrainerCallback
from dualselect.training import METHODS

organism, method, out, mode = {organism!r}, {method!r}, {out!r}, {mode!r}

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 5:  # checkpoint-3 is on disk; steps 4-5 are lost
            os.kill(os.getpid(), signal.SIGKILL)

def run(out, kill=False, resume=False):
    from pathlib import Path
    cfg = small_cfg(Path(organism), out, method, max_steps=7, save_strategy="steps", save_steps=3,
                    per_device_train_batch_size=4, gradient_accumulation_steps=2)
    trainer = METHODS[method][1](model=cfg.model_name_or_path, args=cfg, train_dataset=cfg.train_data,
                                 callbacks=[Kill()] if kill else None)
    trainer.train(resume_from_checkpoint=True if resume else None)
    torch.save(lora_state(trainer), os.path.join(out, "final.pt"))
    extra = {{"supervised_tokens": trainer.supervised_tokens}}
    if hasattr(trainer, "state_counts"):
        extra["state_counts"] = trainer.state_counts
    json.dump(extra, open(os.path.join(out, "extra.json"), "w"))

if mode == "straight_then_kill":
    run(os.path.join(out, "straight"))
    run(os.path.join(out, "killed"), kill=True)
else:
    run(os.path.join(out, "killed"), resume=True)
"""


def _worker(organism_dir, method, out, mode):
    code = WORKER.format(
        tests=str(Path(__file__).parent), organism=str(organism_dir), method=method, out=str(out), mode=mode
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "method",
    ["dualselect", *(pytest.param(m, marks=pytest.mark.slow) for m in ("sft", "kl", "lisa"))],
)
def test_sigkill_then_resume_gives_the_uninterrupted_adapter(organism_dir, tmp_path, method):
    first = _worker(organism_dir, method, tmp_path, "straight_then_kill")
    assert first.returncode == -9, first.stderr[-3000:]  # SIGKILL, after the uninterrupted run
    killed = tmp_path / "killed"
    assert (killed / "checkpoint-3" / "method_state.pt").exists()
    assert not (killed / "final.pt").exists()
    second = _worker(organism_dir, method, tmp_path, "resume")
    assert second.returncode == 0, second.stderr[-3000:]
    a = torch.load(tmp_path / "straight" / "final.pt")
    b = torch.load(killed / "final.pt")
    assert max_abs_diff(a, b) <= 1e-6
    # counters: the resumed run counts what the uninterrupted one counted
    ea = json.loads((tmp_path / "straight" / "extra.json").read_text())
    eb = json.loads((killed / "extra.json").read_text())
    assert ea == eb
    if method == "dualselect":
        rows = lambda p: [json.loads(x) for x in (p / "selection_log.jsonl").read_text().splitlines()]  # noqa: E731
        la, lb = rows(tmp_path / "straight"), rows(killed)
        assert [(r["event"], r["step"]) for r in la] == [(r["event"], r["step"]) for r in lb]
        assert [r.get("task_indices", r.get("indices")) for r in la] == [
            r.get("task_indices", r.get("indices")) for r in lb
        ]


def test_resume_without_method_state_is_refused(organism_dir, tmp_path):
    from dualselect.training import DualSelectTrainer
    from paths_helpers import small_cfg

    (tmp_path / "checkpoint-2").mkdir(parents=True)
    cfg = small_cfg(organism_dir, tmp_path, "dualselect")
    trainer = DualSelectTrainer(model=cfg.model_name_or_path, args=cfg, train_dataset=cfg.train_data)
    with pytest.raises(ValueError, match="method_state.pt"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
