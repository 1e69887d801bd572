"""The method state is saved with every checkpoint and restored; a run killed
with SIGKILL mid-run and resumed ends with the same adapter as an uninterrupted run."""

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
import json, os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from training_helpers import lora_state, small_cfg
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
    from training_helpers import small_cfg

    (tmp_path / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    cfg = small_cfg(organism_dir, tmp_path, "dualselect")
    trainer = DualSelectTrainer(model=cfg.model_name_or_path, args=cfg, train_dataset=cfg.train_data)
    with pytest.raises(ValueError, match="method_state.pt"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


class _Payload:
    """A pickle that runs code when loaded: it creates the file ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_method_state_runs_no_code_on_resume(organism_dir, tmp_path, capsys):
    """``method_state.pt`` is read with weights_only=True; a pickle carrying code
    is refused with one line naming the file, and the code never runs."""
    from dualselect.cli.main import main

    ckpt = tmp_path / "run" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    marker = tmp_path / "PWNED"
    torch.save({"supervised_tokens": 0, "x": _Payload(str(marker))}, ckpt / "method_state.pt")
    argv = ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(tmp_path / "run")]
    argv += ["--max_steps", "3", "--max_length", "128", "--resume_from_checkpoint", str(ckpt)]
    rc = main(argv)
    assert not marker.exists()  # the pickle's code never ran
    err = [x for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error:" in x]
    assert rc == 2 and len(err) == 1, err
    assert "method_state.pt: not a method state this trainer wrote" in err[0] and "never code" in err[0]


KILL_IN_SAVE = r"""
import os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from training_helpers import lora_state, small_cfg
from pathlib import Path
from dualselect.training import METHODS
from dualselect.utils import log_to_stderr

log_to_stderr()  # the library's notes on stderr, as the command line shows them
organism, out, mode = {organism!r}, {out!r}, {mode!r}
cls = METHODS["dualselect"][1]

class Killed(cls):
    def _save_rng_state(self, output_dir):  # the Trainer's files are half written at step 6
        if self.state.global_step == 6:
            os.kill(os.getpid(), signal.SIGKILL)
        return super()._save_rng_state(output_dir)

def run(out, trainer_cls, resume=None):
    cfg = small_cfg(Path(organism), out, "dualselect", max_steps=7, save_strategy="steps", save_steps=3,
                    per_device_train_batch_size=4, save_total_limit=1)
    trainer = trainer_cls(model=cfg.model_name_or_path, args=cfg, train_dataset=cfg.train_data)
    trainer.train(resume_from_checkpoint=resume)
    torch.save(lora_state(trainer), os.path.join(out, "final.pt"))

if mode == "straight_then_kill":
    run(os.path.join(out, "straight"), cls)
    run(os.path.join(out, "killed"), Killed)
else:
    run(os.path.join(out, "killed"), cls, resume=True)
"""


def test_a_kill_during_a_checkpoint_leaves_the_last_one_resumable(organism_dir, tmp_path):
    """A SIGKILL while checkpoint-6 is written leaves no checkpoint-6 (it is
    built in .checkpoint-6.tmp and renamed whole), checkpoint-3 is kept (save_total_limit 1
    removes it only once checkpoint-6 is in place), and resume_from_checkpoint=True skips an
    incomplete checkpoint (here one holding only method_state.pt, what the old order left) with a
    note and ends with the uninterrupted adapter."""

    def worker(mode):
        code = KILL_IN_SAVE.format(
            tests=str(Path(__file__).parent), organism=str(organism_dir), out=str(tmp_path), mode=mode
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
        )

    first = worker("straight_then_kill")
    assert first.returncode == -9, first.stderr[-3000:]
    killed = tmp_path / "killed"
    assert (killed / ".checkpoint-6.tmp").is_dir() and not (killed / "checkpoint-6").exists()
    assert (killed / "checkpoint-3" / "trainer_state.json").exists()
    (killed / "checkpoint-9").mkdir()  # an older version's half checkpoint: method state only
    torch.save({"supervised_tokens": 0}, killed / "checkpoint-9" / "method_state.pt")
    second = worker("resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "skipped the incomplete checkpoint" in second.stderr and "checkpoint-9" in second.stderr
    assert not (killed / ".checkpoint-6.tmp").exists()
    a = torch.load(tmp_path / "straight" / "final.pt")
    b = torch.load(killed / "final.pt")
    assert max_abs_diff(a, b) <= 1e-6
