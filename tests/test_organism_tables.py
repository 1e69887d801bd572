"""scripts/two_sided_organism_table.py: the organism's method table across instances and its
paired differences against the release (with the TOST of a cheaper route to the same result),
on synthetic per-run metrics files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "task_exact_match",
    "harmful_refusal",
    "harmful_refusal_gen",
    "over_refusal_rate",
    "over_refusal_rate_gen",
    "benign_accuracy",
    "val_harmful_refusal",
    "val_task_exact_match",
    "val_over_refusal_rate",
)


def _script():
    return load_script("scripts/two_sided_organism_table.py")


def _write(root: Path, method: str, org: int, seed: int, value: float) -> None:
    rec = {"method": method, "organism_seed": org, "seed": seed, "metrics": dict.fromkeys(KEYS, value)}
    d = root / "run_metrics"
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / f"{method}__org{org}__seed{seed}.json.gz", "wt") as fh:
        json.dump(rec, fh)


def test_paired_differences_use_instance_means_and_tost_decides_equivalence(tmp_path):
    mod = _script()
    for org in (0, 1, 2):
        for seed in (0, 1):
            base = 0.50 + 0.1 * org + 0.02 * seed  # instances differ a lot, seeds a little
            _write(tmp_path, "dualselect", org, seed, base)
            _write(tmp_path, "ds_prefilter128", org, seed, base + 0.001 * (org - 1))  # +-0.1 point
            _write(tmp_path, "dualselect_2s", org, seed, base + 0.05)  # +5 points everywhere
    _write(tmp_path, "dualselect_2s", 0, 5, 0.0)  # a run the release lacks: not paired
    runs = mod.load(tmp_path)
    common, rows = mod.paired(runs, "ds_prefilter128")
    assert len(common) == 6
    row = rows[0]
    assert row.startswith("| ds_prefilter128 | task EM | +0.0 |") and row.endswith("equivalent |")
    common, rows = mod.paired(runs, "dualselect_2s")
    assert len(common) == 6 and all("| +5.0 | [+5.0, +5.0] | - |" in r for r in rows)
    text = mod.table(runs)
    assert "## Paired differences against `dualselect`" in text
    assert "95% t interval over the instance means" in text
    # the method table: instance means, clipped intervals
    line = next(x for x in text.splitlines() if x.startswith("| dualselect |"))
    assert line.split(" | ")[1].startswith("61.0 [")  # mean of 51, 61, 71


def test_a_shifted_cheaper_route_is_not_shown_equivalent(tmp_path):
    mod = _script()
    for org in (0, 1, 2):
        _write(tmp_path, "dualselect", org, 0, 0.9)
        _write(tmp_path, "ds_prefilter128", org, 0, 0.9 - 0.01 * (1 + org))  # -1, -2, -3 points
    _, rows = mod.paired(mod.load(tmp_path), "ds_prefilter128")
    assert all(r.endswith("not shown |") for r in rows)
    assert rows[0].split(" | ")[2] == "-2.0"


def test_the_instances_config_runs_the_table_rows_on_three_instances():
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.experiments.compare_runs import check_compare

    cfg = CompareConfig.from_yaml(str(ROOT / "configs" / "compare_organism_instances.yaml"))
    check_compare(cfg)
    assert cfg.organism_seeds == [0, 1, 2] and cfg.seeds == [0, 1, 2] and cfg.tune is None
    mod = _script()
    assert mod.REFERENCE in cfg.methods and set(mod.EQUIVALENT) <= set(cfg.methods)
    method, over = cfg.resolve_method("ds_prefilter128")  # the release's overrides and M
    assert method == "dualselect" and over == {
        **cfg.resolve_method("dualselect")[1],
        "refresh_prefilter": 128,
    }


def test_the_design_choice_changes_the_default_only_on_a_clear_validation_win(tmp_path):
    mod = _script()
    tune = mod.design_tune()  # the config's candidates, with the default among them
    assert mod.DEFAULT in tune["candidates"] and "ds_2s_ul" in tune["candidates"]
    tune = {**tune, "candidates": [mod.DEFAULT, "ds_2s_ul"]}
    for org in (0, 1, 2):
        for seed in (0, 1):
            _write(tmp_path, mod.DEFAULT, org, seed, 0.90)
            _write(tmp_path, "ds_2s_ul", org, seed, 0.92 + 0.001 * org)  # +2 points on every instance
    text = mod.table(mod.load(tmp_path), tune)
    assert "**ds_2s_ul**" in text and "the default becomes `ds_2s_ul`" in text
    # a win on one instance and losses on the others: chosen on the mean, but not clear
    for seed in (0, 1):
        _write(tmp_path, "ds_2s_ul", 0, seed, 0.99)
        _write(tmp_path, "ds_2s_ul", 1, seed, 0.89)
        _write(tmp_path, "ds_2s_ul", 2, seed, 0.895)
    text = mod.table(mod.load(tmp_path), tune)
    assert "**ds_2s_ul**" in text and f"the default stays `{mod.DEFAULT}`" in text
    assert "+0.83 points" in text  # (+9 - 1 - 0.5) / 3 on the validation score


def test_paired_intervals_stay_inside_the_range_of_a_difference_of_rates(tmp_path):
    mod = _script()
    for org, v in ((0, 0.0), (1, 0.0), (2, 0.9)):  # -100, -100, -10 points: t interval past -100
        _write(tmp_path, "dualselect", org, 0, 1.0)
        _write(tmp_path, "ds_2s_refpen", org, 0, v)
    _, rows = mod.paired(mod.load(tmp_path), "ds_2s_refpen")
    lo = float(rows[0].split(" | ")[3].strip("[]").split(", ")[0])
    assert rows[0].split(" | ")[2] == "-70.0" and lo == -100.0
