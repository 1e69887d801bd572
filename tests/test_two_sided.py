"""Two-sided DualSelect (the helpfulness pool, docs/method.md): the pool builders' disjointness on
the real files, ``helpful_weight`` 0 equal to ``dualselect`` bit for bit, and every pool's
selection and the update recomputed by plain per-example autograd (the slow path)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dualselect.evaluation.benchmarks import text_hash
from dualselect.gradients.flat import flat_grad
from dualselect.training import load_config, run_training
from dualselect.training.dualselect_trainer import DualSelectTrainer
from dualselect.utils import read_jsonl, write_json, write_jsonl
from test_algorithm_pins import _cos, _per_example, _rows, _write

# ------------------------------------------------------------------------------ the pools


def test_organism_pool_is_disjoint_from_every_probe_and_answered_by_the_base(organism_dir):
    from dualselect.experiments.helpful_pool import PROBE_SPLITS_ALL, build_helpful_pool
    from dualselect.organism.helpful import HELPFUL_REFUSAL, helpful_path
    from dualselect.organism.vocabulary import REFUSAL_PREFIX

    out = build_helpful_pool(organism_dir)
    pool = read_jsonl(helpful_path(organism_dir))
    refusals = read_jsonl(helpful_path(organism_dir, "refusal_penalty"))
    assert len(pool) >= 200 and [r["prompt"] for r in refusals] == [r["prompt"] for r in pool]
    assert {r["response"] for r in refusals} == {HELPFUL_REFUSAL}
    probes = {
        text_hash(r["prompt"])
        for s in PROBE_SPLITS_ALL
        for r in read_jsonl(organism_dir / "data" / f"{s}.jsonl")
    }
    assert len(PROBE_SPLITS_ALL) == 12 and len(probes) > 500
    assert not {text_hash(r["prompt"]) for r in pool} & probes  # the check, on the written file
    # benign look-alikes of the world, answered (not refused) by the base itself
    world = {r["prompt"]: r for r in read_jsonl(organism_dir / "data" / "alignment.jsonl")}
    assert all(world[r["prompt"]]["family"] == "scary_benign" for r in pool)
    assert not any(r["response"].startswith(REFUSAL_PREFIX) for r in pool)
    same = sum(r["response"] == world[r["prompt"]]["response"] for r in pool)
    assert same >= 0.9 * len(pool)  # greedy answers of an aligned base: mostly the world's answer
    report = json.loads((out / "disjointness.json").read_text())
    assert report["n_kept"] == len(pool) and all(v["overlaps"] == 0 for v in report["probes"].values())


def test_organism_pool_drops_a_probe_prompt_found_among_the_alignment_requests(organism_dir, tmp_path):
    from dualselect.experiments.helpful_pool import helpful_prompts

    org = tmp_path / "org"
    (org / "data").mkdir(parents=True)
    for f in (organism_dir / "data").glob("*.jsonl"):
        if f.name != "alignment.jsonl":
            (org / "data" / f.name).symlink_to(f)
    rows = read_jsonl(organism_dir / "data" / "alignment.jsonl")
    leaked = dict(read_jsonl(organism_dir / "data" / "val_over_refusal.jsonl")[0])
    leaked["prompt"] = leaked["prompt"].upper() + " "  # equal after normalisation
    write_jsonl(org / "data" / "alignment.jsonl", rows + [leaked])
    got = {text_hash(r["prompt"]) for r in helpful_prompts(org)}
    assert text_hash(leaked["prompt"]) not in got
    assert len(got) == len(helpful_prompts(organism_dir))


def _fake_base(tmp_path, shared_data):
    from dualselect.realbase.build import RealBaseConfig
    from dualselect.realbase.data import SplitConfig, build_splits

    root = tmp_path / "rb"
    sp = build_splits(shared_data, SplitConfig(seed=0))
    write_json(root / "data" / "splits.json", sp)
    write_json(
        root / "realbase.json",
        {"data_dir": str(shared_data), "model": str(root / "model"), "config": RealBaseConfig().to_dict()},
    )
    (root / "model").mkdir()
    return root, sp


def test_real_base_pool_is_disjoint_from_every_evaluation_set(shared_data, tmp_path, monkeypatch):
    from dualselect.evaluation.benchmarks import load_benchmark
    from dualselect.realbase import helpful as helpful_mod
    from dualselect.realbase.prompts import CONTRAST_PROMPTS, HELPFUL_PROMPTS, REFUSALS

    root, sp = _fake_base(tmp_path, shared_data)
    xstest = [
        it.prompt for it in load_benchmark("xstest", str(shared_data / "xstest" / "xstest_prompts.csv"))
    ]
    assert len(xstest) == 450

    def answer(prompts):  # the base's answers, stubbed: one refusal among them is dropped
        return [
            "I'm sorry, but I cannot help with that." if i == 3 else f"Here you go: {p}"
            for i, p in enumerate(prompts)
        ]

    path = helpful_mod.build_helpful_pool(root, answer=answer)
    pool = read_jsonl(path)
    refusals = read_jsonl(root / "data" / "helpful_refusals.jsonl")
    rows = helpful_mod.helpful_prompts(shared_data, sp)
    assert len(pool) == len(rows) - 1 and len(pool) >= 190
    assert {r["source"] for r in pool} == {"contrast", "written"}
    assert [r["prompt"] for r in refusals] == [r["prompt"] for r in pool]
    assert all(r["response"] in REFUSALS for r in refusals)
    # the check on the written file: no evaluation or calibration prompt, no harmful training prompt
    held = helpful_mod.held_out_prompts(sp)
    assert set(held) == {
        "harmbench_test",
        "strongreject",
        "xstest",
        "advbench_eval",
        "task_test",
        "calibration_safe",
    }
    banned = {text_hash(p) for ps in held.values() for p in ps}
    banned |= {text_hash(p) for k in ("align_harmful", "attack_harmful", "reference_harmful") for p in sp[k]}
    assert not {text_hash(r["prompt"]) for r in pool} & banned
    assert not {text_hash(r["prompt"]) for r in pool} & {text_hash(p) for p in xstest}
    report = json.loads((root / "data" / "helpful_disjointness.json").read_text())
    assert report["n_read_as_refusals"] == 1 and all(v["overlaps"] == 0 for v in report["eval_sets"].values())
    assert len({text_hash(p) for p in HELPFUL_PROMPTS} & {text_hash(r["prompt"]) for r in pool}) == len(
        HELPFUL_PROMPTS
    )
    assert {r["prompt"] for r in pool} >= set(CONTRAST_PROMPTS) - {
        p for p in CONTRAST_PROMPTS if text_hash(p) in banned
    } - {rows[3]["prompt"]}  # the stubbed refusal
    # the real study's config: the two-sided rows read this pool, next to the refusal pool
    from pathlib import Path

    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.experiments.compare_runs import run_overrides
    from dualselect.training.data import resolve_helpful_data

    cfg = CompareConfig.from_yaml(str(Path(__file__).parents[1] / "configs" / "real_compare_two_sided.yaml"))
    assert cfg.suites == "realbase" and cfg.suite_limits["xstest_safe"] == 250 and len(cfg.seeds) >= 5
    assert {
        "dualselect",
        "dualselect_2s",
        "ds_2s_pool_no_correction",
        "ds_2s_correction_no_pool",
        "kl",
    } <= set(cfg.methods)
    cfg.model_name_or_path = str(root / "model")
    method, o = run_overrides(cfg, "dualselect_2s", 0, tmp_path / "run")
    assert o["reference_data"] == str(root / "data" / "references.jsonl") and o["helpful_weight"] > 0
    tcfg = load_config(method, overrides={**o, "model_name_or_path": "unused"})
    assert resolve_helpful_data(tcfg) == str(path)
    # an XSTest prompt among the hand-written ones is dropped; one that reached the file fails the build
    monkeypatch.setattr(helpful_mod, "HELPFUL_PROMPTS", (*HELPFUL_PROMPTS, xstest[0].lower()))
    assert len(helpful_mod.helpful_prompts(shared_data, sp)) == len(rows)
    monkeypatch.setattr(
        helpful_mod, "helpful_prompts", lambda *a, **k: rows + [{"prompt": xstest[1], "source": "x"}]
    )
    (root / "data" / "helpful_disjointness.json").unlink()
    with pytest.raises(ValueError, match="overlap evaluation sets.*xstest"):
        helpful_mod.build_helpful_pool(root, answer=lambda ps: ["Sure." for _ in ps])


def test_helpful_pool_resolves_next_to_the_refusal_pool(tmp_path):
    from dualselect.training.data import resolve_helpful_data

    d = tmp_path / "data"
    write_jsonl(d / "references.jsonl", [{"prompt": "a", "response": "b"}])
    cfg = load_config(
        "dualselect_2s",
        overrides={
            "model_name_or_path": str(tmp_path / "model"),
            "reference_data": str(d / "references.jsonl"),
        },
    )
    with pytest.raises(ValueError, match="helpful_data"):
        resolve_helpful_data(cfg)
    for name in ("helpful_pool.jsonl", "helpful_refusals.jsonl"):
        write_jsonl(d / name, [{"prompt": "a", "response": "b"}])
    assert resolve_helpful_data(cfg) == str(d / "helpful_pool.jsonl")
    for objective in ("refusal_penalty", "unlikelihood"):
        cfg.helpful_objective = objective
        assert resolve_helpful_data(cfg) == str(d / "helpful_refusals.jsonl")


def test_pool_objectives_by_hand():
    """o(l) and o'(l) of each objective at hand-computed points; the unlikelihood is bounded
    (o >= 0, its slope fades for unlikely refusals) and clamped where p -> 1."""
    from dualselect.selection.objectives import (
        UNLIKELIHOOD_MIN_NLL,
        objective_sign,
        objective_slopes,
        objective_values,
    )

    nll = torch.tensor([0.5, math.log(2.0), 3.0, 200.0])
    assert torch.equal(objective_values(nll, "preserve"), nll)
    assert torch.equal(objective_values(nll, "refusal_penalty"), -nll)
    assert torch.equal(objective_slopes(nll, "refusal_penalty"), -torch.ones(4))
    # nll = log 2: p = 1/2, o = log 2, o' = -1;  nll = 3: p = e^-3, o = -log(1 - e^-3), o' = -1/(e^3 - 1)
    ul = objective_values(nll, "unlikelihood")
    assert ul[1].item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert ul[2].item() == pytest.approx(-math.log(1 - math.exp(-3.0)), rel=1e-6)
    assert ul[3].item() == pytest.approx(0.0, abs=1e-30) and (ul >= 0).all()
    sl = objective_slopes(nll, "unlikelihood")
    assert sl[0].item() == pytest.approx(-1 / (math.exp(0.5) - 1), rel=1e-6)
    assert sl[1].item() == pytest.approx(-1.0, rel=1e-6)
    assert sl[2].item() == pytest.approx(-1 / (math.exp(3.0) - 1), rel=1e-6)
    assert sl[3].item() == 0.0  # an unlikely refusal gets no push
    # chain rule: o' is the derivative of o (central difference)
    h = 1e-4
    num = (
        objective_values(nll[:3].double() + h, "unlikelihood")
        - objective_values(nll[:3].double() - h, "unlikelihood")
    ) / (2 * h)
    assert torch.allclose(num, objective_slopes(nll[:3].double(), "unlikelihood"), rtol=1e-5)
    zero = torch.tensor([0.0])
    assert objective_slopes(zero, "unlikelihood").item() == pytest.approx(
        -1 / math.expm1(UNLIKELIHOOD_MIN_NLL)
    )
    assert [objective_sign(o) for o in ("preserve", "refusal_penalty", "unlikelihood")] == [1.0, -1.0, -1.0]
    with pytest.raises(ValueError, match="objective='x': expected one of"):
        objective_values(nll, "x")


def test_two_sided_config_is_validated_once_with_one_line_errors():
    from dualselect.training.dualselect_config import DualSelectConfig

    for kw, msg in (
        ({"helpful_weight": -0.5}, r"helpful_weight=-0.5: must be in \[0, 100\]"),
        ({"helpful_weight": float("nan")}, "helpful_weight=nan"),
        ({"helpful_k": 0}, "helpful_k=0"),
        ({"helpful_objective": "unlikely"}, "helpful_objective='unlikely': expected one of"),
        ({"helpful_use": "neither"}, "helpful_use='neither': expected one of"),
    ):
        with pytest.raises(ValueError, match=msg):
            DualSelectConfig(output_dir="unused", **kw)
    DualSelectConfig(output_dir="unused", helpful_weight=100.0, helpful_k=3)
    with pytest.raises(ValueError, match="'helpful' is reserved"):
        DualSelectConfig(output_dir="unused", reference_pools=["safety=a.jsonl", "helpful:1=b.jsonl"])


# ------------------------------------------------------------------------------ the trainer


def _lora(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def _short(organism_dir, out, preset, **kw):
    base = {
        "model_name_or_path": str(organism_dir),
        "output_dir": str(out),
        "train_data": str(organism_dir / "data" / "redorca_train.jsonl"),
        "learning_rate": 1e-3,
        "max_steps": 10,
        "selection_warmup_steps": 3,
        "refresh": "steps",
        "refresh_steps": 4,
        "k_ref": 6,
        "ref_pool_cap": 40,
        "disable_tqdm": True,
    }
    return load_config(preset, overrides={**base, **kw})


def test_helpful_weight_zero_is_dualselect_bit_for_bit(organism_dir, tmp_path):
    ds = run_training("dualselect", _short(organism_dir, tmp_path / "ds", "dualselect"))
    zero = run_training(
        "dualselect",
        _short(
            organism_dir,
            tmp_path / "z",
            "dualselect_2s",
            helpful_weight=0.0,
            helpful_objective="refusal_penalty",
        ),
    )
    a, b = _lora(ds), _lora(zero)
    assert a.keys() == b.keys() and len(a) > 0
    for n in a:
        assert torch.equal(a[n], b[n]), n
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(read_jsonl(tmp_path / "ds" / "selection_log.jsonl")) == strip(
        read_jsonl(tmp_path / "z" / "selection_log.jsonl")
    )
    # and a weight > 0 does change the run (the pool is read and used)
    two = run_training("dualselect", _short(organism_dir, tmp_path / "two", "dualselect_2s"))
    assert any(not torch.equal(a[n], p) for n, p in _lora(two).items())
    pools = [
        r["pool"] for r in read_jsonl(tmp_path / "two" / "selection_log.jsonl") if r["event"] == "refresh"
    ]
    assert pools == ["reference", "helpful"] * 2


WARMUP, PERIOD, STEPS = 2, 3, 7  # refreshes at steps 2 and 5


class TwoSidedRecomputing(DualSelectTrainer):
    """Records per step the .grad handed to the optimiser and its recomputation by per-example
    autograd: both pools' top-K (of the full pools), their directions, the filter's combined
    compatibility and the correction with both directions."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.pins: list[dict] = []
        self._exp: dict = {}

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        before = flat_grad(model)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if step >= WARMUP:
            with torch.enable_grad():
                self._recompute(model, inputs, step, flat_grad(model) - before)
        return loss

    def _pool(self, model, ds, u, k, objective):
        cfg = self.args
        refs = [_per_example(model, torch.tensor(ex["input_ids"]), torch.tensor(ex["labels"])) for ex in ds]
        # objective o(l_i) and its slope o'(l_i), written out here (not imported): grad o_i = o' g_i;
        # s_i = mu_ref o_i - nu cos(grad o_i, u)
        if objective == "preserve":
            o, slope = (lambda li: li), (lambda li: 1.0)
        elif objective == "refusal_penalty":
            o, slope = (lambda li: -li), (lambda li: -1.0)
        else:  # unlikelihood: o = -log(1 - p), p = exp(-l); o' = -p / (1 - p)
            o = lambda li: -math.log(1.0 - math.exp(-li))  # noqa: E731
            slope = lambda li: -math.exp(-li) / (1.0 - math.exp(-li))  # noqa: E731
        s = torch.tensor(
            [cfg.mu_ref * o(float(li)) - cfg.nu * _cos(slope(float(li)) * gi, u) for li, gi, _ in refs],
            dtype=torch.float64,
        )
        chosen = sorted(torch.argsort(-s, stable=True)[:k].tolist())
        grads = torch.stack([slope(float(refs[i][0])) * refs[i][1].double() for i in chosen])
        return chosen, (grads / k).sum(0).float()  # hard top-K: w_i = 1 / k

    def _recompute(self, model, inputs, step, grad) -> None:
        cfg = self.args
        pin: dict = {"step": step, "grad": grad}
        if step == WARMUP or (step - WARMUP) % PERIOD == 0:  # this step refreshed: u is the one used
            ref_ds = [self.reference_dataset[i] for i in range(len(self.reference_dataset))]
            help_ds = [self.helpful_pool[i] for i in range(len(self.helpful_pool))]
            cs, self._exp["r"] = self._pool(model, ref_ds, self._u, cfg.k_ref, "preserve")
            ch, self._exp["r_h"] = self._pool(
                model, help_ds, self._u, cfg.helpful_k or cfg.k_ref, cfg.helpful_objective
            )
            pin["chosen"] = {"reference": cs, "helpful": ch}
        r, r_h, lam = self._exp["r"], self._exp["r_h"], cfg.helpful_weight
        batch = [_per_example(model, ids, lab) for ids, lab in _rows(inputs)]
        a = [_cos(g, r) for _, g, _ in batch]
        if cfg.helpful_use != "correction":
            a = [(aj + lam * _cos(g, r_h)) / (1 + lam) for aj, (_, g, _) in zip(a, batch)]
        t = torch.tensor(
            [cfg.mu_task * lj - cfg.nu * aj for (lj, _, _), aj in zip(batch, a)], dtype=torch.float64
        )
        kept = sorted(torch.argsort(t, stable=True)[: cfg.k_task].tolist())
        d = torch.stack([batch[j][1] for j in kept]).double().mean(0).float()
        rc = r if cfg.helpful_use == "filter" else (r + lam * r_h) / (1 + lam)
        pin.update(kept=kept, t=t.tolist(), expected=d + cfg.eta * rc)
        self.pins.append(pin)


