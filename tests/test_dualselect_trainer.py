"""DualSelect as a trainer on the organism: selection log, determinism, fast == oracle, baselines."""

from __future__ import annotations

import json

import pytest
import torch

from dualselect.training import load_config, run_training
from dualselect.utils import read_jsonl


def _cfg(organism_dir, out, method="dualselect", **kw):
    base = {
        "model_name_or_path": str(organism_dir),
        "output_dir": str(out),
        "train_data": str(organism_dir / "data" / "redorca_train.jsonl"),
        "learning_rate": 1e-3,
        "max_steps": 14,
        "selection_warmup_steps": 4,
        "refresh": "steps",
        "refresh_steps": 5,
        "k_ref": 8,
        "ref_pool_cap": 48,
        "disable_tqdm": True,
    }
    if method != "dualselect":
        base = {
            k: v
            for k, v in base.items()
            if k not in {"selection_warmup_steps", "refresh", "refresh_steps", "k_ref", "ref_pool_cap"}
        }
    return load_config(method, overrides={**base, **kw})


def _lora(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_selection_log_has_refreshes_and_steps(organism_dir, tmp_path):
    # soft selection set explicitly: the `dualselect` preset (the release) selects hard
    trainer = run_training(
        "dualselect", _cfg(organism_dir, tmp_path / "ds", ref_mode="soft", task_mode="soft")
    )
    log = read_jsonl(tmp_path / "ds" / "selection_log.jsonl")
    refreshes = [r for r in log if r["event"] == "refresh"]
    steps = [r for r in log if r["event"] == "step"]
    assert [r["step"] for r in refreshes] == [4, 9]  # after 4 warm-up steps, then every 5 steps
    assert len(steps) == 10 and trainer.state.global_step == 14
    r0 = refreshes[0]
    assert r0["scored"] == 48 and len(r0["indices"]) == 8 and abs(sum(r0["weights"]) - 1) < 1e-5
    assert set(r0["summary"]) >= {
        "mean_selected_loss",
        "mean_selected_cos_u",
        "cos_u_r",
        "overlap_with_previous",
    }
    assert refreshes[1]["summary"]["overlap_random_null"] is not None
    # soft top-K: weights are softmax(s / tau_ref) renormalised over the kept K
    # (that the kept K are the top-K of the whole scored pool: tests/test_algorithm_pins.py)
    s0 = torch.tensor(r0["scores"], dtype=torch.float64)
    w0 = torch.tensor(r0["weights"], dtype=torch.float64)
    assert torch.allclose(w0, torch.softmax(s0 / 0.1, 0), rtol=1e-3, atol=1e-6)
    for s in steps:
        assert len(s["task_indices"]) == 4 and set(s["task_indices"]) <= set(s["batch_indices"])
        assert 0 < s["kept_token_share"] <= 1 and len(s["scores"]) == 8
    assert trainer.supervised_tokens > 0


def test_fast_and_oracle_engines_train_identically(organism_dir, tmp_path):
    fast = run_training(
        "dualselect", _cfg(organism_dir, tmp_path / "f", max_steps=8, ref_mode="hard", task_mode="hard")
    )
    oracle = run_training(
        "dualselect",
        _cfg(organism_dir, tmp_path / "o", max_steps=8, ref_mode="hard", task_mode="hard", engine="oracle"),
    )
    lf = read_jsonl(tmp_path / "f" / "selection_log.jsonl")
    lo = read_jsonl(tmp_path / "o" / "selection_log.jsonl")
    for a, b in zip(lf, lo):
        key = "indices" if a["event"] == "refresh" else "task_indices"
        assert a[key] == b[key]
    a, b = _lora(fast), _lora(oracle)
    assert all(torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-6) for n in a)


def test_dualselect_is_deterministic_for_a_seed(organism_dir, tmp_path):
    a = _lora(run_training("dualselect", _cfg(organism_dir, tmp_path / "a", max_steps=6)))
    b = _lora(run_training("dualselect", _cfg(organism_dir, tmp_path / "b", max_steps=6)))
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_token_budget_and_ablation_switches(organism_dir, tmp_path):
    run_training(
        "dualselect",
        _cfg(
            organism_dir, tmp_path / "t", max_steps=6, task_token_fraction=0.9, k_ref=None, k_ref_fraction=0.1
        ),
    )
    log = read_jsonl(tmp_path / "t" / "selection_log.jsonl")
    assert log[0]["k_ref"] == 5  # ceil(0.1 * 48)
    assert all(s["kept_token_share"] >= 0.9 for s in log if s["event"] == "step")
    run_training(
        "dualselect",
        _cfg(organism_dir, tmp_path / "n", max_steps=8, task_filter=False, reference_refresh=False),
    )
    log = read_jsonl(tmp_path / "n" / "selection_log.jsonl")
    assert sum(r["event"] == "refresh" for r in log) == 1
    assert all(len(s["task_indices"]) == 8 for s in log if s["event"] == "step")


@pytest.mark.parametrize("selector", ["random", "category_uniform", "all"])
def test_baseline_reference_selectors(organism_dir, tmp_path, selector):
    run_training("dualselect", _cfg(organism_dir, tmp_path / selector, max_steps=5, ref_selector=selector))
    refresh = read_jsonl(tmp_path / selector / "selection_log.jsonl")[0]
    assert len(refresh["indices"]) == (48 if selector == "all" else 8)
    if selector == "category_uniform":
        cats = [
            json.loads(line)["category"] for line in (organism_dir / "data" / "reference_pool.jsonl").open()
        ]
        chosen = [cats[i] for i in refresh["indices"]]
        assert max(chosen.count(c) for c in set(chosen)) - min(chosen.count(c) for c in set(chosen)) <= 1


@pytest.mark.parametrize("method", ["safeinstr", "lisa", "kl"])
def test_baseline_trainers_run_and_account_budget(organism_dir, tmp_path, method):
    trainer = run_training(method, _cfg(organism_dir, tmp_path / method, method=method, max_steps=6))
    assert trainer.state.global_step == 6 and trainer.supervised_tokens > 0
    assert (tmp_path / method / "adapter_model.safetensors").exists()
    if method == "lisa":
        assert trainer.state_counts == {"alignment": 1, "finetune": 5}
    if method == "safeinstr":
        assert len(trainer.train_dataset) == 444 + 45  # 400 task + 44 harmful, plus ceil(0.1 * 444)


def test_dualselect_config_validation():
    with pytest.raises(ValueError, match="ref_mode='medium'"):
        load_config("dualselect", overrides={"ref_mode": "medium"})
    with pytest.raises(ValueError, match="task_token_fraction"):
        load_config("dualselect", overrides={"task_token_fraction": 1.5})
    with pytest.raises(ValueError, match="task_token_rule='exactly'"):
        load_config("dualselect", overrides={"task_token_fraction": 0.9, "task_token_rule": "exactly"})
    assert load_config("dualselect", overrides={"task_token_rule": "at_most"}).task_token_rule == "at_most"
    cfg = load_config("dualselect")
    assert (cfg.k_ref, cfg.k_task, cfg.eta, cfg.tau_ref, cfg.tau_task, cfg.selection_warmup_steps) == (
        32,
        4,
        0.2,
        0.1,
        0.1,
        10,
    )
