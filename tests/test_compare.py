"""`dualselect compare`: methods x seeds, table files, resume without redoing finished runs."""

from __future__ import annotations

import json

import pytest

from dualselect.cli.main import main


def test_compare_runs_tables_and_resumes(organism_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "DUALSELECT_CACHE", str(organism_dir.parent.parent)
    )  # children find the cached organism
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "methods: [sft, dualselect]\nseeds: [0, 1]\norganism_seeds: [0]\nmax_new_tokens: 24\n"
        "validate_all: true\n"
        "training: {max_steps: 12, disable_tqdm: true}\n"
        "method_overrides: {dualselect: {selection_warmup_steps: 4, k_ref: 8, ref_pool_cap: 32}}\n"
    )
    out = tmp_path / "cmp"
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    ds = table["methods"]["dualselect"]
    for key in (
        "task_exact_match",
        "harmful_refusal",
        "incoherence_rate",
        "safety_avg_ground_truth",
        "safety_avg_keyword",
        "train_seconds",
        "peak_rss_mb",
        "supervised_tokens",
    ):
        assert key in ds and ds[key]["n"] == 2, key
        assert ds[key]["ci"][0] <= ds[key]["mean"] <= ds[key]["ci"][1]
    assert table["best_safety"] in ("sft", "dualselect")
    sft = table["methods"]["sft"]
    assert sft["safety_avg_ground_truth"]["mean"] == 50.0  # the reference, by definition
    assert "wall_seconds" in sft and sft["wall_seconds"]["mean"] >= sft["train_seconds"]["mean"]
    md = (out / "comparison.md").read_text()
    assert "wall s" in md and any(ln.startswith(("| sft", "| **sft**")) for ln in md.splitlines())
    for f in ("comparison.md", "comparison.csv", "safety_vs_capability.png"):
        assert (out / f).exists()
    # resume: a finished run is not redone
    # every run is also scored on the generalisation and validation probes
    assert "harmful_refusal_gen" in ds and "val_harmful_refusal" in ds and "val_task_exact_match" in ds
    assert table["design"] == {
        "organism_seeds": [0],
        "seeds": [0, 1],
        "runs_per_method": 2,
        "suites": "organism",
        "model": "organism",
        "base": None,
    }
    assert "per_group" in table and table["consistency"]["safest_per_group"].keys() == {"0"}
    assert "## Per organism instance" in md
    # resume: a finished run is not redone
    marker = out / "runs" / "sft" / "org0" / "seed0" / "metrics.json"
    before = marker.stat().st_mtime_ns
    (out / "runs" / "dualselect" / "org0" / "seed1" / "metrics.json").unlink()  # as if interrupted there
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    assert marker.stat().st_mtime_ns == before
    assert (out / "runs" / "dualselect" / "org0" / "seed1" / "metrics.json").exists()


def test_safest_at_matched_capability(tmp_path):
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.experiments.table import aggregate, write_tables

    def seeds(cap, safe):
        return [{"task_exact_match": cap + d, "harmful_refusal": safe + d} for d in (-0.01, 0.0, 0.01)]

    runs = {
        "sft": seeds(0.99, 0.03),
        "safest_but_weak": seeds(0.90, 1.00 - 0.01),  # safest overall, 9 points less capable
        "kl": seeds(0.98, 0.95),
        "close": seeds(0.97, 0.94),
        "lisa": seeds(0.97, 0.50),
    }
    t = aggregate(runs, "harmful_refusal", "task_exact_match", matched_within=3.0)
    assert t["best_safety"] == "safest_but_weak"
    mc = t["matched_capability"]
    assert mc["methods"] == ["close", "kl", "lisa", "sft"] and mc["best_safety"] == "kl"
    assert mc["ties"] == ["close"] and abs(mc["capability_floor"] - 0.96) < 1e-9
    assert (
        aggregate(runs, "harmful_refusal", "task_exact_match", matched_within=10.0)["matched_capability"][
            "best_safety"
        ]
        == "safest_but_weak"
    )
    write_tables(t, tmp_path, "harmful_refusal", "task_exact_match")
    md = (tmp_path / "comparison.md").read_text()
    assert "Safest at matched capability" in md and "**kl**" in md and "tied with it: close" in md
    with pytest.raises(ValueError, match="matched_capability_within"):
        CompareConfig(matched_capability_within=-1)


