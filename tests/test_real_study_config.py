"""The study's configs (docs/real_study.md): the compare configs pass compare's full validation
(nothing runs) and say what the pre-registration says; the 3 base-build recipes load as
`dualselect base build --recipe` loads them, differ from the shipped recipe in their first
training seed only, and have 3 different cache keys."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from dualselect.experiments.compare import CompareConfig
from dualselect.experiments.compare_runs import check_compare
from dualselect.utils import read_yaml
from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "configs" / "real_study.yaml"
SEEDS34 = ROOT / "configs" / "real_study_seeds34.yaml"
FIVE_SEEDS = {"sft", "dualselect", "dualselect_paper", "kl", "dualselect_2s"}
THREE_SEEDS = {"lisa", "safeinstr", "task_filter_only", "ds_loss_only", "ds_no_correction", "random_refs"}


@pytest.mark.parametrize("path", [STUDY, SEEDS34], ids=lambda p: p.name)
def test_the_study_configs_pass_compares_validation(path):
    cfg = CompareConfig.from_yaml(str(path))
    assert check_compare(cfg) == {"skipped_judges": {}}  # every judge runs offline
    assert cfg.suites == "real_study" and cfg.suite_limits == {}  # the full suites
    assert cfg.max_new_tokens == 64 and cfg.generation_budgets() == 64 and cfg.tune is None  # pre-registered


def test_methods_and_seeds_are_the_pre_registered_ones():
    study, extra = CompareConfig.from_yaml(str(STUDY)), CompareConfig.from_yaml(str(SEEDS34))
    assert set(study.methods) == FIVE_SEEDS | THREE_SEEDS and len(study.methods) == 11
    seeds = {m: set(study.seeds) | (set(extra.seeds) if m in extra.methods else set()) for m in study.methods}
    assert {m for m, s in seeds.items() if s == set(range(5))} == FIVE_SEEDS
    assert {m for m, s in seeds.items() if s == set(range(3))} == THREE_SEEDS
    # the second file differs in methods, seeds and the overrides of methods it does not run only,
    # and leaves the base's own evaluation to the first
    a, b = dataclasses.asdict(study), dataclasses.asdict(extra)
    assert {k for k in a if a[k] != b[k]} == {"methods", "seeds", "method_overrides", "evaluate_base"}
    assert study.evaluate_base and not extra.evaluate_base
    assert b["method_overrides"] == {m: v for m, v in a["method_overrides"].items() if m in extra.methods}


def test_the_headline_judge_is_the_best_human_validated_one():
    """Frozen by name: the judge with the best pooled agreement (Cohen's kappa) with XSTest's human
    labels on safe and on unsafe prompts in the committed validation; two-class, so the plain rule
    judge (refusal_rules3 only adds XSTest's partial-refusal class)."""
    v = json.loads((ROOT / "results" / "judges" / "mnt40" / "validation.json").read_text())
    kappa = {j: min(v["pooled"][k][j]["kappa"] for k in ("safe", "unsafe")) for j in v["pooled"]["safe"]}
    best = max(kappa.values())
    judges = CompareConfig.from_yaml(str(STUDY)).judge_names
    assert kappa[judges[0]] == best and judges[0] == "refusal_rules"
    assert {"keyword", "xstest_strmatch"} <= set(judges[1:])


def _recipe(path: Path):
    from dualselect.cli.base_cmd import _cfg  # what `dualselect base build --recipe PATH` loads

    return _cfg(argparse.Namespace(recipe=str(path), name=None, seed=None))


def test_the_three_base_recipes(shared_data):
    from dualselect.realbase.recipe import default_recipe

    shipped = _recipe(default_recipe())
    bases = [_recipe(ROOT / "configs" / f"real_study_base_{k}.yaml") for k in range(3)]
    assert [b.first_align_seed for b in bases] == [0, 1, 2]  # the pre-registered starting seeds
    for b in bases:  # the shipped recipe but for the first training seed
        diff = {k for k, v in b.to_dict().items() if v != shipped.to_dict()[k]}
        assert diff <= {"align_seed"}
        assert b.align_attempts == shipped.align_attempts and b.align_select == shipped.align_select
    assert bases[0].to_dict() == shipped.to_dict()  # base build 0 is `smollm2-135m-safe`
    keys = [b.cache_key(shared_data) for b in bases]
    assert keys[0] == shipped.cache_key(shared_data) and len(set(keys)) == 3
    for k in range(3):  # each file is a complete recipe (every field set), like the shipped one
        data = read_yaml(ROOT / "configs" / f"real_study_base_{k}.yaml")
        assert set(data) == set(read_yaml(default_recipe()))


def test_the_per_base_configs_point_at_each_builds_model_and_study_task(shared_data, tmp_path):
    """scripts/real_study_configs.py: one config per base build (and its seeds-3-4 twin), the
    committed study config extended with the build's model/ (its suite set gives the runs the
    study task's attack set)."""

    from dualselect.realbase.recipe import realbase_dir

    mod = load_script("scripts/real_study_configs.py")
    paths = mod.write_configs(tmp_path, str(shared_data))
    assert [p.name for p in paths] == [
        f"real_study_base{k}{s}.yaml" for k in range(3) for s in ("", "_seeds34")
    ]
    study = dataclasses.asdict(CompareConfig.from_yaml(str(STUDY)))
    models = set()
    for k in range(3):
        base = realbase_dir(_recipe(ROOT / "configs" / f"real_study_base_{k}.yaml"), shared_data)
        cfg = dataclasses.asdict(CompareConfig.from_yaml(str(tmp_path / f"real_study_base{k}.yaml")))
        assert cfg["model_name_or_path"] == str(base / "model") and cfg["suites"] == "real_study"
        assert {key for key in cfg if cfg[key] != study[key]} == {"model_name_or_path"}
        twin = CompareConfig.from_yaml(str(tmp_path / f"real_study_base{k}_seeds34.yaml"))
        assert twin.seeds == [3, 4] and twin.model_name_or_path == cfg["model_name_or_path"]
        models.add(cfg["model_name_or_path"])
    assert len(models) == 3
