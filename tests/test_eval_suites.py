"""The suites resolver (dualselect.evaluation.suites): the same suites, items and order as the code
it replaced, on the real files; the per-base default decided in one function; one-line errors.

The fingerprints below were computed with the loaders this resolver replaced
(``evaluation.harness.organism_suites``, ``realbase.suites.real_suites``,
``experiments.benchmark_set``) on the same inputs: a changed id, prompt, kind, category, gold or
order changes them."""

from __future__ import annotations

import hashlib
import json

import pytest

from dualselect.evaluation.suites import (
    ORGANISM_SUITES,
    REAL_SUITES,
    SUITE_SETS,
    cli_benchmark_suites,
    default_suite_set,
    limits_for,
    load_benchmark_suites,
    organism_suites,
    parse_benchmarks,
    real_suites,
    resolve_suites,
    suite_set,
)
from dualselect.utils import write_json, write_jsonl


def fingerprint(suites: dict) -> dict:
    out = {}
    for name, items in suites.items():
        h = hashlib.sha256()
        for it in items:
            h.update(json.dumps([it.id, it.prompt, it.kind, it.category, it.gold], sort_keys=True).encode())
        out[name] = [len(items), h.hexdigest()[:16]]
    return out


ORGANISM = {
    "probe_harmful_hh": [97, "4e807838ad9c69a6"],
    "probe_harmful_hex": [104, "68be6c00653e0dd6"],
    "probe_over_refusal": [57, "fe03c40572b25d28"],
    "probe_benign": [79, "3530de2e1b15032f"],
    "task_test": [150, "28b6c6f6744c5eab"],
}
REAL = {
    "harmbench": [159, "5a47449d715de5f9"],
    "strongreject": [313, "81af1bbceea5d63f"],
    "advbench": [100, "eab80b4b47744b5b"],
    "xstest_safe": [250, "8c58474f168ecaf1"],
    "task_test": [100, "3c21fa25ea38dcba"],
}
REAL_LIMITED = {**REAL, "harmbench": [7, "241e7673d45b19f3"], "strongreject": [20, "1456b18f3cbd7de1"]}
BENCHMARKS = {
    "harmbench": [40, "a61d5525539d7682"],
    "xstest": [40, "4186a242413c1f95"],
    "xstest_unsafe": [40, "b548964feb950422"],
    "gsm8k": [30, "bf5483875f0bcd90"],
    "strongreject": [313, "81af1bbceea5d63f"],
    "advbench": [25, "5c043ad0c02658bb"],
}


@pytest.fixture(scope="module")
def realbase(shared_data, tmp_path_factory):
    """A real base directory as `dualselect base build` lays out its evaluation inputs (no model)."""
    from dualselect.realbase.data import SplitConfig, build_splits

    root = tmp_path_factory.mktemp("rb")
    sp = build_splits(shared_data, SplitConfig(seed=0))
    write_json(root / "realbase.json", {"data_dir": str(shared_data), "model": "m", "base_path": "b"})
    write_json(root / "data" / "splits.json", sp)
    write_jsonl(root / "data" / "task_test.jsonl", sp["task_test"])
    return root


def test_organism_probes_are_the_same_suites(organism_dir):
    assert fingerprint(organism_suites(organism_dir)) == ORGANISM
    with pytest.raises(ValueError, match="^limits: unknown suite 'probe_x'"):
        organism_suites(organism_dir, {"probe_x": 1})
    assert fingerprint(resolve_suites("organism", organism_dir)) == ORGANISM
    cut = resolve_suites("organism", organism_dir, limits=limits_for("organism", 3))
    assert {k: [it.id for it in v] for k, v in cut.items()} == {
        k: [f"{k}:{i}" for i in range(3)] for k in ORGANISM
    }


def test_real_suites_are_the_same_suites(realbase):
    assert fingerprint(real_suites(realbase)) == REAL
    assert fingerprint(resolve_suites("realbase", realbase / "model")) == REAL
    assert fingerprint(real_suites(realbase, {"strongreject": 20, "harmbench": 7}, seed=3)) == REAL_LIMITED
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        real_suites(realbase, {"nope": 1})


