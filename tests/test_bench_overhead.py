"""benchmarks/overhead.py end to end at a tiny scale (organism, few steps, in-process), so the
script cannot rot. No timed assertions: only that every phase, ratio and target is reported."""

from __future__ import annotations

import json

import pytest
import torch

from repo_scripts import load_script


def _load():
    return load_script("benchmarks/overhead.py", "overhead_bench")


def test_overhead_benchmark_smoke(organism_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    mod = _load()
    argv = ["--out", str(tmp_path), "--sizes", "organism", "--methods", "sft,dualselect,lisa"]
    argv += ["--steps", "12", "--reps", "1", "--pools", "32,64", "--inline"]
    res = mod.main(argv)
    s = res["sizes"]["organism"]
    ds, sft, lisa = (s["methods"][m] for m in ("dualselect", "sft", "lisa"))
    # the release's W = 10 warm-up steps, one refresh, then 2 selection steps
    assert ds["phase_count"] == {"warmup": 10, "refresh": 1, "selection": 2}
    assert sft["phase_count"] == {"plain": 12} and sft["ratio_to_sft_median"] == 1.0
    assert set(lisa["phase_count"]) == {"alignment", "finetune"}
    assert ds["ratio_to_sft_median"] > 0 and ds["peak_rss_mb_median"] > 0
    assert s["noise_same_step_ratio"] > 0
    proj = s["epoch_projection"]
    assert proj["steps_per_epoch"] == 56 and proj["warmup_steps"] == 10 and proj["dualselect"]["epoch_s"] > 0
    assert [m["pool"] for m in s["refresh_memory"]] == [32, 64]
    assert all(m["scored"] == m["pool"] for m in s["refresh_memory"])
    # the resting-RSS trace: every 16 batches of 16, then the end; widest batch never shrinks
    for m in s["refresh_memory"]:
        tr = m["rss_trace"]
        assert [row[0] for row in tr] == [*range(0, -(-m["pool"] // 16), 16), -(-m["pool"] // 16)]
        assert all(a[1] <= b[1] for a, b in zip(tr, tr[1:])) and tr[-1][1] > 0 and tr[-1][2] > 0
    # longest references first: both pools' widest batch is the same, so only the batch count differs
    assert len({m["rss_trace"][-1][1] for m in s["refresh_memory"]}) == 1
    assert set(s["targets"]) == {
        "dualselect_over_sft_end_to_end",
        "dualselect_over_sft_one_epoch_projected",
        "refresh_peak_flat_in_pool",
    }
    on_disk = json.loads((tmp_path / "overhead.json").read_text())
    assert on_disk["schema_version"] == mod.SCHEMA_VERSION
    mach = on_disk["machine"]  # where the numbers were measured (dualselect.utils.machine_info)
    assert mach["cpus"] >= 1 and mach["cpu"] and mach["torch"] == torch.__version__
    assert mach["cpu_bf16"] in (True, False, None) and mach["cuda"] == torch.cuda.is_available()
    assert len(list((tmp_path / "runs" / "organism").glob("*-rep0.json"))) == 3
    out = capsys.readouterr().out
    assert "| dualselect | 12 |" in out and "refresh_peak_flat_in_pool" in out
    # a second invocation reuses the per-run files (resumable) and gives the same summary
    again = mod.main(argv)
    assert again["sizes"]["organism"]["methods"] == s["methods"]


@pytest.mark.slow
def test_refresh_probe_of_the_prefiltered_refresh(organism_dir, tmp_path):
    """The two-stage probe scores every reference forward-only and gives M of them gradients."""
    torch.set_num_threads(1)
    mod = _load()
    exact = mod.refresh_memory("organism", 48, tmp_path, 1)
    pre = mod.refresh_memory("organism", 48, tmp_path, 1, prefilter=16)
    assert exact["prefilter"] is None and exact["scored"] == exact["gradients"] == 48
    assert pre["prefilter"] == 16 and pre["scored"] == 48 and pre["gradients"] == 16
    assert pre["refs_per_s"] > 0 and pre["peak_rss_mb"] > 0
    _, over = mod.method_overrides("dualselect_prefilter", "organism")
    assert (
        over["refresh_prefilter"] == mod.SIZE_DEFAULTS["organism"]["prefilter"] and over["ref_mode"] == "hard"
    )
