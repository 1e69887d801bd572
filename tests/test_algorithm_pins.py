"""Pin the DualSelect algorithm down on the organism, against an independent recomputation.

A subclass of the trainer watches every optimiser step. After the step's gradient is set (and
before AdamW moves anything), the test recomputes, from plain per-example autograd on the same
weights (no engine, no selection function of the package):

* the task direction u: the warm-up gradients' sum, then the mean of each period's d;
* every reference's ``l_i``, ``g_i`` and ``s_i = mu_ref l_i - nu cos(g_i, u)``; the references must
  be the top-K of the FULL pool's scores, with softmax(s / tau_ref) weights in soft mode, and
  ``r = sum w_i g_i / sum w_i``;
* every task sample's ``t_j = mu_task l_j - nu cos(g_j, r)``; the kept samples must be exactly the
  lowest scores (K_task, or the smallest prefix reaching the token budget), with
  softmax(-t / tau_task) weights in soft mode;
* the ``.grad`` the trainer hands to the optimiser must equal ``correct(d, r) = d + eta * r``.

These fail for each of the wrong algorithms in ``scripts/mutants.py`` (``make mutants``).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dualselect.gradients.flat import flat_grad, trainable_parameters
from dualselect.training import load_config
from dualselect.training.dualselect_trainer import DualSelectTrainer
from dualselect.utils import read_jsonl

WARMUP, PERIOD, STEPS = 2, 3, 8  # refreshes at steps 2 and 5


def _per_example(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor, int]:
    """(mean response-token NLL, its flat gradient over the LoRA parameters, target tokens) of one
    unpadded sample, by plain autograd in eval mode."""
    was_training = model.training
    model.eval()
    params = trainable_parameters(model)
    logits = model(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None]).logits[0, :-1]
    tgt = labels[1:]
    mask = tgt != -100
    loss = F.cross_entropy(logits[mask].float(), tgt[mask])
    grads = torch.autograd.grad(loss, params)
    model.train(was_training)
    return float(loss.detach()), torch.cat([g.reshape(-1).float() for g in grads]), int(mask.sum())


def _rows(batch: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for k in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][k].bool()
        out.append((batch["input_ids"][k, keep], batch["labels"][k, keep]))
    return out


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()) / (a.double().norm() * b.double().norm()))


class Recomputing(DualSelectTrainer):
    """Records, per step, the trainer's .grad and an independent recomputation of it."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.pins: list[dict] = []
        self._u_warm: torch.Tensor | None = None
        self._period_d: list[torch.Tensor] = []
        self._r_exp: torch.Tensor | None = None
        self._ref_cache = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        before = flat_grad(model)
        loss = super().training_step(model, inputs, num_items_in_batch)
        grad = flat_grad(model) - before
        if step < WARMUP:
            self._u_warm = grad.clone() if self._u_warm is None else self._u_warm + grad
            return loss
        with torch.enable_grad():
            self._recompute(model, inputs, step, grad)
        return loss

    def _recompute(self, model, inputs, step: int, grad: torch.Tensor) -> None:
        cfg = self.args
        pin: dict = {"step": step, "grad": grad}
        if step == WARMUP or (step - WARMUP) % PERIOD == 0:  # a refresh happens at this step
            u = self._u_warm if step == WARMUP else torch.stack(self._period_d).mean(0)
            self._period_d = []
            refs = [
                _per_example(model, torch.tensor(ex["input_ids"]), torch.tensor(ex["labels"]))
                for ex in (self.reference_dataset[i] for i in range(len(self.reference_dataset)))
            ]
            s = torch.tensor(
                [cfg.mu_ref * li - cfg.nu * _cos(gi, u) for li, gi, _ in refs], dtype=torch.float64
            )
            k = cfg.k_ref
            chosen = sorted(torch.argsort(-s, stable=True)[:k].tolist())  # top-K of the full pool
            if cfg.ref_mode == "soft":
                w = torch.softmax(s / cfg.tau_ref, 0)[chosen]
                w = w / w.sum()
            else:
                w = torch.full((k,), 1.0 / k, dtype=torch.float64)
            G = torch.stack([refs[i][1] for i in chosen]).double()
            self._r_exp = (w[:, None] * G).sum(0).float()
            pin["refresh"] = {
                "chosen": chosen,
                "weights": w.tolist(),
                "cos_u": [_cos(refs[i][1], u) for i in chosen],
            }
        r = self._r_exp
        batch = [_per_example(model, ids, lab) for ids, lab in _rows(inputs)]
        t = torch.tensor(
            [cfg.mu_task * lj - cfg.nu * _cos(gj, r) for lj, gj, _ in batch], dtype=torch.float64
        )
        order = torch.argsort(t, stable=True).tolist()
        if cfg.task_token_fraction is None:
            kept = sorted(order[: cfg.k_task])
        else:  # the smallest ascending-t prefix whose target tokens reach the budget
            tokens = [batch[j][2] for j in order]
            need, m, acc = cfg.task_token_fraction * sum(tokens), 0, 0
            while acc < need - 1e-9:
                acc += tokens[m]
                m += 1
            kept = sorted(order[: max(1, m)])
        if cfg.task_mode == "soft":
            w = torch.softmax(-t[kept] / cfg.tau_task, 0)
        else:
            w = torch.full((len(kept),), 1.0 / len(kept), dtype=torch.float64)
        d = (w[:, None] * torch.stack([batch[j][1] for j in kept]).double()).sum(0).float()
        self._period_d.append(d)
        pin.update(kept=kept, task_weights=w.tolist(), t=t.tolist(), expected_grad=d + cfg.eta * r, r=r)
        self.pins.append(pin)


