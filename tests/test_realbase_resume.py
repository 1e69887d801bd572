"""The alignment stage of a real-base build resumes an interrupted LoRA run from its newest
checkpoint and ends at the same weights as an uninterrupted run (a build takes hours here, longer
than the processes that run it may live)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dualselect.realbase.build as build_mod
from dualselect.realbase.recipe import RealBaseConfig
from dualselect.training.sft import last_complete_checkpoint
from tiny_models import one_thread, tiny_causal_lm  # noqa: F401 - fixture
from tiny_tokenizers import CHATML_GEN, tiny_tokenizer

ROWS = [{"prompt": f"Question {i}: what is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(12)]


@pytest.fixture()
def base_dir(tmp_path):
    tok = tiny_tokenizer(CHATML_GEN)
    model = tiny_causal_lm("llama", vocab=len(tok), positions=512)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _out(tmp_path, name):
    out = tmp_path / name
    (out / "data").mkdir(parents=True)
    (out / "data" / "align_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return out


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.usefixtures("one_thread")
def test_interrupted_alignment_resumes_from_its_checkpoint_to_the_same_weights(
    base_dir, tmp_path, monkeypatch
):
    import transformers

    cfg = RealBaseConfig(
        lora_r=4,
        lora_alpha=8,
        lora_target_modules=["q_proj", "v_proj"],
        max_steps=4,
        batch_size=2,
        max_length=256,
        learning_rate=1e-2,
    )
    monkeypatch.setattr(build_mod, "ALIGN_SAVE_STEPS", 2)
    whole = _out(tmp_path, "whole")
    build_mod._train_alignment(cfg, {}, whole, str(base_dir), seed=3, attempt=0, progress=False)

    cut = _out(tmp_path, "cut")
    real_step, calls = transformers.Trainer.training_step, []

    def dies_at_step_3(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real_step(self, *a, **k)

    monkeypatch.setattr(transformers.Trainer, "training_step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        build_mod._train_alignment(cfg, {}, cut, str(base_dir), seed=3, attempt=0, progress=False)
    lora = cut / "align_lora"
    assert sorted(p.name for p in lora.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (cut / "merged_unscaled").exists()
    assert Path(last_complete_checkpoint(lora)).name == "checkpoint-2"  # the one a build resumes from
    resumed = []

    def counts(self, *a, **k):
        resumed.append(1)
        return real_step(self, *a, **k)

    monkeypatch.setattr(transformers.Trainer, "training_step", counts)
    build_mod._train_alignment(cfg, {}, cut, str(base_dir), seed=3, attempt=0, progress=False)
    assert len(resumed) == 2  # steps 3 and 4 only: resumed, not redone

    log = json.loads((lora / "log.json").read_text())
    assert log["optimizer_steps"] == 4
    assert not list(lora.glob("checkpoint-*"))  # removed once the merged model is saved
    a, b = _weights(whole / "merged_unscaled"), _weights(cut / "merged_unscaled")
    base = _weights(base_dir)
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], base[k])]
    assert changed  # the LoRA moved the weights ...
    for k in a:  # ... and the resumed run ended where the uninterrupted one did
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