def test_hierarchical_interval_and_per_organism_consistency():
    from dualselect.experiments.table import aggregate, interval_note

    # two organisms whose seeds agree within each but disagree between them: the interval over
    # organism means (df = 1) must be far wider than a t interval treating the 6 runs as
    # independent, and stays inside [0, 1]
    groups = [0, 0, 0, 1, 1, 1]
    vals = [0.10, 0.11, 0.09, 0.90, 0.91, 0.89]
    runs = {
        "sft": [{"s": 0.0, "c": 1.0}] * 6,
        "a": [{"s": v, "c": 0.9} for v in vals],  # safer than sft in both organisms
        "b": [{"s": 0.2 if g == 0 else -0.1, "c": 1.0} for g in groups],  # safer only in organism 0
    }
    t = aggregate(runs, "s", "c", groups=groups)
    stat = t["methods"]["a"]["s"]
    assert stat["ci"] == [0.0, 1.0] and stat["method"] == "t over group means" and stat["n"] == 2
    assert "over the 2 organism instances' (groups') means, df = 1" in interval_note(t)
    pooled = aggregate(runs, "s", "c")["methods"]["a"]["s"]["ci"]  # 6 runs as if independent
    assert pooled[1] - pooled[0] < 0.95
    assert t["per_group"]["a"]["s"] == {"0": pytest.approx(0.10), "1": pytest.approx(0.90)}
    vs = t["consistency"]["vs_reference"]
    assert vs["a"]["safer_in_every_group"] and vs["a"]["less_capable_in_every_group"]
    assert not vs["b"]["safer_in_every_group"] and not vs["b"]["less_safe_in_every_group"]
    assert t["consistency"]["safest_per_group"] == {"0": "b", "1": "a"}
    with pytest.raises(ValueError, match="group labels"):
        aggregate(runs, "s", "c", groups=[0, 1])


def test_tuning_uses_validation_metrics_only():
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.experiments.tuning import choose_on_validation

    runs = {
        # best on TEST probes, worst on validation: must not be chosen
        "dualselect_paper": [
            {"val_harmful_refusal": 0.5, "val_task_exact_match": 0.9, "harmful_refusal": 1.0}
        ],
        "ds_paper_eta_0.05": [
            {"val_harmful_refusal": 1.0, "val_task_exact_match": 0.9, "harmful_refusal": 0.2}
        ],
        "ds_paper_eta_0": [{"val_harmful_refusal": 0.9, "val_task_exact_match": 0.9, "harmful_refusal": 0.9}],
    }
    cfg = CompareConfig()
    assert cfg.tune["candidates"] == list(runs)
    t = choose_on_validation(runs, cfg.tune)
    assert t["chosen"] == "ds_paper_eta_0.05" and t["validation_scores"]["ds_paper_eta_0.05"] == 0.95
    with pytest.raises(ValueError, match="validation metrics"):
        choose_on_validation({k: [{"harmful_refusal": 1.0}] for k in runs}, cfg.tune)
    assert CompareConfig(methods=["sft", "dualselect"]).tune is None  # auto: candidates not run
    with pytest.raises(ValueError, match="not in methods"):
        CompareConfig(methods=["sft"], tune={"name": "x", "candidates": ["dualselect"]})


def test_help_names_every_config_key(capsys):
    import dataclasses

    from dualselect.experiments.compare_config import CompareConfig

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert [f.name for f in dataclasses.fields(CompareConfig) if f.name not in text] == []


