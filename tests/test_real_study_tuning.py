"""The real-model study's tuning (docs/real_study.md, section 2) through ``dualselect compare``:
named variants of a method, the ``real_study_val`` validation suites (built on a stand-in real
base from the real benchmark files, disjoint from every test suite), the pre-registered criteria
as ``tune`` entries (one choice per method family), the two tuning configs, and a small compare
end to end on a stand-in base holding a tiny random model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from realbase_helpers import TINY_TRAINING
from test_real_study import _stand_in_base
from tiny_models import one_thread  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
ATTACK = ROOT / "configs" / "real_study_tune_attack.yaml"
TUNE = ROOT / "configs" / "real_study_tune.yaml"
STUDY = ROOT / "configs" / "real_study.yaml"
VAL_SIZES = {"val_harmbench": 32, "val_hh_redteam": 97, "val_safe": 110, "task_val": 200}


def _cfg(**kw):
    from dualselect.experiments.compare_config import CompareConfig

    base = {"methods": ["sft", "kl", "kl_l0.3"], "variants": {"kl_l0.3": {"method": "kl", "kl_lambda": 0.3}}}
    return CompareConfig(**{**base, **kw})


# ------------------------------------------------------------------------------ variants


def test_a_variant_runs_its_preset_with_its_own_overrides(tmp_path):
    from dualselect.experiments.compare_runs import check_compare, run_overrides

    cfg = _cfg(
        training={"max_steps": 3, "learning_rate": 1e-4},
        method_overrides={"kl_l0.3": {"max_steps": 5}},
    )
    check_compare(cfg)
    trainer, ov = run_overrides(cfg, "kl_l0.3", 0, tmp_path, model="stand-in")
    assert trainer == "kl" and ov["kl_lambda"] == 0.3 and ov["max_steps"] == 5 and ov["learning_rate"] == 1e-4
    trainer, ov = run_overrides(cfg, "kl", 0, tmp_path, model="stand-in")
    assert trainer == "kl" and "kl_lambda" not in ov and ov["max_steps"] == 3  # the preset is unchanged
    # a variant of a preset with settings keeps them under its own (dualselect_paper's soft modes)
    cfg = _cfg(methods=["dsp_eta0.1"], variants={"dsp_eta0.1": {"method": "dualselect_paper", "eta": 0.1}})
    trainer, ov = run_overrides(cfg, "dsp_eta0.1", 0, tmp_path, model="stand-in")
    assert (
        trainer == "dualselect"
        and ov["eta"] == 0.1
        and ov["ref_mode"] == "soft"
        and ov["k_ref_fraction"] == 0.1
    )
    assert cfg.run_dir(tmp_path, "dsp_eta0.1", None, 0) == tmp_path / "runs" / "dsp_eta0.1" / "seed0"
    assert cfg.learning_rate_of("dsp_eta0.1") is None


@pytest.mark.parametrize(
    ("variants", "methods", "match"),
    [
        (
            {"kl_x": {"method": "klx", "kl_lambda": 0.3}},
            ["kl_x"],
            r"variants\.kl_x\.method: unknown method 'klx'",
        ),
        ({"kl": {"method": "kl", "kl_lambda": 0.3}}, ["kl"], r"variants\.kl: 'kl' is a preset's name"),
        ({"a": {"kl_lambda": 0.3}}, ["a"], r"variants\.a: needs method"),
        (
            {"a": {"method": "kl"}, "b": {"method": "a"}},
            ["a", "b"],
            r"variants\.b\.method: .*another variant",
        ),
        ({"a": {"method": "kl"}}, ["kl"], r"variants: \['a'\] defined but not in methods"),
        ({"a": "kl"}, ["a"], r"variants\.a: expected a mapping"),
        ({"../x": {"method": "kl"}}, ["../x"], r"variants\.\.\./x: a variant's name is its run directory"),
        ({}, ["kl_typo"], r"unknown method\(s\) \['kl_typo'\]"),
    ],
)
def test_bad_variants_are_one_line_errors_naming_the_key(variants, methods, match, tmp_path):
    from dualselect.experiments.compare_config import CompareConfig

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"methods": methods, "variants": variants}))
    with pytest.raises(ValueError, match=match) as e:
        CompareConfig.from_yaml(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_variants_bad_override_fails_the_training_config_validation():
    from dualselect.experiments.compare_runs import check_compare

    for bad, match in (
        ({"method": "kl", "kl_lambda": -1.0}, r"variants\.v: .*kl_lambda"),
        ({"method": "kl", "kl_lamda": 0.3}, r"variants\.v: .*unknown key.*kl_lamda"),
    ):
        cfg = _cfg(methods=["sft", "v"], variants={"v": bad})
        with pytest.raises(ValueError, match=match) as e:
            check_compare(cfg)
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------ the validation suites


@pytest.fixture(scope="module")
def val_base(shared_data, tmp_path_factory):
    """A stand-in base (no model, no calibration record) with the study task's files and its
    validation prompts."""
    from dualselect.experiments.real_data import build_study_data

    base = _stand_in_base(shared_data, tmp_path_factory.mktemp("val"), "v")
    build_study_data(base, task="gsm8k_final_step")
    return base


def test_the_validation_suites_are_disjoint_from_every_test_suite(val_base, shared_data):
    """real_study_val: HarmBench val standard minus the reference pool (41 - 9), the calibration's
    HH-RLHF questions (147 harmful minus its 50 AdvBench), its 110 safe prompts, the task's 200
    validation items; no prompt of them (by the project's normalised-text hash) in any suite of the
    study's test set, in the base's held-out sets, the reference pool or the attack set."""
    from dualselect.evaluation.benchmarks import load_benchmark, text_hash
    from dualselect.evaluation.suites import resolve_suites, suite_set
    from dualselect.realbase.calibrate import calibration_prompts
    from dualselect.utils import read_jsonl

    val = resolve_suites("real_study_val", val_base / "model")
    assert {k: len(v) for k, v in val.items()} == VAL_SIZES
    spec = suite_set("real_study_val")
    assert spec.validation and not suite_set("real_study").validation and spec.correct
    assert spec.harmful_mean == ("val_harmbench", "val_hh_redteam") and spec.harmful_apart == ()
    assert {it.kind for it in val["val_safe"]} == {"over_refusal"}
    assert {it.kind for it in val["val_harmbench"] + val["val_hh_redteam"]} == {"harmful"}
    assert {it.category for it in val["task_val"]} == {"1", "2", "3"}
    test = resolve_suites("real_study", val_base / "model")
    test_hashes = {text_hash(it.prompt) for items in test.values() for it in items}
    sp = json.loads((val_base / "data" / "splits.json").read_text())
    d = val_base / "data" / "gsm8k_final_step"
    training = [r["question"] for r in read_jsonl(d / "task_train.jsonl")] + sp["reference_harmful"]
    others = test_hashes | {text_hash(p) for p in training}
    others |= {text_hash(p) for ps in sp["eval"].values() for p in ps}
    for name, items in val.items():
        assert not {text_hash(it.prompt) for it in items} & others, name
    # what it is made of: the published validation file, the recipe's calibration prompts
    hb = [
        it.prompt
        for it in load_benchmark(
            "harmbench", str(shared_data / "harmbench" / "harmbench_behaviors_text_val.csv")
        )
        if it.meta["FunctionalCategory"] == "standard"
    ]
    refs = {text_hash(p) for p in sp["reference_harmful"]}
    assert [it.prompt for it in val["val_harmbench"]] == [p for p in hb if text_hash(p) not in refs]
    calib = calibration_prompts(shared_data, sp)
    assert [it.prompt for it in val["val_safe"]] == calib["safe"]
    assert [it.prompt for it in val["val_hh_redteam"]] == calib["harmful"][:97]
    report = json.loads((d / "val_disjointness.json").read_text())
    assert report["left_out"] == {"harmbench_val_in_reference_pool": 9, "calibration_advbench": 50}
    assert report["sizes"] == VAL_SIZES and report["overlap_with_base_alignment"]["val_harmbench"] == 32
    assert all(s["overlaps"] == 0 for k in VAL_SIZES for s in report[k].values())
    assert {"harmbench_test", "xstest", "strongreject", "advbench_eval", "final_step_test"} <= set(
        report["val_safe"]
    )


def test_the_validation_prompts_come_from_the_bases_calibration_record(shared_data, tmp_path):
    """A calibrated base: its data/calibration.json prompts are read (not recomputed); a
    calibration prompt that is a test prompt fails the build with the overlap named."""
    from dualselect.evaluation.benchmarks import load_benchmark
    from dualselect.evaluation.suites import resolve_suites
    from dualselect.experiments.real_data import build_study_data
    from dualselect.realbase.calibrate import calibration_prompts

    def calibrated(name: str, extra_safe: list[str]) -> Path:
        base = _stand_in_base(shared_data, tmp_path, name)
        sp = json.loads((base / "data" / "splits.json").read_text())
        calib = calibration_prompts(shared_data, sp)
        prompts = {
            "harmful": calib["harmful"][:7] + calib["harmful"][-3:],
            "safe": calib["safe"][:5] + extra_safe,
        }
        (base / "data" / "calibration.json").write_text(json.dumps({"prompts": prompts}))
        meta = json.loads((base / "realbase.json").read_text())
        (base / "realbase.json").write_text(json.dumps({**meta, "calibration": {"align_seed": 0}}))
        return base

    base = calibrated("c", [])
    build_study_data(base, task="gsm8k_final_step")
    val = resolve_suites("real_study_val", base)
    # 7 HH-RLHF questions (the last 3 are AdvBench behaviours: left out), 5 safe prompts
    assert len(val["val_hh_redteam"]) == 7 and len(val["val_safe"]) == 5
    xstest = [
        it.prompt for it in load_benchmark("xstest", str(shared_data / "xstest" / "xstest_prompts.csv"))
    ]
    bad = calibrated("x", [xstest[0].upper()])  # the same prompt after normalisation
    with pytest.raises(ValueError, match=r"overlap.*val_safe.*xstest"):
        build_study_data(bad, task="gsm8k_final_step")
    assert not (bad / "data" / "gsm8k_final_step" / "val_disjointness.json").exists()


def test_the_validation_headline_metrics_have_the_test_sets_names():
    from dualselect.evaluation.suites import STUDY_VAL_SUITES
    from dualselect.evaluation.suites.metrics import headline_metrics

    m = {
        "refusal_rate.val_harmbench.refusal_rules": 0.9,
        "refusal_rate.val_hh_redteam.refusal_rules": 0.5,
        "refusal_rate.val_safe.refusal_rules": 0.2,
        "refusal_rate.val_harmbench.keyword": 1.0,
        "refusal_rate.val_hh_redteam.keyword": 0.4,
        "refusal_rate.val_safe.keyword": 0.1,
        "exact_match_strict.task_val": 0.3,
        "exact_match_flexible.task_val": 0.4,
        # a test suite's rate never leaks into the validation columns
        "refusal_rate.xstest_safe.refusal_rules": 0.9,
        "exact_match_strict.task_test": 0.9,
        "exact_match_flexible.task_test": 0.9,
    }
    h = headline_metrics(m, ["refusal_rules", "keyword"], STUDY_VAL_SUITES)
    assert h["harmful_refusal"] == pytest.approx(0.7) and h["over_refusal_rate"] == 0.2
    assert h["task_exact_match"] == 0.3 and h["task_exact_match_flexible"] == 0.4
    assert h["harmful_refusal.keyword"] == pytest.approx(0.7) and h["over_refusal_rate.keyword"] == 0.1
    assert "unsafe_refusal" not in h and "discrimination" not in h


# ------------------------------------------------------------------------------ the criteria


def _runs(**rates):
    """method -> one run's validation headline metrics from (refusal, over-refusal, EM)."""
    return {
        m: [{"harmful_refusal": r, "over_refusal_rate": o, "task_exact_match": e}]
        for m, (r, o, e) in rates.items()
    }


def test_the_pre_registered_criterion_by_hand():
    """Highest refusal - over-refusal among candidates within 3 points of SFT's EM (0.50: floor
    0.47): c (0.9 - 0.5 = 0.4) is ineligible at EM 0.46; b's 0.3 beats a's 0.2."""
    from dualselect.experiments.tuning import choose_matched

    tune = {
        "name": "kl_tuned",
        "candidates": ["a", "b", "c"],
        "criterion": "matched_refusal_minus_over_refusal",
    }
    runs = _runs(sft=(0.1, 0.0, 0.50), a=(0.4, 0.2, 0.55), b=(0.5, 0.2, 0.47), c=(0.9, 0.5, 0.46))
    t = choose_matched(runs, tune, within=3)
    assert t["chosen"] == "b" and t["tied"] == [] and t["reference"]["floor"] == pytest.approx(0.47)
    assert [c for c, v in t["candidates"].items() if v["eligible"]] == ["a", "b"]
    assert t["candidates"]["c"]["score"] == pytest.approx(0.4)
    # a tie on the score goes to the higher task EM, and is reported
    runs["a"] = [{"harmful_refusal": 0.5, "over_refusal_rate": 0.2, "task_exact_match": 0.55}]
    t = choose_matched(runs, tune, within=3)
    assert t["chosen"] == "a" and t["tied"] == ["a", "b"] and "tied with ['b']" in t["reason"]
    # no candidate within 3 points: nothing chosen, said so
    t = choose_matched(_runs(sft=(0, 0, 0.9), a=(1, 0, 0.5), b=(1, 0, 0.86), c=(1, 0, 0.1)), tune, within=3)
    assert t["chosen"] is None and "no candidate" in t["reason"]
    # the mean over seeds when a candidate has several runs
    runs = _runs(sft=(0, 0, 0.5), a=(0.4, 0.0, 0.5), b=(0.5, 0.0, 0.5), c=(0.0, 0.0, 0.5))
    runs["a"].append({"harmful_refusal": 0.8, "over_refusal_rate": 0.0, "task_exact_match": 0.5})
    assert choose_matched(runs, tune, within=3)["chosen"] == "a"


def test_the_attack_criterion_by_hand():
    """The smallest learning rate lowering refusal by >= 40 points while EM rises >= 30 (base:
    refusal 0.9, EM 0.1): lr 1 drops 30 points only, lr 3 and 4 succeed, 3 is chosen."""
    from dualselect.experiments.tuning import choose_attack

    tune = {"name": "attack_lr", "candidates": ["l1", "l2", "l3", "l4"], "criterion": "attack_strength"}
    base = {"harmful_refusal": 0.9, "over_refusal_rate": 0.1, "task_exact_match": 0.1}
    runs = _runs(l1=(0.6, 0, 0.5), l2=(0.4, 0, 0.35), l3=(0.5, 0, 0.4), l4=(0.1, 0, 0.6))
    lrs = {"l1": 1e-4, "l2": 2e-4, "l3": 3e-4, "l4": 4e-4}
    t = choose_attack(runs, tune, base, lrs)
    assert t["chosen"] == "l3" and [c for c, v in t["candidates"].items() if v["eligible"]] == ["l3", "l4"]
    assert t["candidates"]["l2"]["task_rise"] == pytest.approx(0.25)
    t = choose_attack(
        _runs(l1=(0.6, 0, 0.5), l2=(0.6, 0, 0.5), l3=(0.6, 0, 0.5), l4=(0.6, 0, 0.5)), tune, base, lrs
    )
    assert t["chosen"] is None and "no candidate" in t["reason"]


def test_comparison_md_says_what_was_chosen_tied_or_not_chosen(tmp_path):
    """Each choice is a line of comparison.md: candidates' validation rates, eligibility, the
    reference, ties and, with nothing chosen, the reason."""
    from dualselect.experiments.table import tuning_lines
    from dualselect.experiments.tuning import choose_matched

    tune = {"name": "kl_tuned", "candidates": ["a", "b"], "criterion": "matched_refusal_minus_over_refusal"}
    t = choose_matched(_runs(sft=(0.1, 0.0, 0.5), a=(0.5, 0.2, 0.5), b=(0.6, 0.3, 0.49)), tune, within=3)
    (line, _) = tuning_lines(t)
    assert (
        "**kl_tuned** = `a`" in line and "tied with ['b']" in line and "`sft`: task_exact_match 50.0" in line
    )
    assert "`b` (harmful_refusal 60.0, over_refusal_rate 30.0, task_exact_match 49.0; eligible)" in line
    t = choose_matched(_runs(sft=(0.1, 0.0, 0.5), a=(0.5, 0.2, 0.4), b=(0.6, 0.3, 0.3)), tune, within=3)
    (line, _) = tuning_lines(t)
    assert "**kl_tuned**: none; no candidate" in line and "not eligible" in line
    # the organism's validation-probe choice reads as before
    organism = {"name": "ds_paper_eta_val", "criterion": "val_refusal_plus_capability", "chosen": "a"}
    assert tuning_lines({**organism, "validation_scores": {"a": 0.9, "b": 0.8}})[0] == (
        "Tuned on validation probes only (`val_refusal_plus_capability`): **ds_paper_eta_val** = `a` "
        "(validation scores: a 90.0, b 80.0); its row reports the test probes."
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"suites": "real_study"}, r"tune\[0\]\.criterion=.*validation suites only.*real_study_val"),
        ({"methods": ["a", "b"]}, r"tune\[0\].*add sft to methods"),
        (
            {"tune": [{"name": "x", "candidates": ["a", "b"], "criterion": "attack_strength"}]},
            r"evaluate_base",
        ),
        (
            {
                "evaluate_base": True,
                "tune": [{"name": "x", "candidates": ["b", "a"], "criterion": "attack_strength"}],
            },
            r"tune\[0\]\.candidates: .*increasing order",
        ),
        ({"tune": [{"name": "a", "candidates": ["a", "b"]}]}, r"tune\[0\]\.name='a' is a method"),
        ({"tune": [{"name": "x", "candidates": ["a", "a"]}]}, r"tune\[0\]\.candidates: a list of distinct"),
        (
            {"tune": [{"name": "x", "candidates": ["a"]}, {"name": "x", "candidates": ["b"]}]},
            r"tune\[1\]\.name='x'",
        ),
        ({"tune": [{"name": "x", "candidates": ["a"], "criterion": "best"}]}, r"tune\[0\]\.criterion='best'"),
        ({"tune": []}, r"tune: an empty list"),
    ],
)
def test_bad_tune_entries_are_one_line_errors(change, match):
    from dualselect.experiments.compare_config import CompareConfig

    good = {
        "model_name_or_path": "smollm2-135m-safe",
        "suites": "real_study_val",
        "methods": ["sft", "a", "b"],
        "variants": {
            "a": {"method": "sft", "learning_rate": 1e-4},
            "b": {"method": "sft", "learning_rate": 2e-4},
        },
        "tune": [{"name": "x", "candidates": ["a", "b"], "criterion": "matched_refusal_minus_over_refusal"}],
    }
    CompareConfig(**good)
    data = {**good, **change}
    if "methods" in change:
        data["tune"] = [{**good["tune"][0]}]
    with pytest.raises(ValueError, match=match) as e:
        CompareConfig(**data)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------ the tuning configs


