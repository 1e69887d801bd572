"""Same tokens and loss masks as TRL's SFTTrainer for each dataset format, checked against TRL
itself (skipped when TRL is not installed: `pip install -e ".[trl]"`), on a tiny Qwen2 with a
ChatML tokenizer built locally; and the one-line switch: the TRL script's arguments work as they
are with SFTTrainer/DualSelectTrainer."""

from __future__ import annotations

import pytest

datasets = pytest.importorskip("datasets")

from dualselect.data import load_records  # noqa: E402
from dualselect.data.encoding import encode_records  # noqa: E402
from tiny_models import one_thread, tiny_causal_lm  # noqa: E402, F401
from tiny_tokenizers import CHATML, CHATML_GEN, tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is two plus three?"},
    {"role": "assistant", "content": "Five."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You are welcome. Anything else?"},
]
LONG = " ".join(["Once upon a time a small cat lived in a quiet house."] * 12)
FORMATS = {
    "text": [{"text": "The quick brown fox."}, {"text": LONG}],
    "prompt_completion": [
        {"prompt": "What is two plus three?", "completion": " Two plus three is five."},
        {"prompt": "Tell me a story.", "completion": " " + LONG},
    ],
    "conversational_prompt_completion": [
        {"prompt": MSGS[:2], "completion": MSGS[2:3]},
        {"prompt": MSGS[:4], "completion": MSGS[4:]},
    ],
    "messages": [{"messages": MSGS}, {"messages": MSGS[1:3]}],
}
MAX_LENGTH = 48  # the long samples are truncated (keep_start), as TRL does by default


def _trl_encoded(rows, tok, tmp_path, **cfg):
    trl = pytest.importorskip("trl")
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "trl"),
        max_length=MAX_LENGTH,
        bf16=False,
        gradient_checkpointing=False,
        report_to=[],
        use_cpu=True,
        dataset_num_proc=None,
        **cfg,
    )
    model = tiny_causal_lm("qwen2", vocab=len(tok))
    trainer = trl.SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok
    )
    return [(list(r["input_ids"]), list(r["labels"])) for r in trainer.train_dataset]


def _ours(rows, tok, **cfg):
    recs = load_records(rows).records
    enc, report = encode_records(recs, tok, max_length=MAX_LENGTH, truncation="keep_start", **cfg)
    return [(e["input_ids"], e["labels"]) for e in enc], report


