"""Nothing silent in the data layer: every change counted, over-long samples
refused or truncated with a count, strict CSV, transcripts only when the schema says so, BOM the
same everywhere, Record lists and datasets objects as inputs, eval data outside the budget."""

from __future__ import annotations

import json

import pytest

from dualselect.data import DataError, Record, load_records
from dualselect.data.encoding import encode_record, encode_records, format_prompt
from tiny_models import one_thread, tiny_causal_lm  # noqa: F401
from tiny_tokenizers import CHATML_GEN, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread

ROWS = [
    {"prompt": "What is two plus three?", "response": "Five."},
    {"prompt": "Tell me a story.", "response": "Once upon a time a cat."},
]


# ------------------------------------------------------------------------------- file formats


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_utf8_bom_is_handled_the_same_in_every_format(tmp_path, fmt):
    p = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        body = "\n".join(json.dumps(r) for r in ROWS)
    elif fmt == "json":
        body = json.dumps(ROWS)
    else:
        body = "prompt,response\n" + "\n".join(f'"{r["prompt"]}","{r["response"]}"' for r in ROWS)
    p.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    recs = load_records(str(p)).records
    assert [(r.prompt, r.response) for r in recs] == [(r["prompt"], r["response"]) for r in ROWS]
    assert all(not k.startswith("\ufeff") for r in recs for k in r.meta)


def test_csv_duplicate_header_is_an_error(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,response,response\nq,a,b\n")
    with pytest.raises(DataError, match=r"d\.csv:line 1: field 'response': bad_header.*duplicate"):
        load_records(str(p))


def test_csv_extra_and_missing_fields_are_errors_or_counted_skips(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,response\nq1,a1\nq2,a2,unquoted, comma\nq3\nq4,a4\n")
    with pytest.raises(DataError, match=r"line 3: extra_fields \(4 values for 2 columns"):
        load_records(str(p))
    res = load_records(str(p), skip_invalid=True)
    assert [r.prompt for r in res.records] == ["q1", "q4"]
    assert res.report.skipped == {"extra_fields": 1, "missing_field": 1}
    assert res.report.seen == res.report.kept + res.report.n_skipped


def test_datasetdict_split_and_clear_error():
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "dev": datasets.Dataset.from_list(ROWS[:1])}
    )
    assert len(load_records(dd).records) == 2
    assert len(load_records(dd, split="dev").records) == 1
    with pytest.raises(DataError, match=r"no split 'test'; available splits: \['dev', 'train'\]"):
        load_records(dd, split="test")
    # a Dataset and a text-only dataset (language modelling)
    recs = load_records(datasets.Dataset.from_list([{"text": "The quick brown fox."}])).records
    assert recs[0].kind == "text" and recs[0].text == "The quick brown fox."


# ------------------------------------------------------------------------------- schemas


def test_prompt_containing_assistant_label_is_not_a_transcript():
    tok = tiny_tokenizer(None)
    (rec,) = load_records([{"prompt": "Repeat after me:\n\nAssistant: hi", "response": "ok"}]).records
    assert not rec.transcript
    assert format_prompt(rec, tok) == "Human: Repeat after me:\n\nAssistant: hi\nAssistant:"
    # a `chosen` string that does not start with a Human turn is not parsed as HH either
    with pytest.raises(DataError, match="missing_field"):
        load_records([{"chosen": "Note:\n\nAssistant: text"}])
    (hh,) = load_records(
        [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant: Bye!"}]
    ).records
    assert hh.transcript and hh.response == "Bye!" and hh.prompt.startswith("Human: Hi")


def test_trailing_human_turn_is_not_silently_discarded():
    bad = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: And then?"}
    with pytest.raises(DataError, match=r"chosen.*ends with a Human turn after its last Assistant turn"):
        load_records([bad])
    res = load_records([bad, ROWS[0]], skip_invalid=True)
    assert res.report.skipped == {"bad_messages": 1} and res.report.kept == 1
    # messages data keeps a trailing user turn in the sequence (as TRL), unsupervised
    tok = tiny_tokenizer(CHATML_GEN)
    msgs = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "And then?"},
    ]
    e = encode_record(load_records([{"messages": msgs}]).records[0], tok)
    assert "And then?" in tok.decode(e["input_ids"])
    assert tok.decode([t for t in e["labels"] if t != -100]) == "Hello.<|im_end|>\n"


