"""Standard SFT, KL and Lisa compute their causal-LM loss with logits at the supervised positions
only (as DualSelect's engines do): the same loss and the same update as with full logits; and
the trainers' phase timing books every step under its phase."""

from __future__ import annotations

import pytest
import torch

from dualselect.gradients.losses import target_logits_inputs
from dualselect.training import METHODS, load_config
from dualselect.training.timing import PhaseTimes, PhaseTimingCallback
from tiny_models import EDGE_SPECS, edge_batch, one_thread, tiny_lora_model  # noqa: F401

PROMPTED = ((3, 5), (7, 2), (4, 0), (10, 1), (2, 6))  # every row has a prompt: position 0 is never kept


@pytest.mark.parametrize("num_items", [None, 23])
@pytest.mark.parametrize("specs", [EDGE_SPECS, PROMPTED], ids=["edge", "prompted"])
def test_target_logits_loss_equals_full_logits_loss(one_thread, num_items, specs):  # noqa: F811
    """Edge batch: prompt-only row, single-target row, row without a prompt, right padding."""
    model = tiny_lora_model("llama", dropout=0.0)
    batch = {k: v for k, v in edge_batch(specs=specs).items() if k != "index"}
    extra = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    params = [p for p in model.parameters() if p.requires_grad]
    full = model(**batch, **extra).loss
    g_full = torch.autograd.grad(full, params)
    kw = target_logits_inputs(model, batch)
    assert kw is not None
    if specs is PROMPTED:
        assert kw["logits_to_keep"].numel() < batch["input_ids"].shape[1] - 1
    out = model(**kw, **extra)
    assert out.logits.shape[1] == kw["logits_to_keep"].numel()  # fewer positions projected
    g_kept = torch.autograd.grad(out.loss, params)
    torch.testing.assert_close(out.loss, full, rtol=1e-6, atol=1e-6)
    for a, b in zip(g_kept, g_full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_no_target_rows_fall_back():
    model = tiny_lora_model("llama", dropout=0.0)
    batch = {k: v for k, v in edge_batch().items() if k != "index"}
    batch["labels"] = torch.full_like(batch["labels"], -100)
    assert target_logits_inputs(model, batch) is None


def _train(method: str, organism_dir, tmp_path, flag: bool, **extra):
    over = {
        "model_name_or_path": str(organism_dir),
        "output_dir": str(tmp_path / f"{method}-{flag}"),
        "train_data": str(organism_dir / "data" / "redorca_train.jsonl"),
        "max_steps": 4,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "logits_at_targets_only": flag,
        **extra,
    }
    if method != "sft":
        over["reference_data"] = str(organism_dir / "data" / "reference_pool.jsonl")
    cfg = load_config(method, overrides=over)
    trainer = METHODS[method][1](args=cfg, train_dataset=cfg.train_data)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    weights = [p.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    return losses, weights


@pytest.mark.parametrize(
    ("method", "extra"), [("sft", {}), ("kl", {}), ("lisa", {"alignment_steps": 1, "finetune_steps": 1})]
)
def test_trainers_same_update_with_and_without_full_logits(organism_dir, tmp_path, one_thread, method, extra):  # noqa: F811
    a_loss, a_w = _train(method, organism_dir, tmp_path, True, **extra)
    b_loss, b_w = _train(method, organism_dir, tmp_path, False, **extra)
    assert len(a_loss) == 4
    assert a_loss == pytest.approx(b_loss, rel=1e-5)
    for a, b in zip(a_w, b_w):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_phase_times_summary():
    t = PhaseTimes()
    t.add("plain", 2.0)
    t.add("plain", 1.0)
    t.add("plain", 4.0)
    with t.timed("refresh"):
        pass
    s = t.summary()
    assert s["plain"] == {"count": 3, "total_s": 7.0, "median_s": 2.0, "min_s": 1.0, "max_s": 4.0}
    assert s["refresh"]["count"] == 1 and t.total("refresh") >= 0 and t.total("absent") == 0.0


def test_dualselect_books_warmup_refresh_and_selection(organism_dir, tmp_path, one_thread):  # noqa: F811
    import time

    cfg = load_config(
        "dualselect",
        overrides={
            "model_name_or_path": str(organism_dir),
            "output_dir": str(tmp_path / "ds"),
            "train_data": str(organism_dir / "data" / "redorca_train.jsonl"),
            "reference_data": str(organism_dir / "data" / "reference_pool.jsonl"),
            "max_steps": 6,
            "selection_warmup_steps": 2,
            "refresh": "steps",
            "refresh_steps": 3,
            "ref_pool_cap": 48,
            "k_ref": 8,
            "report_to": "none",
            "disable_tqdm": True,
            "use_cpu": True,
        },
    )
    trainer = METHODS["dualselect"][1](args=cfg, train_dataset=cfg.train_data)
    assert trainer.step_phase() == "warmup"
    trainer.add_callback(PhaseTimingCallback(trainer))
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    s = trainer.phase_times.summary()
    # refreshes at steps 2 and 5 (every 3 steps after the first)
    assert {k: v["count"] for k, v in s.items()} == {"warmup": 2, "refresh": 2, "selection": 4}
    assert trainer.step_phase() == "selection"
    assert all(v["min_s"] > 0 for v in s.values())
    assert sum(v["total_s"] for v in s.values()) <= wall
