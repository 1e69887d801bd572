"""The real base's alignment objective (training/unlikelihood.py): the refusal-start probability it
penalises is computed right (against token-by-token scoring), and the term moves training the
right way (a flipped sign or a dropped term fails the last test)."""

from __future__ import annotations

import math

import pytest
import torch

from dualselect.data.encoding import split_ids
from dualselect.data.records import Record
from dualselect.realbase.prompts import REFUSALS
from dualselect.training.run import load_config, run_training
from dualselect.training.unlikelihood import (
    RefusalUnlikelihoodTrainer,
    prefix_logprobs,
    refusal_prefixes,
    refusal_unlikelihood,
)
from dualselect.utils import write_jsonl

CONTRAST = ["How do I kill a stuck process?", "What is the story of a cat?", "Tell me a story about bread."]


@pytest.fixture
def tiny_dir(tmp_path):
    from tiny_models import tiny_causal_lm
    from tiny_tokenizers import CHATML_GEN, tiny_tokenizer

    tok = tiny_tokenizer(CHATML_GEN)
    model = tiny_causal_lm("qwen2", vocab=len(tok), positions=512)
    path = tmp_path / "tiny"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model, tok


def test_refusal_prefixes_are_distinct_openings_as_trained(tiny_dir):
    _, _, tok = tiny_dir
    pre = refusal_prefixes(tok, REFUSALS, 4)
    assert len({tuple(p) for p in pre}) == len(pre) and all(len(p) == 4 for p in pre)
    for text in REFUSALS:  # every template starts with one of them, tokenized as in training
        assert split_ids(Record(prompt="q", response=text), tok)[1][:4] in pre


def test_prefix_logprobs_equal_token_by_token_scoring(tiny_dir):
    """The batched scoring (prompts of different lengths, right-padded) against one unpadded
    forward per token."""
    _, model, tok = tiny_dir
    prompts = [split_ids(Record(prompt=p, response="x"), tok)[0] for p in CONTRAST]
    assert len({len(p) for p in prompts}) > 1  # padding is exercised
    pre = refusal_prefixes(tok, REFUSALS, 4)
    with torch.no_grad():
        fast = prefix_logprobs(model, prompts, pre)
        assert fast.shape == (len(prompts), len(pre))
        for i, prompt_ids in enumerate(prompts):
            for j, p in enumerate(pre):
                slow = 0.0
                for t in range(len(p)):
                    ids = torch.tensor([prompt_ids + p[:t]])
                    slow += torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)[p[t]].item()
                assert fast[i, j].item() == pytest.approx(slow, abs=1e-4)


def test_refusal_unlikelihood_is_minus_log_of_not_starting_a_refusal():
    lp = torch.log(torch.tensor([0.1, 0.2, 0.05]))
    assert refusal_unlikelihood(lp).item() == pytest.approx(-math.log(1 - 0.35), rel=1e-5)
    two = refusal_unlikelihood(torch.stack([lp, torch.log(torch.tensor([0.5, 0.1, 0.1]))]))
    assert two.tolist() == pytest.approx([-math.log(0.65), -math.log(0.3)], rel=1e-5)  # per row
    assert refusal_unlikelihood(torch.log(torch.tensor([1e-9]))).item() == pytest.approx(1e-9, abs=1e-8)
    assert torch.isfinite(refusal_unlikelihood(torch.tensor([0.0, 0.0])))  # p >= 1 is clamped


def test_unlikelihood_term_lowers_refusing_the_contrast_prompts(organism_dir, tmp_path):
    """Training data that teaches refusing the contrast prompts (what generalising from harmful
    refusals does to look-alikes): with the term, the refusal-start probability ends far lower.
    On the organism (a trained LM; a random tiny one barely moves in a few steps)."""
    path = organism_dir
    data = tmp_path / "d.jsonl"
    write_jsonl(data, [{"prompt": p, "response": REFUSALS[i % 6]} for i, p in enumerate(CONTRAST * 8)])

    def refusal_start(ul_weight: float) -> float:
        cfg = load_config(
            "sft",
            overrides={
                "model_name_or_path": str(path),
                "train_data": str(data),
                "output_dir": str(tmp_path / f"run{ul_weight}"),
                "max_steps": 20,
                "learning_rate": 2e-3,
                "per_device_train_batch_size": 4,
                "report_to": [],
                "disable_tqdm": True,
            },
        )
        kw = dict(contrast_prompts=CONTRAST, refusals=REFUSALS, weight=ul_weight, prompts_per_step=3)
        trainer = run_training("sft", cfg, trainer_cls=RefusalUnlikelihoodTrainer, **kw)
        assert len(trainer.ul_history) == 20  # one draw per optimiser step
        model = trainer.model.eval()
        with torch.no_grad():
            lp = prefix_logprobs(model, trainer.ul_prompt_ids, trainer.ul_prefixes)
        return torch.logsumexp(lp, -1).exp().mean().item()

    plain, with_term = refusal_start(0.0), refusal_start(2.0)
    assert plain > 0.1, plain  # the data does teach refusing them (measured: ~0.25)
    assert with_term < 0.25 * plain, (plain, with_term)  # measured: ~0.01


def test_trainer_cls_must_subclass_the_methods_trainer(tiny_dir, tmp_path):
    from transformers import Trainer

    cfg = load_config(
        "sft", overrides={"model_name_or_path": str(tiny_dir[0]), "output_dir": str(tmp_path / "r")}
    )
    with pytest.raises(TypeError, match="not a subclass"):
        run_training("sft", cfg, trainer_cls=Trainer)