def test_a_benchmarks_list_gives_the_same_suites(shared_data):
    d = shared_data
    specs = parse_benchmarks(
        {
            "harmbench": {"path": str(d / "harmbench/harmbench_behaviors_text_test.csv"), "limit": 40},
            "xstest": {
                "path": str(d / "xstest/xstest_prompts.csv"),
                "limit": 40,
                "kinds": ["over_refusal", "harmful"],
            },
            "gsm8k": {"path": str(d / "gsm8k/test.jsonl"), "limit": 30},
            "strongreject": {"path": str(d / "strongreject/strongreject_dataset.csv")},
            "advbench": {"path": str(d / "advbench/harmful_behaviors.csv"), "limit": 25},
        }
    )
    assert fingerprint(load_benchmark_suites(specs, seed=0)) == BENCHMARKS
    assert fingerprint(resolve_suites("benchmarks", "any", benchmarks=specs)) == BENCHMARKS


def test_eval_benchmark_flags_load_every_kind_like_the_loader(shared_data):
    from dualselect.evaluation.benchmarks import load_suites

    path = str(shared_data / "xstest/xstest_prompts.csv")
    got = cli_benchmark_suites([f"xstest={path}"], limit=30, seed=5)
    assert list(got) == ["xstest", "xstest_unsafe"]
    assert fingerprint(got) == fingerprint(load_suites("xstest", path, 30, seed=5))
    with pytest.raises(ValueError, match=r"^--benchmark nope: unknown benchmark 'nope'"):
        cli_benchmark_suites(["nope"])
    with pytest.raises(ValueError, match=r"^--benchmark hex_phi\.path: required"):
        cli_benchmark_suites(["hex_phi"])


def test_the_per_base_default_is_decided_once(organism_dir, realbase, tmp_path):
    assert default_suite_set("organism") == "organism"
    assert default_suite_set(organism_dir) == "organism"
    assert default_suite_set(realbase) == "realbase"
    assert default_suite_set(realbase / "model") == "realbase"
    assert default_suite_set(realbase, has_benchmarks=True) == "benchmarks"
    assert default_suite_set(tmp_path) is None  # any other model: a benchmark list is needed


def test_suites_are_data_and_bad_names_are_one_line_errors():
    assert [s.name for s in ORGANISM_SUITES] == list(ORGANISM)
    assert [s.name for s in REAL_SUITES] == list(REAL)
    assert {s.kind for s in REAL_SUITES} == {"harmful", "over_refusal", "capability"}
    assert SUITE_SETS["organism"].judges[0] == "ground_truth" and not SUITE_SETS["organism"].correct
    with pytest.raises(ValueError, match=r"^unknown suite set 'nope'; choose from \['benchmarks'"):
        suite_set("nope")
    with pytest.raises(ValueError, match="unknown suite set 'nope'"):
        resolve_suites("nope", "organism")


def test_real_file_names_match_the_real_base_recipe():
    """The real suites read the same files the real base's splits are drawn from."""
    from dualselect.realbase.data import FILES

    files = {s.name: s.file for s in REAL_SUITES if s.root == "data"}
    assert files == {
        "harmbench": FILES["harmbench_test"],
        "strongreject": FILES["strongreject"],
        "advbench": FILES["advbench"],
        "xstest_safe": FILES["xstest"],
    }


def test_compare_takes_its_default_suites_and_judges_from_the_resolver(realbase, tmp_path):
    from dualselect.experiments.compare_config import CompareConfig

    org = CompareConfig(methods=["sft"], seeds=[0])
    assert org.suites == "organism" and org.judges == list(SUITE_SETS["organism"].judges)
    real = CompareConfig(model_name_or_path=str(realbase / "model"), methods=["sft"], seeds=[0])
    assert real.suites == "realbase" and real.judges == list(SUITE_SETS["realbase"].judges)
    # any other model: no suites of its own (validate() then asks for a benchmarks list)
    other = CompareConfig(model_name_or_path=str(tmp_path), methods=["sft"], seeds=[0])
    assert other.suites == "organism" and default_suite_set(tmp_path) is None


def test_eval_on_another_model_without_benchmarks_is_a_one_line_error(tmp_path, capsys):
    from dualselect.cli.main import main

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")  # a model directory; never loaded
    rc = main(["eval", "--base", str(model), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert f"--base {model}: neither the organism nor a real base" in err and "--benchmark" in err