@pytest.mark.parametrize("path", [ATTACK, TUNE], ids=lambda p: p.name)
def test_the_tuning_configs_pass_compares_validation(path):
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.experiments.compare_runs import check_compare

    cfg = CompareConfig.from_yaml(str(path))
    assert check_compare(cfg) == {"skipped_judges": {}}
    assert (
        cfg.suites == "real_study_val" and cfg.seeds == [0] and cfg.evaluate_base and cfg.suite_limits == {}
    )
    # everything but the methods, their candidates, the tuning and the attack's learning rate is
    # the study's own (the study runs every seed on the full test suites)
    study = dataclasses.asdict(CompareConfig.from_yaml(str(STUDY)))
    mine = dataclasses.asdict(cfg)
    assert {k for k in study if study[k] != mine[k]} - {"training"} == {
        "methods",
        "variants",
        "tune",
        "seeds",
        "suites",
        "method_overrides",
    }
    lr = {k: v for k, v in study["training"].items() if k != "learning_rate"}
    assert {k: v for k, v in mine["training"].items() if k != "learning_rate"} == lr


def test_the_tuning_candidates_are_the_pre_registered_ones():
    """Stage 1: the attack's 4 learning rates, rising, by attack_strength; stage 2: 4 candidates
    of each method's knob by the common criterion, with sft as reference."""
    from dualselect.experiments.compare_config import CompareConfig

    attack = CompareConfig.from_yaml(str(ATTACK))
    (t,) = attack.tune
    assert t["criterion"] == "attack_strength"
    assert [attack.learning_rate_of(c) for c in t["candidates"]] == [2e-4, 5e-4, 1e-3, 2e-3]
    assert {attack.resolve_method(c)[0] for c in t["candidates"]} == {"sft"}
    cfg = CompareConfig.from_yaml(str(TUNE))
    knobs = {
        "kl": ("kl_lambda",),
        "dualselect": ("eta", "k_ref"),
        "dualselect_paper": ("eta",),
        "dualselect_2s": ("helpful_objective", "helpful_weight"),
        "lisa": ("rho",),
        "safeinstr": ("safety_fraction",),
    }
    assert cfg.matched_capability_within == 3 and "sft" in cfg.methods
    families = {}
    for entry in cfg.tune:
        assert entry["criterion"] == "matched_refusal_minus_over_refusal" and len(entry["candidates"]) == 4
        (family,) = {cfg.variants[c]["method"] for c in entry["candidates"]}
        values = {tuple(cfg.variants[c][k] for k in knobs[family]) for c in entry["candidates"]}
        assert len(values) == 4 and all(
            set(cfg.variants[c]) == {"method", *knobs[family]} for c in entry["candidates"]
        )
        families[family] = values
    assert set(families) == set(knobs)
    assert families["dualselect"] == {(e, k) for e in (0.1, 0.4) for k in (16, 64)}  # 2 x 2 around 0.2 x 32
    # design x weight around the default (preserve, 0.5): docs/real_study.md changelog, 2026-12-07
    assert families["dualselect_2s"] == {(o, w) for o in ("preserve", "unlikelihood") for w in (0.5, 2.0)}
    kl = sorted(v for (v,) in families["kl"])
    assert kl[0] < 1.0 < kl[-1] and len({round(b / a, 6) for a, b in zip(kl, kl[1:], strict=False)}) <= 2
    assert sorted(cfg.methods) == sorted(["sft", *cfg.variants])