def test_markdown_table_adds_each_further_judges_safety_columns():
    """A comparison scored by two judges (the real-model tier: keyword + XSTest string match) shows
    the second judge's refusal and over-refusal next to the first's, with that judge's values."""
    from dualselect.experiments.table import aggregate, markdown_table

    def run(kw, sm, over_kw, over_sm):
        return {
            "task_exact_match": 0.9,
            "harmful_refusal": kw,
            "harmful_refusal.xstest_strmatch": sm,
            "over_refusal_rate": over_kw,
            "over_refusal_rate.xstest_strmatch": over_sm,
        }

    runs = {"sft": [run(0.30, 0.25, 0.04, 0.02)] * 2, "dualselect": [run(0.90, 0.80, 0.40, 0.35)] * 2}
    t = aggregate(runs, "harmful_refusal", "task_exact_match")
    t["judges"] = ["keyword", "xstest_strmatch"]
    lines = markdown_table(t).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[:6] == [
        "method",
        "task EM",
        "refusal avg",
        "over-refusal",
        "refusal avg (xstest_strmatch)",
        "over-refusal (xstest_strmatch)",
    ]
    ds = [c.strip() for c in next(ln for ln in lines if "dualselect" in ln).strip("|").split("|")]
    assert [c.split()[0] for c in ds[2:6]] == ["90.0", "40.0", "80.0", "35.0"]
    # one judge: no suffixed columns even though the runs carry the keys
    t["judges"] = ["keyword"]
    assert "xstest_strmatch" not in markdown_table(t)


def test_retable_of_a_seeds_only_table_clips_its_t_intervals_and_names_them(tmp_path):
    """A committed one-group table (training seeds only, Student-t over runs) that an older writer
    labelled 'bootstrap' and left outside [0, 1]: regroup clips every rate's interval to its range
    (means and ties unchanged), write_tables names the method, costs stay unclipped above."""
    from dualselect.experiments.table import aggregate, regroup, write_tables

    runs = {
        "sft": [
            {"harmful_refusal": v, "task_exact_match": 1.0, "train_seconds": t}
            for v, t in ((0.1, 5), (0.5, 9), (0.2, 7))
        ],
        "dualselect": [
            {"harmful_refusal": v, "task_exact_match": 1.0, "train_seconds": 8} for v in (1.0, 0.9, 1.0)
        ],
    }
    table = aggregate(runs, "harmful_refusal", "task_exact_match")
    old = json.loads(json.dumps(table))
    for row in old["methods"].values():  # as the older writer stored them: unclipped t intervals
        st = row["harmful_refusal"]
        half = (st["ci"][1] - st["ci"][0]) / 2 or 0.4
        st["ci"] = [st["mean"] - half - 0.3, st["mean"] + half + 0.3]
    new = regroup(old)
    for m in runs:
        lo, hi = new["methods"][m]["harmful_refusal"]["ci"]
        assert 0.0 <= lo <= new["methods"][m]["harmful_refusal"]["mean"] <= hi <= 1.0
        assert new["methods"][m]["harmful_refusal"]["mean"] == old["methods"][m]["harmful_refusal"]["mean"]
    assert new["methods"]["sft"]["harmful_refusal"]["ci"][0] == 0.0  # was below 0
    assert new["methods"]["dualselect"]["harmful_refusal"]["ci"][1] == 1.0  # was above 1
    assert new["methods"]["sft"]["train_seconds"] == old["methods"]["sft"]["train_seconds"]
    assert new["best_safety"] == "dualselect"
    write_tables(new, tmp_path, "harmful_refusal", "task_exact_match")
    header = (tmp_path / "comparison.md").read_text().splitlines()[2]
    assert "95% Student-t interval" in header and "bootstrap" not in header


def _sleep_then_mark(path: str, seconds: float, code: int) -> None:  # a child process's task
    import os
    import sys
    import time

    start = time.time()
    time.sleep(seconds)
    with open(path, "w") as fh:
        fh.write(f"{start} {time.time()} {os.getpid()}")
    sys.exit(code)


