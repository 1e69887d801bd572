"""Divergence: a run whose loss, gradients or weights stop being finite stops with a
clear message and a non-zero exit, keeps its last good checkpoint and never saves a NaN adapter."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file

from dualselect.cli.main import main
from dualselect.training.callbacks import (
    DivergenceCallback,
    TrainingDiverged,
    assert_finite_params,
    nonfinite_params,
)
from dualselect.training.run import load_config, run_training


def _cfg(organism_dir, out, method="sft", **kw):
    return load_config(
        method,
        overrides={
            "model_name_or_path": str(organism_dir),
            "output_dir": str(out),
            "train_data": str(organism_dir / "data" / "redorca_train.jsonl"),
            "max_length": 128,
            "logging_steps": 1,
            **kw,
        },
    )


def test_sft_at_lr_1e3_stops_and_saves_no_adapter(organism_dir, tmp_path):
    """The issue's probe: lr 1e3 used to exit 0 with loss 0.0 and an all-NaN adapter."""
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="the run diverged at optimiser step") as e:
        run_training("sft", _cfg(organism_dir, out, learning_rate=1e3, max_steps=20))
    assert "lower learning_rate" in str(e.value)
    assert not (out / "adapter_model.safetensors").exists() and not (out / "config.yaml").exists()
    log = json.loads((out / "log.json").read_text())
    assert log["status"] == "diverged" and log["diverged_at_step"] < 20
    assert all(math.isfinite(r["loss"]) for r in log["log_history"] if "loss" in r)


def test_last_good_checkpoint_is_kept_and_finite(organism_dir, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(
        organism_dir,
        out,
        learning_rate=1e3,
        max_steps=20,
        save_strategy="steps",
        save_steps=1,
        max_grad_norm=0.0,
    )
    with pytest.raises(TrainingDiverged) as e:
        run_training("sft", cfg)
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert ckpts, "checkpoints before the divergence are kept"
    assert e.value.last_good_checkpoint == str(ckpts[-1]) and str(ckpts[-1]) in str(e.value)
    for c in ckpts:  # every checkpoint on disk holds finite weights
        assert all(torch.isfinite(t).all() for t in load_file(c / "adapter_model.safetensors").values())
    assert json.loads((out / "log.json").read_text())["last_good_checkpoint"] == str(ckpts[-1])


def test_dualselect_divergence_says_the_run_diverged(organism_dir, tmp_path):
    out = tmp_path / "ds"
    cfg = _cfg(
        organism_dir,
        out,
        method="dualselect",
        learning_rate=1e3,
        max_steps=30,
        selection_warmup_steps=2,
        max_grad_norm=0.0,
    )
    with pytest.raises(TrainingDiverged, match=r"diverged") as e:
        run_training("dualselect", cfg)
    assert "NaN or inf" in str(e.value) or "non-finite" in str(e.value)
    assert not (out / "adapter_model.safetensors").exists()
    assert json.loads((out / "log.json").read_text())["status"] == "diverged"


def test_cli_exit_code_3_and_one_line(organism_dir, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--model_name_or_path",
            str(organism_dir),
            "--output_dir",
            str(tmp_path / "cli"),
            "--learning_rate",
            "1000",
            "--max_steps",
            "20",
            "--max_length",
            "128",
        ]
    )
    err = re.split(r"[\r\n]", capsys.readouterr().err)  # progress bars redraw with \r
    assert rc == 3
    (msg,) = [line for line in err if "error:" in line]
    assert msg.startswith("dualselect train: error: the run diverged")
    assert not any("Traceback" in line for line in err)


def test_a_normal_run_is_untouched(organism_dir, tmp_path):
    out = tmp_path / "ok"
    trainer = run_training("sft", _cfg(organism_dir, out, learning_rate=1e-3, max_steps=3))
    assert trainer.state.global_step == 3
    assert json.loads((out / "log.json").read_text())["status"] == "completed"
    assert not nonfinite_params(trainer.model)
    assert not list(out.glob(".save-*"))  # the temporary save directory is gone


class _State:
    global_step = 4


def _lora_like():
    m = torch.nn.Linear(3, 2)
    m.weight.grad = torch.zeros_like(m.weight)
    return m


def test_callback_checks_gradients_weights_and_logs():
    cb, m = DivergenceCallback(), _lora_like()
    cb.on_pre_optimizer_step(None, _State(), None, model=m)  # finite: nothing
    m.weight.grad[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="optimiser step 5: non-finite gradients.*weight"):
        cb.on_pre_optimizer_step(None, _State(), None, model=m)
    m.weight.grad = None
    with torch.no_grad():
        m.bias[1] = float("inf")
    with pytest.raises(TrainingDiverged, match="non-finite weights.*bias"):
        cb.on_step_end(None, _State(), None, model=m)
    with pytest.raises(TrainingDiverged, match="logged grad_norm is inf"):
        cb.on_log(None, _State(), None, logs={"loss": 1.0, "grad_norm": float("inf")})
    with pytest.raises(TrainingDiverged, match="logged loss is nan"):
        cb.on_log(None, _State(), None, logs={"loss": float("nan")})
    cb.on_log(None, _State(), None, logs={"loss": 0.5, "grad_norm": 1.0})
    m.bias.requires_grad_(False)  # frozen (base) weights are not ours to judge
    cb.on_step_end(None, _State(), None, model=m)
    with pytest.raises(TrainingDiverged, match="not saved"):
        m.bias.requires_grad_(True)
        assert_finite_params(m)


def test_nonfinite_selection_scores_name_the_divergence():
    from dualselect.selection import select_top
    from dualselect.selection.scoring import NonFiniteScores

    with pytest.raises(NonFiniteScores, match="scores contain NaN or inf.*the run diverged"):
        select_top(torch.tensor([0.1, float("nan"), 0.3]), mode="hard", k=1)


def test_eval_refuses_a_nan_adapter(organism_dir, tmp_path):
    """An adapter with NaN weights (e.g. saved by an older version) is not evaluated."""
    from peft import PeftModel

    from dualselect.cli.eval_cmd import _load_variant
    from dualselect.training.lora import apply_lora
    from dualselect.training.model import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(str(organism_dir))
    peft_model = apply_lora(model, r=2, alpha=4)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.fill_(float("nan"))
    peft_model.save_pretrained(tmp_path / "nan_adapter")
    assert isinstance(peft_model, PeftModel)
    with pytest.raises(ValueError, match="holds NaN or inf"):
        _load_variant(str(tmp_path / "nan_adapter"), str(organism_dir))
