"""benchmarks/gpu_smoke.py runs here (CPU fallback), so it cannot rot."""

from __future__ import annotations

import torch

from repo_scripts import load_script


def test_gpu_smoke_runs_on_cpu(organism_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    mod = load_script("benchmarks/gpu_smoke.py")
    rows = mod.main(
        [
            "--steps",
            "4",
            "--sizes",
            "tiny",
            "--precisions",
            "fp32",
            "--methods",
            "sft,dualselect,kl,lisa,safeinstr",
            "--out",
            str(tmp_path),
        ]
    )
    assert [r["method"] for r in rows] == ["sft", "dualselect", "kl", "lisa", "safeinstr"]
    assert all(r["steps"] == 4 and r["s_per_step"] > 0 and r["peak_MB"] > 0 for r in rows)
    assert rows[1]["refresh_s"] > 0
    assert (tmp_path / "results.json").exists()
    assert "s/step" in capsys.readouterr().out
