"""Continual learning: buffer accounting, per-pool selection against a slow
recomputation, resume between stages, the metrics, the L2 regulariser, the CLI."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections import Counter

import pytest
import torch

from dualselect.continual.buffer import ReservoirBuffer
from dualselect.continual.metrics import continual_metrics
from dualselect.continual.runner import ContinualConfig, run_sequence, stage_memory
from dualselect.continual.tasks import TASK_NAMES_ALL, load_task
from dualselect.training.dualselect_config import parse_reference_pools
from dualselect.utils import ConfigError, read_jsonl
from test_algorithm_pins import _cos, _per_example

TINY = {
    "tasks": ["add", "double", "last_word"],
    "methods": ["ds_retention", "replay"],
    "seeds": [0],
    "steps_per_stage": 4,
    "batch_size": 4,
    "n_train": 16,
    "n_test": 4,
    "buffer_size": 6,
    "safety_size": 8,
    "max_new_tokens": 4,
    "dualselect": {"selection_warmup_steps": 2, "refresh_steps": 2, "k_ref": 3, "k_task": 3},
}


# ------------------------------------------------------------------------------ buffer


def test_reservoir_is_bounded_seeded_and_uniform():
    b = ReservoirBuffer(50, seed=3)
    for stage, n in ((1, 300), (2, 300), (3, 600)):
        b.add_stage(stage, f"t{stage}", n)
        assert len(b.items) == 50 and b.n_seen == sum((300, 300, 600)[:stage])
    again = ReservoirBuffer(50, seed=3)
    for stage, n in ((1, 300), (2, 300), (3, 600)):
        again.add_stage(stage, f"t{stage}", n)
    assert again.items == b.items  # seeded: a resumed run refills it identically
    assert ReservoirBuffer.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    # algorithm R keeps every offered record with probability 50/1200: over 200 seeds the share of
    # each stage is close to its share of the stream (1/4, 1/4, 1/2)
    counts: Counter = Counter()
    for seed in range(200):
        r = ReservoirBuffer(50, seed=seed)
        for stage, n in ((1, 300), (2, 300), (3, 600)):
            r.add_stage(stage, f"t{stage}", n)
        counts.update(it["stage"] for it in r.items)
    total = sum(counts.values())
    for stage, share in ((1, 0.25), (2, 0.25), (3, 0.5)):
        assert abs(counts[stage] / total - share) < 0.02, counts
    with pytest.raises(ValueError, match="append-only"):
        b.add_stage(2, "t2", 10)


def test_stage_memory_refuses_future_records(organism_dir):
    tasks = [load_task(t, organism_dir, 10, 2) for t in ("add", "double")]
    b = ReservoirBuffer(4, seed=0)
    assert stage_memory(b, tasks, 1) == {}
    b.add_stage(1, "add", 10)
    mem = stage_memory(b, tasks, 2)
    assert list(mem) == ["add"] and len(mem["add"]) == 4
    assert all(r in [{**x, "buffer_stage": 1} for x in tasks[0].train] for r in mem["add"])
    with pytest.raises(RuntimeError, match="stage >= 1"):
        stage_memory(b, tasks, 1)  # stage 1 must not see its own (or later) records


def test_no_later_stage_leaks_into_references(organism_dir, tmp_path):
    """Every reference pool of stage k holds safety records or training records of stages < k;
    replay trains on task k + those; nothing of task k or later enters a memory of stage k."""
    cfg = ContinualConfig(**TINY)
    tasks = [load_task(t, organism_dir, cfg.n_train, cfg.n_test) for t in cfg.tasks]
    train_prompts = [{r["prompt"] for r in t.train} for t in tasks]
    safety = {r["prompt"] for r in read_jsonl(organism_dir / "data" / "reference_pool.jsonl")}
    stages = run_sequence(cfg, "ds_retention", 0, tmp_path, log=lambda _: None)
    assert [s["task"] for s in stages] == cfg.tasks
    for k, st in enumerate(stages, start=1):
        pools = dict(p.split("=", 1) for p in st["reference_pools"])
        assert ("safety" in pools) and len(read_jsonl(pools["safety"])) == cfg.safety_size
        assert {r["prompt"] for r in read_jsonl(pools["safety"])} <= safety
        expected_tasks = {f"task_{t}" for t in cfg.tasks[: k - 1]}
        assert set(pools) - {"safety"} <= expected_tasks
        n_task_refs = 0
        for name, path in pools.items():
            if name == "safety":
                continue
            j = cfg.tasks.index(name.removeprefix("task_"))
            rows = read_jsonl(path)
            n_task_refs += len(rows)
            assert j < k - 1 and all(r["buffer_stage"] == j + 1 for r in rows)
            assert {r["prompt"] for r in rows} <= train_prompts[j]
            for later in range(k - 1, len(tasks)):  # no record of this or a later stage's task
                assert not ({r["prompt"] for r in rows} & train_prompts[later])
        assert n_task_refs == (0 if k == 1 else cfg.buffer_size)
        # the selection log names the pools it selected from
        log = read_jsonl(
            tmp_path / "runs" / "ds_retention" / "seed0" / f"stage{k}" / "train" / "selection_log.jsonl"
        )
        assert {r["pool"] for r in log if r["event"] == "refresh"} == set(pools)
    buf = json.loads((tmp_path / "runs" / "ds_retention" / "seed0" / "stage2" / "buffer.json").read_text())
    assert {it["stage"] for it in buf["items"]} <= {1, 2}
    rep = run_sequence(cfg, "replay", 0, tmp_path, stop_after=2, log=lambda _: None)
    assert [s["train_records"] for s in rep] == [
        cfg.n_train + cfg.safety_size,
        cfg.n_train + cfg.buffer_size + cfg.safety_size,
    ]


# ------------------------------------------------------------------------------ per-pool selection


def _write(rows, path):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_per_pool_selection_matches_slow_recomputation(organism_dir, tmp_path, mode):
    """At the first refresh, each pool's K_p references must be the top-K_p of ITS pool's scores
    s_i = mu_ref l_i - nu cos(g_i, u) (soft: softmax(s / tau) weights), r_p their weighted mean
    gradient, and r = sum_p lambda_p r_p / sum_p lambda_p; recomputed by per-example autograd."""
    from dualselect.training import load_config
    from dualselect.training.dualselect_trainer import DualSelectTrainer

    data = organism_dir / "data"
    task = read_jsonl(data / "task_train.jsonl")[:16]
    pools = {
        "safety": read_jsonl(data / "reference_pool.jsonl")[:10],
        "task_old": [r for r in read_jsonl(data / "alignment.jsonl") if r["family"] == "arith"][:7],
    }
    spec = [
        f"safety:1.0:3={_write(pools['safety'], tmp_path / 's.jsonl')}",
        f"task_old:0.25:2={_write(pools['task_old'], tmp_path / 't.jsonl')}",
    ]
    seen: dict = {}

    class Watch(DualSelectTrainer):
        def _refresh(self, model):
            if "u" not in seen:  # the first refresh: u = the warm-up gradients' sum
                seen["u"] = self._u_sum.clone()
                seen["model"] = copy.deepcopy(self.accelerator.unwrap_model(model))
            super()._refresh(model)
            if "r" not in seen:
                seen["r"] = self._r.clone()

    cfg = load_config(
        "dualselect",
        overrides={
            "output_dir": str(tmp_path / "run"),
            "reference_pools": spec,
            "ref_mode": mode,
            "task_mode": mode,
            "max_steps": 3,
            "selection_warmup_steps": 2,
            "per_device_train_batch_size": 4,
            "k_task": 2,
            "learning_rate": 1e-3,
            "report_to": [],
            "disable_tqdm": True,
        },
    )
    tr = Watch(model="organism", args=cfg, train_dataset=task)
    tr.train()
    u, model = seen["u"], seen["model"]
    log = [r for r in read_jsonl(tmp_path / "run" / "selection_log.jsonl") if r["event"] == "refresh"]
    assert [r["pool"] for r in log] == ["safety", "task_old"]  # one refresh (steps 2..3), per pool
    r_exp = torch.zeros_like(seen["r"])
    total = 0.0
    for row, (name, lam, k) in zip(log, (("safety", 1.0, 3), ("task_old", 0.25, 2))):
        ds = tr.reference_pools[name][0]
        refs = [
            _per_example(model, torch.tensor(ds[i]["input_ids"]), torch.tensor(ds[i]["labels"]))
            for i in range(len(ds))
        ]
        s = torch.tensor([cfg.mu_ref * li - cfg.nu * _cos(gi, u) for li, gi, _ in refs], dtype=torch.float64)
        chosen = sorted(torch.argsort(-s, stable=True)[:k].tolist())
        assert row["indices"] == chosen and row["k_ref"] == k and row["pool_weight"] == lam
        if mode == "soft":
            w = torch.softmax(s / cfg.tau_ref, 0)[chosen]
            w = w / w.sum()
        else:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        assert row["weights"] == pytest.approx(w.tolist(), rel=1e-4)
        r_p = (w[:, None] * torch.stack([refs[i][1] for i in chosen]).double()).sum(0)
        r_exp += lam * r_p.float()
        total += lam
    r_exp /= total
    assert torch.allclose(seen["r"], r_exp, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------ resume


def test_resume_between_stages_gives_the_same_run(organism_dir, tmp_path):
    cfg = ContinualConfig(**{**TINY, "tasks": ["add", "double"]})
    straight = run_sequence(cfg, "ds_retention", 0, tmp_path / "a", log=lambda _: None)
    first = run_sequence(cfg, "ds_retention", 0, tmp_path / "b", stop_after=1, log=lambda _: None)
    assert len(first) == 1
    # a stage killed half-way: its directory exists without metrics.json, it is run again
    partial = tmp_path / "b" / "runs" / "ds_retention" / "seed0" / "stage2"
    partial.mkdir(parents=True)
    (partial / "junk.txt").write_text("killed")
    resumed = run_sequence(cfg, "ds_retention", 0, tmp_path / "b", log=lambda _: None)
    assert not (partial / "junk.txt").exists()
    for a, b in zip(straight, resumed):
        for key in ("accuracy", "harmful_refusal", "benign_accuracy", "supervised_tokens", "optimizer_steps"):
            assert a[key] == b[key], key
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "a" / "runs/ds_retention/seed0/stage2/adapter/adapter_model.safetensors")
    wb = load_file(tmp_path / "b" / "runs/ds_retention/seed0/stage2/adapter/adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # the second stage trained on from the first stage's adapter, not from a fresh one
    w1 = load_file(tmp_path / "a" / "runs/ds_retention/seed0/stage1/adapter/adapter_model.safetensors")
    assert any(not torch.equal(w1[k], wa[k]) for k in wa)
    assert any(w1[k].abs().sum() > 0 and "lora_B" in k for k in w1)


# ------------------------------------------------------------------------------ metrics, tasks, L2


def test_continual_metrics_by_hand():
    R = [
        [0.0, 0.1, 0.0],  # base
        [0.9, 0.3, 0.0],
        [0.5, 0.8, 0.1],
        [0.4, 0.6, 1.0],
    ]
    m = continual_metrics(R)
    assert m["acc_final"] == pytest.approx((0.4 + 0.6 + 1.0) / 3)
    assert m["bwt"] == pytest.approx(((0.4 - 0.9) + (0.6 - 0.8)) / 2)
    assert m["fwt"] == pytest.approx(((0.3 - 0.1) + (0.1 - 0.0)) / 2)
    assert m["forgetting"] == pytest.approx(((0.9 - 0.4) + (0.8 - 0.6)) / 2)
    assert m["plasticity"] == pytest.approx((0.9 + 0.8 + 1.0) / 3)
    with pytest.raises(ValueError):
        continual_metrics([[0.0], [1.0]])


def test_tasks_are_disjoint_and_scored(organism_dir):
    world = set()
    for f in (organism_dir / "data").glob("*.jsonl"):
        world |= {r["prompt"] for r in read_jsonl(f)}
    for name in TASK_NAMES_ALL:
        t = load_task(name, organism_dir, 50, 20, seed=1)
        tr, te = {r["prompt"] for r in t.train}, {r["prompt"] for r in t.test}
        assert len(tr) == 50 and len(te) == 20 and not tr & te
        if name != "add":
            assert not (tr | te) & world
        for r in t.test:
            assert t.correct(r["response"], r)
            assert not t.correct("I cannot help with that.", r)
    assert load_task("double", organism_dir, 5, 5).train == load_task("double", organism_dir, 5, 5).train
    with pytest.raises(ValueError, match="unknown task"):
        load_task("nope", organism_dir, 5, 5)


def test_l2_prev_penalty_pulls_towards_the_anchor(organism_dir, tmp_path):
    from dualselect.training import load_config
    from dualselect.training.l2_prev import L2PrevTrainer

    task = read_jsonl(organism_dir / "data" / "task_train.jsonl")[:16]
    dist = {}
    for lam in (0.0, 50.0):
        cfg = load_config(
            "l2_prev",
            overrides={
                "output_dir": str(tmp_path / str(lam)),
                "l2_lambda": lam,
                "max_steps": 6,
                "per_device_train_batch_size": 4,
                "learning_rate": 1e-2,
                "report_to": [],
                "disable_tqdm": True,
            },
        )
        tr = L2PrevTrainer(model="organism", args=cfg, train_dataset=task)
        assert float(tr.l2_penalty(tr.model).detach()) == 0.0
        tr.train()
        manual = sum(
            float(((p.detach() - tr.anchor[n]) ** 2).sum())
            for n, p in tr.model.named_parameters()
            if p.requires_grad
        )
        assert float(tr.l2_penalty(tr.model).detach()) == pytest.approx(manual, rel=1e-5)
        dist[lam] = manual
    assert dist[50.0] < 0.5 * dist[0.0]


# ------------------------------------------------------------------------------ config, CLI


def test_reference_pool_specs():
    specs = parse_reference_pools(["safety=a.jsonl", "old:0.5=b.jsonl", "x:2:7=c=d.jsonl"])
    assert [(p.name, p.source, p.weight, p.k) for p in specs] == [
        ("safety", "a.jsonl", 1.0, None),
        ("old", "b.jsonl", 0.5, None),
        ("x", "c=d.jsonl", 2.0, 7),
    ]
    for bad, msg in (
        (["a.jsonl"], "expected NAME=PATH"),
        (["s=a", "s=b"], "repeat"),
        (["s:-1=a"], "must be >= 0"),
        (["s:1:0=a"], "must be >= 1"),
        (["s:x=a"], "must be a number"),
        (["s:0=a"], "sum to 0"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_reference_pools(bad)


def test_continual_config_errors(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("tasks: [add]\nmethods: [sft, nope]\nbuffer_size: -1\n")
    with pytest.raises(ConfigError) as e:
        ContinualConfig.from_yaml(bad)
    for part in ("tasks", "unknown ['nope']", "buffer_size=-1"):
        assert part in str(e.value)
    bad.write_text("taks: [add, sub]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        ContinualConfig.from_yaml(bad)
    p = subprocess.run(
        [sys.executable, "-m", "dualselect.cli.main", "continual", str(bad)], capture_output=True, text=True
    )
    assert p.returncode == 2 and "unknown key(s) ['taks']" in p.stderr and "Traceback" not in p.stderr
    assert math.isfinite(ContinualConfig().steps_per_stage)


def test_reference_pools_from_flags_and_yaml(tmp_path):
    """The CLI's config path: ``--reference_pools`` takes several entries; a missing pool file
    is a one-line error naming the pool; reference_data and reference_pools exclude each other."""
    from dualselect.training import load_config
    from dualselect.training.validation import check_paths

    a = tmp_path / "a.jsonl"
    a.write_text('{"prompt": "p", "response": "r"}\n')
    cfg = load_config("dualselect", argv=["--reference_pools", f"safety={a}", f"old:0.5:4={a}"])
    assert cfg.reference_pools == [f"safety={a}", f"old:0.5:4={a}"]
    y = tmp_path / "c.yaml"
    y.write_text(f"reference_pools:\n  - safety={a}\n  - old:0.5={tmp_path / 'missing.jsonl'}\n")
    cfg = load_config("dualselect", str(y))
    with pytest.raises(ConfigError, match=r"reference_pools\[old:0.5\]=.*no such file"):
        check_paths(cfg)
    with pytest.raises(ConfigError, match="not both"):
        load_config("dualselect", argv=["--reference_pools", f"s={a}", "--reference_data", str(a)])
    with pytest.raises(ConfigError, match="expected NAME=PATH"):
        load_config("dualselect", argv=["--reference_pools", str(a)])


def test_pools_from_the_python_api(organism_dir, tmp_path):
    """``reference_dataset`` as a dict names the pools (weight 1, the config's K); with
    ``reference_pools`` set too, weights and K come from it by position; a K above a pool's size
    warns instead of clipping silently."""
    from dualselect.training import load_config
    from dualselect.training.dualselect_trainer import DualSelectTrainer

    data = organism_dir / "data"
    task = read_jsonl(data / "task_train.jsonl")[:8]
    a, b = read_jsonl(data / "reference_pool.jsonl")[:5], read_jsonl(data / "reference_pool.jsonl")[5:8]
    cfg = load_config(
        "dualselect", overrides={"output_dir": str(tmp_path / "r"), "k_ref": 4, "report_to": []}
    )
    with pytest.warns(UserWarning, match="reference pool 'b': K=4 > its 3"):
        tr = DualSelectTrainer(
            model="organism", args=cfg, train_dataset=task, reference_dataset={"a": a, "b": b}
        )
    assert {n: (len(ds), w, k) for n, (ds, w, k) in tr.reference_pools.items()} == {
        "a": (5, 1.0, None),
        "b": (3, 1.0, None),
    }
    cfg = load_config(
        "dualselect",
        overrides={
            "output_dir": str(tmp_path / "s"),
            "reference_pools": ["x:2:1=-", "y:0.5:2=-"],
            "report_to": [],
        },
    )
    tr = DualSelectTrainer(model="organism", args=cfg, train_dataset=task, reference_dataset={"a": a, "b": b})
    assert {n: (w, k) for n, (_, w, k) in tr.reference_pools.items()} == {"a": (2.0, 1), "b": (0.5, 2)}


def test_an_ablation_keeps_its_defining_change(tmp_path):
    """The config's ``dualselect`` block (eta 0.2, ...) must not undo an ablation (eta = 0,
    task_filter off); ``method_overrides`` win over both; the budget keys win over everything."""
    from dualselect.continual.runner import stage_config

    cfg = ContinualConfig(
        methods=["ds_retention", "ds_retention_no_correction", "ds_retention_no_filter"],
        dualselect={"eta": 0.2, "k_ref": 5},
        method_overrides={"ds_retention_no_filter": {"eta": 0.7, "max_steps": 999}},
    )
    pools = [f"safety={tmp_path / 's.jsonl'}"]
    full = stage_config(cfg, "ds_retention", 0, 1, tmp_path, pools)
    no_corr = stage_config(cfg, "ds_retention_no_correction", 0, 1, tmp_path, pools)
    no_filt = stage_config(cfg, "ds_retention_no_filter", 2, 3, tmp_path, pools)
    assert (full.eta, full.task_filter, full.k_ref, full.ref_mode) == (0.2, True, 5, "hard")
    assert (no_corr.eta, no_corr.task_filter) == (0.0, True)
    assert (no_filt.eta, no_filt.task_filter) == (0.7, False)
    assert no_filt.max_steps == cfg.steps_per_stage and no_filt.seed == 2003
    assert no_filt.reference_pools == pools