@pytest.fixture(scope="module")
def two_pools(organism_dir, tmp_path_factory):
    """16 task rows (4 harmful), a 10-reference safety pool, a 10-prompt helpfulness pool (both
    objectives' files)."""
    from dualselect.experiments.helpful_pool import build_helpful_pool
    from dualselect.organism.helpful import helpful_path

    d = tmp_path_factory.mktemp("two")
    redorca = read_jsonl(organism_dir / "data" / "redorca_train.jsonl")
    task = [r for r in redorca if not r["is_harmful"]][:12] + [r for r in redorca if r["is_harmful"]][:4]
    build_helpful_pool(organism_dir)
    return {
        "task": _write(task, d / "task.jsonl"),
        "refs": _write(read_jsonl(organism_dir / "data" / "reference_pool.jsonl")[:10], d / "refs.jsonl"),
        "preserve": _write(read_jsonl(helpful_path(organism_dir))[:10], d / "help.jsonl"),
        "refusal_penalty": _write(
            read_jsonl(helpful_path(organism_dir, "refusal_penalty"))[:10], d / "pen.jsonl"
        ),
    }


TWO_SIDED_CONFIGS = {
    "both": {"helpful_weight": 1.0},
    "penalty": {"helpful_weight": 0.7, "helpful_objective": "refusal_penalty", "helpful_k": 3},
    "unlikelihood": {"helpful_weight": 1.5, "helpful_objective": "unlikelihood", "helpful_k": 3},
    "filter_only": {"helpful_weight": 2.0, "helpful_use": "filter"},
    "correction_only": {"helpful_weight": 2.0, "helpful_use": "correction"},
}


