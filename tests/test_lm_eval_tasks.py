"""lm-eval-harness on a local GSM8K file (offline), with a tiny random Qwen2 built locally.
Skipped when lm-eval is not installed (`pip install -e ".[lmeval]"`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from dualselect.evaluation.lm_eval_tasks import flatten_results, gsm8k_local_task, run_lm_eval_full  # noqa: E402
from test_export import run_dir  # noqa: E402, F401
from tiny_models import one_thread  # noqa: E402, F401
from tiny_tokenizers import CHATML_GEN, tiny_tokenizer  # noqa: E402

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"
pytestmark = pytest.mark.usefixtures("one_thread")


def _gsm8k_file(tmp_path) -> Path:
    """The shared GSM8K test file when present (../shared/data), else 4 docs in its format."""
    if GSM8K.exists():
        return GSM8K
    p = tmp_path / "gsm8k.jsonl"
    docs = [
        {
            "question": f"Tom has {i} apples and gets 2 more. How many?",
            "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}",
        }
        for i in range(4)
    ]
    p.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return p


def test_gsm8k_local_task_offline_scores_real_generations(tmp_path, monkeypatch):
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, Qwen2Config

    tok = tiny_tokenizer(CHATML_GEN)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(cfg)
    real = HFLM.generate_until
    seen = []

    def answer_half(self, requests, disable_tqdm=False):
        # real greedy generations from the tiny model, then the gold answer for even-numbered
        # documents: the task's regex filters and exact match must score exactly those
        outs = real(self, requests, disable_tqdm=disable_tqdm)
        seen.extend(outs)
        return [r.doc["answer"] if r.doc_id % 2 == 0 else o for r, o in zip(requests, outs)]

    monkeypatch.setattr(HFLM, "generate_until", answer_half)
    task = gsm8k_local_task(_gsm8k_file(tmp_path), max_gen_toks=4)
    res = run_lm_eval_full(model, tok, [task], limit=4)
    flat = flatten_results(res)
    assert res["n-samples"]["gsm8k_local"] == {"original": 1319 if GSM8K.exists() else 4, "effective": 4}
    assert len(seen) == 4 and all(isinstance(s, str) for s in seen)
    assert flat["gsm8k_local/exact_match,strict-match"] == pytest.approx(0.5)
    assert flat["gsm8k_local/exact_match,flexible-extract"] >= 0.5


def test_gsm8k_local_task_errors():
    with pytest.raises(FileNotFoundError, match="no such file"):
        gsm8k_local_task("/nonexistent/gsm8k.jsonl")
    with pytest.raises(ValueError, match="fewshot_file"):
        gsm8k_local_task(__file__, num_fewshot=3)


def test_lmeval_command_records_scores_in_the_run_card(request, tmp_path, capsys):
    from dualselect.cli.main import main

    run, _, _ = request.getfixturevalue("run_dir")  # a 4-step SFT run on a tiny Qwen2 (test_export)
    docs = tmp_path / "gsm8k_small.jsonl"
    docs.write_text(
        "\n".join(
            json.dumps({"question": f"What is {i} plus 2?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"})
            for i in range(3)
        )
        + "\n"
    )
    out = tmp_path / "scores.json"
    rc = main(
        [
            "lmeval",
            str(run),
            "--gsm8k",
            str(docs),
            "--limit",
            "2",
            "--max-gen-toks",
            "4",
            "--out",
            str(out),
            "--record",
        ]
    )
    assert rc == 0
    scores = json.loads(out.read_text())
    assert set(scores) >= {"gsm8k_local/exact_match,strict-match", "gsm8k_local/exact_match,flexible-extract"}
    card = (run / "README.md").read_text()
    assert "| lm_eval/gsm8k_local/exact_match,strict-match |" in card
    assert "gsm8k_local/exact_match,strict-match" in capsys.readouterr().out
    # --record refuses a model that is not a run; no task is an error
    assert main(["lmeval", str(tmp_path), "--gsm8k", str(docs), "--record"]) == 2
    assert main(["lmeval", str(run)]) == 2