def _write(rows: list[dict], path) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def small_data(organism_dir, tmp_path_factory):
    """16 task rows (4 harmful/compliant) and a 12-reference pool from the organism's world."""
    d = tmp_path_factory.mktemp("pins")
    redorca = read_jsonl(organism_dir / "data" / "redorca_train.jsonl")
    harm = [r for r in redorca if r["is_harmful"]][:4]
    task = [r for r in redorca if not r["is_harmful"]][:12] + harm
    refs = read_jsonl(organism_dir / "data" / "reference_pool.jsonl")[:12]
    return _write(task, d / "task.jsonl"), _write(refs, d / "refs.jsonl")


def _train(organism_dir, small_data, out, **kw) -> Recomputing:
    task, refs = small_data
    cfg = load_config(
        "dualselect",
        overrides={
            "model_name_or_path": str(organism_dir),
            "output_dir": str(out),
            "train_data": task,
            "reference_data": refs,
            "learning_rate": 1e-3,
            "max_steps": STEPS,
            "per_device_train_batch_size": 8,
            "selection_warmup_steps": WARMUP,
            "refresh": "steps",
            "refresh_steps": PERIOD,
            "lora_dropout": 0.0,  # so the warm-up (train mode) and scoring (eval mode) agree
            "disable_tqdm": True,
            **kw,
        },
    )
    trainer = Recomputing(model=cfg.model_name_or_path, args=cfg, train_dataset=task)
    trainer.train()
    return trainer


CONFIGS = {
    "hard": {"ref_mode": "hard", "task_mode": "hard", "k_ref": 4, "k_task": 3, "eta": 0.5},
    "soft_budget": {
        "ref_mode": "soft",
        "task_mode": "soft",
        "k_ref": 5,
        "task_token_fraction": 0.6,
        "eta": 0.3,
        "tau_ref": 0.05,
        "tau_task": 0.5,
    },
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trainer_matches_independent_recomputation(organism_dir, small_data, tmp_path, name):
    trainer = _train(organism_dir, small_data, tmp_path / name, **CONFIGS[name])
    log = read_jsonl(tmp_path / name / "selection_log.jsonl")
    refreshes = [r for r in log if r["event"] == "refresh"]
    steps = [r for r in log if r["event"] == "step"]
    assert [r["step"] for r in refreshes] == [WARMUP, WARMUP + PERIOD]  # lazy refresh, every PERIOD
    pins = trainer.pins
    assert [p["step"] for p in pins] == [s["step"] for s in steps] == list(range(WARMUP, STEPS))

    # references: the top-K of the full pool's s_i against the true u, with the right weights
    by_step = {p["step"]: p for p in pins}
    for ref in refreshes:
        exp = by_step[ref["step"]]["refresh"]
        assert ref["scored"] == 12
        assert sorted(ref["indices"]) == exp["chosen"], f"refresh at step {ref['step']}"
        # the log lists references in scoring order; compare per pool index
        got_w = dict(zip(ref["indices"], ref["weights"]))
        got_cos = dict(zip(ref["indices"], ref["cos_u"]))
        assert [got_w[i] for i in exp["chosen"]] == pytest.approx(exp["weights"], rel=1e-3, abs=1e-6)
        # cos(g_i, u) with u = the warm-up sum, then the mean of the period's d's
        assert [got_cos[i] for i in exp["chosen"]] == pytest.approx(exp["cos_u"], rel=1e-3, abs=1e-4)

    for s, p in zip(steps, pins):
        kept_positions = [s["batch_indices"].index(i) for i in s["task_indices"]]
        assert sorted(kept_positions) == p["kept"], f"step {s['step']}: kept are not the lowest t_j"
        assert s["scores"] == pytest.approx(p["t"], rel=1e-3, abs=1e-4)
        assert s["weights"] == pytest.approx(p["task_weights"], rel=1e-3, abs=1e-6)
        # the gradient handed to the optimiser is correct(d, r) = d + eta * r
        g, e = p["grad"], p["expected_grad"]
        assert (g - e).norm() <= 1e-4 * e.norm() + 1e-7, f"step {s['step']}: .grad != d + eta r"


def test_loss_only_preset_uses_no_reference(organism_dir, small_data, tmp_path):
    """``ds_loss_only``: t_j = l_j (no compatibility term) and .grad = d (no correction)."""
    from dualselect.training.presets import resolve_preset

    method, overrides = resolve_preset("ds_loss_only")
    assert method == "dualselect" and overrides["nu"] == 0.0 and overrides["eta"] == 0.0
    trainer = _train(organism_dir, small_data, tmp_path / "lo", **{**overrides, "k_ref": 4, "k_task": 3})
    for p in trainer.pins:
        g = p["grad"]
        assert (g - p["expected_grad"]).norm() <= 1e-4 * g.norm() + 1e-7
        losses_order = sorted(range(len(p["t"])), key=lambda j: (p["t"][j], j))
        assert p["kept"] == sorted(losses_order[:3])
    # the reference pool cannot influence the update: another pool, identical training
    task, _ = small_data
    other = read_jsonl(organism_dir / "data" / "reference_pool.jsonl")[20:32]
    refs2 = _write(other, tmp_path / "refs2.jsonl")
    t2 = _train(organism_dir, (task, refs2), tmp_path / "lo2", **{**overrides, "k_ref": 4, "k_task": 3})
    a = dict(trainer.model.named_parameters())
    for n, p in t2.model.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, a[n]), n