# ------------------------------------------------------------------------------- truncation


def test_truncate_prompt_keeps_bos_and_label_and_is_counted():
    tok = tiny_tokenizer(None)  # Human/Assistant format, BOS added by the tokenizer
    long = " ".join(["Tell me a story about a cat."] * 20)
    recs = load_records([{"prompt": long, "response": "Once upon a time."}, ROWS[0]]).records
    out, report = encode_records(recs, tok, max_length=40, truncation="truncate_prompt")
    ids = out[0]["input_ids"]
    assert len(ids) <= 40 and ids[0] == tok.bos_token_id
    text = tok.decode(ids)
    assert text.startswith("<s>Human: ") and text.endswith("\nAssistant: Once upon a time.</s>")
    assert report.transformed == {"prompt truncated (truncate_prompt, max_length 40)": 1}
    assert report.summary().endswith("changed: 1 prompt truncated (truncate_prompt, max_length 40)")


def test_truncate_prompt_on_a_transcript_keeps_its_role_label():
    tok = tiny_tokenizer(None)
    turns = "".join(
        f"\n\nHuman: Tell me a story about a cat number {i}.\n\nAssistant: Once." for i in range(8)
    )
    (rec,) = load_records([{"chosen": turns.rstrip(".") + " upon a time."}]).records
    e = encode_record(rec, tok, max_length=60, truncation="truncate_prompt")
    text = tok.decode(e["input_ids"])
    assert text.startswith("<s>Human: ") or text.startswith("<s>Assistant: ")
    assert e["changes"] and len(e["input_ids"]) <= 60


@pytest.mark.parametrize("policy", ["keep_start", "skip", "error"])
def test_longer_than_model_positions_truncated_or_refused_with_a_count(tmp_path, policy):  # noqa: F811
    from types import SimpleNamespace

    from dualselect.training.data import build_dataset

    tok = tiny_tokenizer(CHATML_GEN)
    long = {"prompt": "Tell me a story.", "response": " ".join(["Once upon a time a cat."] * 30)}
    args = SimpleNamespace(
        max_length=512, truncation=policy, skip_invalid=False, output_dir=str(tmp_path), train_split=None
    )
    if policy == "error":
        with pytest.raises(DataError, match=r"too_long .*> max_length 64"):
            build_dataset([long, ROWS[0]], tok, args, max_positions=64)
        return
    ds, report = build_dataset([long, ROWS[0]], tok, args, max_positions=64)
    assert max(ds.lengths) <= 64
    assert "max_length 512 > the model's 64 positions" in report.notes[0]
    saved = json.loads((tmp_path / "data_report_task.json").read_text())
    if policy == "keep_start":
        assert len(ds) == 2 and saved["transformed"] == {"truncated (keep_start, max_length 64)": 1}
    else:
        assert len(ds) == 1 and saved["skipped"] == {"too_long": 1}


def test_keep_start_drop_is_counted():
    tok = tiny_tokenizer(CHATML_GEN)
    long_prompt = {"prompt": " ".join(["Tell me a story about a cat."] * 20), "response": "Once."}
    out, report = encode_records(
        load_records([long_prompt, ROWS[0]]).records, tok, max_length=30, truncation="keep_start"
    )
    assert len(out) == 1 and report.skipped == {"no_supervised_token": 1}
    assert report.seen == report.kept + report.n_skipped


# ------------------------------------------------------------------------------- trainer inputs


def _tiny(tok):
    return tiny_causal_lm("qwen2", vocab=len(tok))