@pytest.mark.parametrize("template", ["markers", "no_markers"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_same_tokens_and_masks_as_trl(fmt, template, tmp_path):
    tok = tiny_tokenizer(CHATML_GEN if template == "markers" else CHATML)
    rows = FORMATS[fmt]
    # TRL needs generation markers for assistant_only_loss; our spans from the rendering must give
    # the same mask on the template without them.
    trl_tok = tiny_tokenizer(CHATML_GEN)
    cfg = {"assistant_only_loss": True} if fmt == "messages" else {}
    expected = _trl_encoded(rows, trl_tok, tmp_path, **cfg)
    got, report = _ours(rows, tok, **cfg)
    assert got == expected and len(got) >= 1
    # every truncation is counted; a sample left with nothing supervised is dropped (as TRL) and counted
    n_cut = sum(1 for ids, _ in got if len(ids) == MAX_LENGTH)
    assert n_cut >= 1
    assert report.transformed.get(f"truncated (keep_start, max_length {MAX_LENGTH})", 0) == n_cut
    assert report.skipped.get("no_supervised_token", 0) == len(rows) - len(expected)


def test_trl_full_sequence_options(tmp_path):
    """assistant_only_loss=False (TRL's default for messages) and completion_only_loss=False."""
    tok = tiny_tokenizer(CHATML_GEN)
    for fmt, cfg in (
        ("messages", {"assistant_only_loss": False}),
        ("prompt_completion", {"completion_only_loss": False}),
        ("conversational_prompt_completion", {"assistant_only_loss": True}),
    ):
        assert _ours(FORMATS[fmt], tok, **cfg)[0] == _trl_encoded(FORMATS[fmt], tok, tmp_path, **cfg), fmt


def test_every_assistant_turn_is_supervised():
    """Multi-turn chat: both answers are trained, no user or system token is."""
    tok = tiny_tokenizer(CHATML)
    (e,), _ = encode_records(load_records([{"messages": MSGS}]).records, tok, max_length=512)
    sup = tok.decode([t for t in e["labels"] if t != -100])
    assert sup == "Five.<|im_end|>\nYou are welcome. Anything else?<|im_end|>\n"
    # without a template: the package's Human/Assistant format, both answers and their EOS
    plain = tiny_tokenizer(None)
    (e,), _ = encode_records(load_records([{"messages": MSGS[1:]}]).records, plain, max_length=512)
    assert (
        plain.decode([t for t in e["labels"] if t != -100])
        == " Five.</s> You are welcome. Anything else?</s>"
    )


def test_formatting_func_matches_trl(tmp_path):
    trl = pytest.importorskip("trl")
    tok = tiny_tokenizer(CHATML_GEN)
    rows = [{"q": "What is two plus three?", "a": "Five."}, {"q": "Tell me a story.", "a": LONG}]

    def fmt(r):
        return f"Question: {r['q']}\nAnswer: {r['a']}"

    args = trl.SFTConfig(
        output_dir=str(tmp_path / "trl"),
        max_length=MAX_LENGTH,
        bf16=False,
        gradient_checkpointing=False,
        report_to=[],
        use_cpu=True,
    )
    trainer = trl.SFTTrainer(
        model=tiny_causal_lm("qwen2", vocab=len(tok)),
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tok,
        formatting_func=fmt,
    )
    expected = [(list(r["input_ids"]), list(r["labels"])) for r in trainer.train_dataset]
    recs = load_records(rows, formatting_func=fmt)
    assert recs.report.transformed == {"formatted by formatting_func": 2}
    got, _ = encode_records(recs.records, tok, max_length=MAX_LENGTH, truncation="keep_start")
    assert [(e["input_ids"], e["labels"]) for e in got] == expected


def test_one_line_switch_from_trl(tmp_path):
    """TRL's quickstart shape with SFTTrainer/DualSelectTrainer: a Dataset with a messages column,
    a DatasetDict for eval, peft_config, formatting-free; same encoded samples as TRL."""
    from peft import LoraConfig

    from dualselect.training import DualSelectConfig, DualSelectTrainer

    tok = tiny_tokenizer(CHATML_GEN)
    rows = [{"messages": MSGS}, {"messages": MSGS[1:3]}] * 4
    train = datasets.Dataset.from_list(rows)
    dd = datasets.DatasetDict({"train": train, "test": datasets.Dataset.from_list(rows[:2])})
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"], task_type="CAUSAL_LM")
    args = DualSelectConfig(
        output_dir=str(tmp_path / "ds"),
        max_length=MAX_LENGTH,
        max_steps=3,
        per_device_train_batch_size=4,
        selection_warmup_steps=1,
        k_task=2,
        k_ref=2,
        assistant_only_loss=True,
        completion_only_loss=None,
        packing=False,
        eval_strategy="steps",
        eval_steps=2,
        report_to=[],
        logging_steps=1,
    )
    trainer = DualSelectTrainer(
        model=tiny_causal_lm("qwen2", vocab=len(tok)),
        args=args,
        train_dataset=dd,  # the "train" split is picked
        eval_dataset=dd,  # the "test" split is picked
        processing_class=tok,
        peft_config=peft_config,
        reference_dataset=train,
    )
    assert trainer.model.peft_config["default"].target_modules == {"q_proj", "k_proj"}
    ours = [(e["input_ids"], e["labels"]) for e in trainer.train_dataset.examples]
    assert ours == _trl_encoded(rows, tok, tmp_path, assistant_only_loss=True)
    assert len(trainer.eval_dataset) == 2
    trainer.train()
    evals = [r for r in trainer.state.log_history if "eval_loss" in r]
    assert evals, trainer.state.log_history
    # the budget counts only training tokens: evaluation ran and added nothing
    budget = trainer.supervised_tokens
    trainer.evaluate()
    assert trainer.supervised_tokens == budget


def test_packing_refused_clearly_and_truncation_mode_alias():
    from dualselect.training import SFTConfig

    with pytest.raises(ValueError, match="packing=True: not supported"):
        SFTConfig(output_dir="x", packing=True)
    assert (
        SFTConfig(output_dir="x", truncation="skip", truncation_mode="keep_start").truncation == "keep_start"
    )
    with pytest.raises(ValueError, match="truncation_mode='keep_end': only 'keep_start'"):
        SFTConfig(output_dir="x", truncation_mode="keep_end")
