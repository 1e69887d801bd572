"""The generation benchmark's wiring on a tiny local model (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_script("benchmarks/generation.py", "bench_generation")


def test_generation_benchmark_wiring(tmp_path):
    from tiny_models import tiny_causal_lm
    from tiny_tokenizers import tiny_tokenizer

    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    model = tiny_causal_lm("llama", vocab=len(tok), positions=128)
    model.config.eos_token_id = tok.eos_token_id
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    bench = _bench()
    res = bench.main(
        [
            "--out",
            str(tmp_path / "out"),
            "--models",
            f"path:{tmp_path / 'tiny'}",
            "--n-prompts",
            "5",
            "--new-tokens",
            "3,5",
            "--threads",
            "1",
            "--reps",
            "2",
            "--matmul-seconds",
            "0.01",
            "--matmul-size",
            "64",
            "--bf16",
            "on",
            "--no-full-mix",
        ]
    )
    on_disk = json.loads((tmp_path / "out" / "generation.json").read_text())
    assert on_disk["models"].keys() == res["models"].keys() and on_disk["machine"]["cpus"]
    m = on_disk["models"][f"path:{tmp_path / 'tiny'}"]
    assert m["prompt_sets"]["5"]["n_prompts"] == 5 and m["full_mix"] is None
    want = {f"{p}|t1|n{n}" for p in bench.PATHS for n in (3, 5)}
    assert set(m["configs"]) == want
    for c in m["configs"].values():
        assert c["rounds"] == 2 and c["prompts_per_s"] > 0 and c["new_tokens_per_s"] >= 0
        assert c["flops_utilisation"] > 0 and c["matmul_gflops_per_s"] > 0
        assert c["dtype"] == ("bfloat16" if c["path"] == "hf_bf16" else "float32")
        if c["path"] == "baseline":
            assert c["verdict_agreement"] == 1.0 and c["identical_share"] == 1.0
            assert c["speedup_vs_baseline"] == 1.0
        else:
            assert 0 <= c["verdict_agreement"] <= 1 and c["speedup_vs_baseline"] > 0
    # fp32 merged and hf paths give the baseline's answers on this model (token-identical)
    assert m["configs"]["hf|t1|n5"]["identical_share"] == 1.0
    assert m["configs"]["merged|t1|n5"]["identical_share"] == 1.0
    md = (tmp_path / "out" / "generation.md").read_text()
    assert "| hf | float32 | 1 | 5 |" in md and "x baseline" in md
    # model FLOPs: prompt tokens through the layers, new tokens also through the head
    fc = {"body": 10.0, "head": 100.0, "attn_per_context": 0.0}
    assert bench.model_flops(fc, [3], [2]) == 3 * 10 + 3 * 100 + 2 * 10
    assert bench.subset({"a": list("abcdef"), "b": list("xy")}, 4) == bench.subset(
        {"a": list("abcdef"), "b": list("xy")}, 4
    )
    assert len(bench.subset({"a": list("abcdef"), "b": list("xy")}, 4)) == 4
