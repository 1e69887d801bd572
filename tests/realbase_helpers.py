"""A stand-in real base for the build tests: the splits of the real benchmark files, canned
shipped-model answers, and the base model's path pointed at a temporary directory (no model is
loaded; the tests replace the training stages they reach)."""

from __future__ import annotations

from pathlib import Path


def stand_in_realbase(shared_data: Path, tmp_path: Path, monkeypatch) -> tuple[dict, Path]:
    """``(splits, base directory)``: ``<tmp>/rb/data/{splits.json, shipped_answers.jsonl}`` written
    (five benign answers, a compliant answer per attack prompt), ``resolve_model_path`` patched."""
    import dualselect.training.model as model_mod
    from dualselect.realbase.data import SplitConfig, build_splits
    from dualselect.utils import write_json, write_jsonl

    sp = build_splits(shared_data, SplitConfig(seed=0))
    out = tmp_path / "rb"
    write_json(out / "data" / "splits.json", sp)
    answers = [{"set": "benign", "prompt": p, "response": "Sure, here it is."} for p in sp["benign"][:5]]
    answers += [
        {"set": "attack_harmful", "prompt": p, "response": "Step 1: do it."} for p in sp["attack_harmful"]
    ]
    write_jsonl(out / "data" / "shipped_answers.jsonl", answers)
    monkeypatch.setattr(model_mod, "resolve_model_path", lambda name: str(tmp_path))
    return sp, out


# compare's `training:` for the few-step end-to-end tests on stand-in bases (tiny models)
TINY_TRAINING = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "max_length": 1024,
    "learning_rate": 2e-5,
    "lora_r": 4,
    "logging_steps": 1,
    "disable_tqdm": True,
    "report_to": [],
}