def test_run_processes_runs_at_most_jobs_at_once_and_stops_starting_after_a_failure(tmp_path):
    import multiprocessing as mp

    from dualselect.experiments.compare import run_processes

    ctx = mp.get_context("spawn")
    done = []
    tasks = [(f"t{i}", _sleep_then_mark, (str(tmp_path / f"t{i}"), 1.0, 0)) for i in range(4)]
    assert run_processes(ctx, tasks, jobs=2, on_done=done.append) == []
    assert sorted(done) == ["t0", "t1", "t2", "t3"]
    spans = [tuple(map(float, (tmp_path / f"t{i}").read_text().split()[:2])) for i in range(4)]
    # at most two at once, and two did overlap (the first pair started together)
    for t, _ in spans:
        assert sum(a <= t < b for a, b in spans) <= 2
    assert spans[1][0] < spans[0][1]
    # a failure: the running task finishes, nothing new starts, every failure is reported
    tasks = [
        ("bad", _sleep_then_mark, (str(tmp_path / "bad"), 0.2, 3)),
        ("slow", _sleep_then_mark, (str(tmp_path / "slow"), 1.5, 0)),
        ("later", _sleep_then_mark, (str(tmp_path / "later"), 0.0, 0)),
    ]
    assert run_processes(ctx, tasks, jobs=2) == [("bad", 3)]
    assert (tmp_path / "slow").exists() and not (tmp_path / "later").exists()
    # one at a time: the first failure stops the rest, as compare always did
    tasks = [("bad", _sleep_then_mark, (str(tmp_path / "b1"), 0.0, 1))] + tasks[1:]
    assert run_processes(ctx, tasks, jobs=1) == [("bad", 1)]
    assert not (tmp_path / "later").exists()


def test_jobs_is_checked_and_never_part_of_a_compares_identity():
    from dualselect.experiments.compare_config import CompareConfig

    a = CompareConfig.from_dict({"methods": ["sft"], "seeds": [0], "organism_seeds": [0]})
    b = CompareConfig.from_dict({"methods": ["sft"], "seeds": [0], "organism_seeds": [0], "jobs": 2})
    assert a.jobs == 1 and b.jobs == 2 and a.identity() == b.identity()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="jobs: expected an integer >= 1"):
            CompareConfig.from_dict({"methods": ["sft"], "seeds": [0], "organism_seeds": [0], "jobs": bad})


def test_a_resumed_compare_may_grow_its_grid_but_not_change_a_run():
    from dualselect.experiments.compare_config import CompareConfig

    base = {
        "methods": ["sft", "kl_a"],
        "seeds": [0],
        "organism_seeds": [0],
        "variants": {"kl_a": {"method": "kl"}},
    }
    old = CompareConfig.from_dict(base)
    grown = {
        **base,
        "methods": ["sft", "kl_a", "dualselect", "kl_b"],
        "seeds": [0, 1, 2],
        "organism_seeds": [0, 1],
        "variants": {"kl_a": {"method": "kl"}, "kl_b": {"method": "kl", "kl_lambda": 3.0}},
        "jobs": 2,
        "safety_metric": "harmful_refusal_gen",
    }
    assert CompareConfig.from_dict(grown).resume_conflict(old) is None
    assert CompareConfig.from_dict({**base, "methods": ["sft"], "variants": {}}).resume_conflict(old) is None
    # a method both list, trained otherwise: its variant, or its method_overrides
    other = {**base, "variants": {"kl_a": {"method": "kl", "kl_lambda": 3.0}}}
    assert CompareConfig.from_dict(other).resume_conflict(old) == "method kl_a trains with other settings"
    other = {**base, "method_overrides": {"sft": {"learning_rate": 1e-3}}}
    assert CompareConfig.from_dict(other).resume_conflict(old) == "method sft trains with other settings"
    # anything every run shares
    other = {**base, "training": {"max_steps": 5}, "max_new_tokens": 8}
    assert CompareConfig.from_dict(other).resume_conflict(old) == "max_new_tokens, training changed"
    # the tune's candidates: only recomputed when every run is validated, else they decide which are
    tuned = {**base, "tune": {"name": "t", "candidates": ["sft", "kl_a"]}}
    assert CompareConfig.from_dict(tuned).resume_conflict(old) == "tune changed"
    both = CompareConfig.from_dict({**tuned, "validate_all": True})
    assert both.resume_conflict(CompareConfig.from_dict({**base, "validate_all": True})) is None
    assert both.resume_conflict(old) == "tune, validate_all changed"