def test_sft_trainer_takes_a_list_of_records_and_eval_paths(tmp_path):  # noqa: F811
    from dualselect.training import SFTConfig, SFTTrainer

    tok = tiny_tokenizer(CHATML_GEN)
    recs = [
        Record(prompt=r["prompt"], response=r["response"], source=f"mine:{i}") for i, r in enumerate(ROWS * 2)
    ]
    evalp = tmp_path / "eval.jsonl"
    evalp.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    args = SFTConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        eval_strategy="steps",
        eval_steps=1,
        report_to=[],
        lora_r=2,
    )
    trainer = SFTTrainer(
        model=_tiny(tok), processing_class=tok, args=args, train_dataset=recs, eval_dataset=str(evalp)
    )
    assert trainer.train_dataset.records == recs  # used as they are, not re-parsed
    assert len(trainer.eval_dataset) == 2
    trainer.train()
    assert sum(1 for r in trainer.state.log_history if "eval_loss" in r) == 2
    # two batches of 2 samples trained; the four evaluation passes added nothing
    per_batch = [sum(1 for t in e["labels"][1:] if t != -100) for e in trainer.train_dataset.examples]
    assert trainer.supervised_tokens <= 2 * max(per_batch) * 2
    before = trainer.supervised_tokens
    trainer.evaluate(eval_dataset=trainer.eval_dataset)
    assert trainer.supervised_tokens == before
    # a list of dicts as eval data works too
    trainer2 = SFTTrainer(
        model=_tiny(tok), processing_class=tok, args=args, train_dataset=recs, eval_dataset=ROWS
    )
    assert len(trainer2.eval_dataset) == 2


def test_quantization_config_without_bitsandbytes_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    from dualselect.training.model import quantized_model_kwargs

    with pytest.raises(ImportError, match="quantization_config needs bitsandbytes"):
        quantized_model_kwargs({"load_in_4bit": True, "quant_method": "bitsandbytes"})
    assert quantized_model_kwargs(None) == {}


def test_peft_config_must_be_lora():
    from peft import IA3Config

    from dualselect.training.lora import apply_lora

    tok = tiny_tokenizer(CHATML_GEN)
    with pytest.raises(TypeError, match="peft_config must be a peft.LoraConfig"):
        apply_lora(_tiny(tok), peft_config=IA3Config(target_modules=["q_proj"], feedforward_modules=[]))


def test_generation_prompt_of_a_conversation_is_its_training_prefix():
    """Without a template, a multi-turn record's generation prompt is exactly the training
    sequence up to its last answer (earlier answers with their EOS included)."""
    tok = tiny_tokenizer(None)
    msgs = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye!"},
    ]
    (rec,) = load_records([{"messages": msgs}]).records
    prompt_ids = tok(format_prompt(rec, tok))["input_ids"]
    full = encode_record(rec, tok)["input_ids"]
    assert full[: len(prompt_ids)] == prompt_ids
    assert tok.decode(full[len(prompt_ids) :]) == " Goodbye!</s>"


def test_run_training_with_eval_data_from_config(tmp_path):
    """`eval_data` as a config key (YAML / --flag): evaluated during training, outside the budget."""
    from dualselect.training.run import load_config, run_training

    tok = tiny_tokenizer(CHATML_GEN)
    base = tmp_path / "base"
    _tiny(tok).save_pretrained(base)
    tok.save_pretrained(base)
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS * 2) + "\n")
    cfg = load_config(
        "sft",
        overrides={
            "model_name_or_path": str(base),
            "output_dir": str(tmp_path / "run"),
            "train_data": str(data),
            "eval_data": str(data),
            "eval_strategy": "steps",
            "eval_steps": 1,
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "lora_r": 2,
            "report_to": [],
        },
    )
    trainer = run_training("sft", cfg)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert sum(1 for r in log["log_history"] if "eval_loss" in r) == 2
    # 2 steps, each a batch of all 4 samples: exactly twice their supervised tokens, nothing from
    # the 2 evaluations (which see the same 4 samples)
    per_epoch = sum(e["n_target_tokens"] for e in trainer.train_dataset.examples)
    assert log["supervised_tokens"] == trainer.supervised_tokens == 2 * per_epoch
    assert (tmp_path / "run" / "data_report_eval.json").exists()
