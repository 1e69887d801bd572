"""Model cards and `dualselect export` (adapter, and merged) on a tiny local Qwen2."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from dualselect.cli.main import main
from dualselect.training.model_card import add_evaluation, base_model_id
from tiny_models import one_thread, tiny_causal_lm  # noqa: F401
from tiny_tokenizers import CHATML_GEN, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread


@pytest.fixture
def run_dir(tmp_path):
    """A base model directory and a 4-step SFT run on it (through the package's trainer)."""
    from dualselect.training import SFTConfig, SFTTrainer

    base = tmp_path / "base"
    tok = tiny_tokenizer(CHATML_GEN)
    tiny_causal_lm("qwen2", vocab=len(tok)).save_pretrained(base)
    tok.save_pretrained(base)
    rows = [
        {"prompt": "What is two plus three?", "response": "Five."},
        {"prompt": "Tell me a story.", "response": "Once upon a time a cat."},
    ] * 4
    args = SFTConfig(
        model_name_or_path=str(base),
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        learning_rate=5e-2,
        per_device_train_batch_size=4,
        lora_r=4,
        report_to=[],
    )
    trainer = SFTTrainer(model=str(base), args=args, train_dataset=rows)
    trainer.train()
    trainer.save_model(str(tmp_path / "run"))
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(base)}))
    return tmp_path / "run", base, trainer


def test_model_card_names_method_data_budget(run_dir):
    run, base, trainer = run_dir
    card = (run / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    # a local directory is not a model id: no base_model in the metadata, no path anywhere
    assert "base_model" not in meta and meta["library_name"] == "peft"
    assert str(base) not in card and "local directory 'base'" in card
    assert "`lora_r=4`" in card and "`learning_rate=0.05`" in card
    assert "`lora_target_modules=[q_proj, v_proj]`" in card  # the adapter's real targets
    assert "**task** (`list`): 8 of 8 records used" in card
    assert f"supervised tokens: {trainer.supervised_tokens}" in card and "optimizer steps: 4" in card
    assert "No evaluation recorded" in card
    add_evaluation(run, {"exact_match_strict.gsm8k": 0.25, "refusal_rate.advbench.keyword": 0.9})
    card = (run / "README.md").read_text()
    assert "| exact_match_strict.gsm8k | 0.25 |" in card and "## Use" in card


def test_base_model_id_from_hub_cache_and_organism(tmp_path):
    snap = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    assert base_model_id(str(snap))[0] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert base_model_id("HuggingFaceTB/SmolLM2-135M")[0] == "HuggingFaceTB/SmolLM2-135M"
    org = tmp_path / "organism" / "26b3"
    org.mkdir(parents=True)
    (org / "organism.json").write_text("{}")
    ident, desc = base_model_id(str(org))
    assert ident is None and "organism" in desc


def test_export_merged_matches_adapter(run_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, base, _ = run_dir
    out = tmp_path / "merged"
    assert main(["export", str(run), "--merge", "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not (out / "adapter_config.json").exists()
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "Merged model" in card
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(run)).eval()
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    x = torch.tensor([[1, 5, 9, 17, 33, 40]])
    with torch.no_grad():
        a, b, c = merged(x).logits, ref(x).logits, plain(x).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-4)  # the adapter did change the model
    # an existing non-empty output is refused without --force, and kept intact
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert (out / "model.safetensors").exists()
    assert main(["export", str(run), "--out", str(out), "--force"]) == 0
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_export_puts_evaluation_results_in_the_card(run_dir, tmp_path, capsys):
    run, _, _ = run_dir
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "results.json").write_text(
        json.dumps({"methods": {"run": {"exact_match_strict.gsm8k": 0.5, "n": 8, "name": "x"}, "base": {}}})
    )
    out = tmp_path / "exported"
    assert main(["export", str(run), "--out", str(out), "--eval-results", str(ev)]) == 0
    card = (out / "README.md").read_text()
    assert "| exact_match_strict.gsm8k | 0.5 |" in card and "| n | 8 |" in card and "| name |" not in card
    assert json.loads((out / "eval_summary.json").read_text()) == {"exact_match_strict.gsm8k": 0.5, "n": 8}
    assert (
        main(
            [
                "export",
                str(run),
                "--out",
                str(tmp_path / "o2"),
                "--eval-results",
                str(ev),
                "--eval-name",
                "nope",
            ]
        )
        == 2
    )
    assert "no variant 'nope'; variants: ['base', 'run']" in capsys.readouterr().err


def test_export_refuses_non_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a training run directory" in capsys.readouterr().err