# ------------------------------------------------------------------------------ compare, end to end


def test_compare_tunes_variants_on_the_validation_suites(shared_data, tmp_path, one_thread):  # noqa: F811
    """compare on a stand-in base with a tiny model: sft and two kl variants, seed 0, 3 prompts per
    validation suite; the variants run in their own directories with their own kl_lambda, every
    run is scored on the validation suites only, and the tuning choice is the criterion applied to
    the runs' metrics.json (checked here by hand), with its own row and a line in comparison.md."""
    from dualselect.cli.main import main

    base = _stand_in_base(shared_data, tmp_path, "e", model_seed=0)
    cfg = {
        "model_name_or_path": str(base / "model"),
        "suites": "real_study_val",
        "suite_limits": {s: 3 for s in VAL_SIZES},
        "max_new_tokens": 4,
        "eval_batch_size": 8,
        "judges": ["refusal_rules", "keyword"],
        "evaluate_base": True,
        "seeds": [0],
        "methods": ["sft", "kl_a", "kl_b"],
        "variants": {"kl_a": {"method": "kl", "kl_lambda": 0.3}, "kl_b": {"method": "kl", "kl_lambda": 3.0}},
        "tune": [
            {
                "name": "kl_tuned",
                "candidates": ["kl_a", "kl_b"],
                "criterion": "matched_refusal_minus_over_refusal",
            }
        ],
        "training": dict(TINY_TRAINING),
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "out"
    assert main(["compare", str(path), "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    met = {}
    for m, lam in (("kl_a", 0.3), ("kl_b", 3.0), ("sft", None)):
        run = out / "runs" / m / "seed0"
        met[m] = json.loads((run / "metrics.json").read_text())["metrics"]
        if lam is not None:
            assert yaml.safe_load((run / "config.yaml").read_text())["kl_lambda"] == lam
        gens = [
            json.loads(line)
            for line in (run / "eval" / "generations" / f"{m}.jsonl").read_text().splitlines()
        ]
        assert {g["benchmark"] for g in gens} == set(VAL_SIZES)
        assert met[m]["harmful_refusal"] == pytest.approx(
            (met[m]["refusal_val_harmbench"] + met[m]["refusal_val_hh_redteam"]) / 2
        )
    (t,) = table["tuning"]
    floor = met["sft"]["task_exact_match"] - 0.03
    ok = [m for m in ("kl_a", "kl_b") if met[m]["task_exact_match"] >= floor - 1e-9]
    score = {m: met[m]["harmful_refusal"] - met[m]["over_refusal_rate"] for m in ok}
    expect = (
        max(ok, key=lambda m: (round(score[m], 9), met[m]["task_exact_match"], -ok.index(m))) if ok else None
    )
    assert t["chosen"] == expect and t["reference"]["method"] == "sft"
    md = (out / "comparison.md").read_text()
    assert "Tuned on validation suites only (`matched_refusal_minus_over_refusal`" in md
    if expect is not None:
        assert table["methods"]["kl_tuned"]["harmful_refusal"]["mean"] == pytest.approx(
            met[expect]["harmful_refusal"]
        )
    assert table["design"]["suites"] == "real_study_val" and "harmful_refusal" in table["base"]["metrics"]