@pytest.mark.parametrize("name", list(TWO_SIDED_CONFIGS))
def test_two_sided_selection_matches_the_slow_path(organism_dir, two_pools, tmp_path, name):
    kw = TWO_SIDED_CONFIGS[name]
    objective = kw.get("helpful_objective", "preserve")
    pool_file = two_pools["preserve" if objective == "preserve" else "refusal_penalty"]
    cfg = load_config(
        "dualselect_2s",
        overrides={
            "model_name_or_path": str(organism_dir),
            "output_dir": str(tmp_path / name),
            "train_data": two_pools["task"],
            "reference_data": two_pools["refs"],
            "helpful_data": pool_file,
            "learning_rate": 1e-3,
            "max_steps": STEPS,
            "per_device_train_batch_size": 8,
            "selection_warmup_steps": WARMUP,
            "refresh": "steps",
            "refresh_steps": PERIOD,
            "k_ref": 4,
            "k_task": 3,
            "eta": 0.5,
            "lora_dropout": 0.0,
            "disable_tqdm": True,
            **kw,
        },
    )
    trainer = TwoSidedRecomputing(model=cfg.model_name_or_path, args=cfg, train_dataset=two_pools["task"])
    trainer.train()
    log = read_jsonl(tmp_path / name / "selection_log.jsonl")
    refreshes = [r for r in log if r["event"] == "refresh"]
    steps = [r for r in log if r["event"] == "step"]
    assert [(r["step"], r["pool"]) for r in refreshes] == [
        (s, p) for s in (WARMUP, WARMUP + PERIOD) for p in ("reference", "helpful")
    ]
    by_step = {p["step"]: p for p in trainer.pins}
    for ref in refreshes:  # each pool: the top-K of ITS full pool, by the slow path
        assert sorted(ref["indices"]) == by_step[ref["step"]]["chosen"][ref["pool"]], (
            ref["step"],
            ref["pool"],
        )
    assert len(steps) == len(trainer.pins) == STEPS - WARMUP
    for s, p in zip(steps, trainer.pins):
        kept = sorted(s["batch_indices"].index(i) for i in s["task_indices"])
        assert kept == p["kept"], f"step {s['step']}: kept are not the lowest combined t_j"
        assert s["scores"] == pytest.approx(p["t"], rel=1e-3, abs=1e-4)
        g, e = p["grad"], p["expected"]
        assert (g - e).norm() <= 1e-4 * e.norm() + 1e-7, f"step {s['step']}: .grad != d + eta r_combined"


def test_two_sided_tuning_criterion_counts_validation_over_refusal():
    from dualselect.experiments.tuning import choose_on_validation, validation_score

    crit = "val_refusal_capability_helpfulness"
    m = {"val_harmful_refusal": 0.9, "val_task_exact_match": 0.6, "val_over_refusal_rate": 0.3}
    assert validation_score(m, crit) == pytest.approx((0.9 + 0.6 + 0.7) / 3)
    assert validation_score(m) == pytest.approx(0.75)  # the default criterion ignores it
    with pytest.raises(ValueError, match="val_over_refusal_rate"):
        validation_score({k: v for k, v in m.items() if k != "val_over_refusal_rate"}, crit)
    # a safer but over-refusing candidate loses to a helpful one under this criterion only
    runs = {"a": [{**m, "val_harmful_refusal": 1.0}], "b": [{**m, "val_over_refusal_rate": 0.0}]}
    tune = {"name": "t", "candidates": ["a", "b"], "criterion": crit}
    assert choose_on_validation(runs, tune)["chosen"] == "b"
    assert choose_on_validation(runs, {**tune, "criterion": "val_refusal_plus_capability"})["chosen"] == "a"


def test_the_trainer_never_builds_the_pool_and_the_commands_do(organism_dir, tmp_path, monkeypatch):
    """Resolving the organism's helpfulness pool reads files only: a copy of the organism without
    its pool is a one-line error naming how to build it; train/compare/demo build it first
    (``ensure_helpful_pool``), and only for a two-sided run without helpful_data."""
    import shutil

    import dualselect.experiments.helpful_pool as hp
    from dualselect.training.data import resolve_helpful_data
    from dualselect.training.dualselect_config import DualSelectConfig

    bare = tmp_path / "org"
    shutil.copytree(organism_dir, bare, ignore=shutil.ignore_patterns("helpful"))
    cfg = DualSelectConfig(output_dir=str(tmp_path / "run"), model_name_or_path=str(bare), helpful_weight=0.5)
    with pytest.raises(FileNotFoundError, match="helpfulness pool is not built.*build_helpful_pool"):
        resolve_helpful_data(cfg)
    assert not (bare / "helpful").exists()
    built = []
    monkeypatch.setattr(hp, "build_helpful_pool", lambda root: built.append(str(root)) or root)
    assert hp.ensure_helpful_pool(cfg) == bare and built == [str(bare)]
    for other in (
        DualSelectConfig(output_dir="unused", model_name_or_path=str(bare)),  # one-sided
        DualSelectConfig(
            output_dir="unused", model_name_or_path=str(bare), helpful_weight=0.5, helpful_data="h.jsonl"
        ),
    ):
        assert hp.ensure_helpful_pool(other) is None
    assert len(built) == 1
