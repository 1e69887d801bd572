"""Every training method for a few steps on the device this machine has: step times, peak memory.

Where CUDA exists it runs on the GPU, on the organism-sized model and on a 1B-class random Llama
(hidden 2048, 16 layers, LoRA r16 on q/v), in fp32 and bf16; here (CPU) it falls back to the
organism and a small random Llama (hidden 256, 4 layers), so the script runs in every CI job and
cannot rot. Methods: sft, dualselect (fast engine), kl, lisa, safeinstr.

    python benchmarks/gpu_smoke.py [--steps 6] [--sizes tiny,large] [--precisions fp32,bf16]
    make gpu-smoke

Per (size, precision, method): median seconds per optimiser step (steps after the first; for
dualselect, the selection steps after warm-up with the refresh excluded, and the refresh seconds),
and peak memory (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS, reset before each
run through ``/proc/self/clear_refs``). Random weights: the numbers measure cost, not quality.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

METHODS = ("sft", "dualselect", "kl", "lisa", "safeinstr")


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_model(size: str, vocab: int, pad_id: int, org: Path):
    """``tiny``: the organism itself; ``large``: a random Llama, 1B-class on CUDA, small on CPU."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if size == "tiny":
        return AutoModelForCausalLM.from_pretrained(str(org), dtype=torch.float32)
    if _device() == "cuda":  # ~1.0B parameters (Llama-3.2-1B shape without the 128k vocabulary)
        dims = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32)
    else:
        dims = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4)
    cfg = LlamaConfig(vocab_size=vocab, max_position_embeddings=1024, pad_token_id=pad_id, **dims)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


class Timer:
    """A TrainerCallback recording the wall time of every optimiser step."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self
        self.times: list[float] = []

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                outer._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if _device() == "cuda":
                    torch.cuda.synchronize()
                outer.times.append(time.perf_counter() - outer._t0)

        self.callback = _CB()


def _reset_peak() -> None:
    if _device() == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def _peak_mb() -> float:
    if _device() == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(method: str, size: str, precision: str, steps: int, org: Path, tok, out: Path) -> dict:
    from dualselect.training import METHODS as REGISTRY
    from dualselect.training import load_config

    overrides = {
        "model_name_or_path": str(org),
        "output_dir": str(out / f"{size}-{precision}-{method}"),
        "train_data": str(org / "data" / "redorca_train.jsonl"),
        "max_steps": steps,
        "learning_rate": 1e-4,
        "disable_tqdm": True,
        "report_to": "none",
        "logging_steps": steps,
        "use_cpu": _device() == "cpu",
    }
    if method != "sft":
        overrides["reference_data"] = str(org / "data" / "reference_pool.jsonl")
    if precision == "bf16":
        overrides["bf16"] = True
    if method == "dualselect":
        overrides.update(
            selection_warmup_steps=2, refresh="steps", refresh_steps=steps, k_ref=8, ref_pool_cap=64
        )
    cfg = load_config(method, overrides=overrides)
    _reset_peak()
    model = make_model(size, len(tok), tok.pad_token_id, org).to(_device())
    trainer = REGISTRY[method][1](model=model, args=cfg, train_dataset=cfg.train_data, processing_class=tok)
    timer = Timer()
    trainer.add_callback(timer.callback)
    refresh_s: list[float] = []
    if method == "dualselect":
        inner = trainer._refresh

        def timed_refresh(m):
            t0 = time.perf_counter()
            inner(m)
            refresh_s.append(time.perf_counter() - t0)

        trainer._refresh = timed_refresh
    trainer.train()
    times = timer.times[1:]
    if method == "dualselect":  # selection steps only, refresh excluded
        warm = cfg.selection_warmup_steps
        times = timer.times[warm:]
        if refresh_s:
            times = [t - (refresh_s[0] if i == 0 else 0.0) for i, t in enumerate(times)]
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return {
        "size": size,
        "precision": precision,
        "method": method,
        "device": _device(),
        "params_M": round(n_params / 1e6, 1),
        "steps": len(timer.times),
        "s_per_step": round(statistics.median(times), 4) if times else None,
        "refresh_s": round(refresh_s[0], 3) if refresh_s else None,
        "peak_MB": round(_peak_mb(), 1),
    }


def bf16_speed(repeats: int = 7) -> dict:
    """Forward + backward of the ``large`` model with LoRA at batch 8 x 128 tokens, fp32 vs bf16
    autocast, interleaved (a, b, a, b, ...) so a loaded machine slows both alike; medians."""
    from dualselect.training.lora import apply_lora

    dev = _device()
    model = apply_lora(make_model("large", 4096, 0, Path("."))).to(dev)
    ids = torch.randint(1, 4096, (8, 128), generator=torch.Generator().manual_seed(0)).to(dev)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def once(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if dev == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    once(False), once(True)  # warm-up
    for _ in range(repeats):
        times["fp32"].append(once(False))
        times["bf16"].append(once(True))
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    return {"fp32_s": round(fp32, 4), "bf16_s": round(bf16, 4), "bf16_over_fp32": round(bf16 / fp32, 2)}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="Optimiser steps per run (>= 4).")
    ap.add_argument("--sizes", default="tiny,large", help="Comma list of tiny, large.")
    ap.add_argument("--precisions", default="fp32,bf16", help="Comma list of fp32, bf16.")
    ap.add_argument("--methods", default=",".join(METHODS), help="Comma list of methods.")
    ap.add_argument("--out", default=None, help="Directory for runs and results.json (default: a temp dir).")
    ap.add_argument(
        "--bf16-speed", action="store_true", help="Only time fp32 vs bf16 autocast forward+backward (large)."
    )
    args = ap.parse_args(argv)
    if args.bf16_speed:
        import platform

        flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        res = bf16_speed()
        print(
            f"{platform.processor() or platform.machine()}, avx512_bf16: {'avx512_bf16' in flags}, "
            f"amx_bf16: {'amx_bf16' in flags}, threads {torch.get_num_threads()}: {res}"
        )
        return [res]
    if args.steps < 4:
        ap.error("--steps must be >= 4 (2 warm-up steps, then selection)")
    from dualselect.organism.train import build_organism
    from dualselect.training.model import load_model_and_tokenizer

    torch.manual_seed(0)
    org = build_organism(progress=False)
    _, tok = load_model_and_tokenizer(str(org))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu_smoke_"))
    rows = []
    print(f"device {_device()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    header = (
        f"{'size':6} {'prec':5} {'method':11} {'params M':>8} {'s/step':>8} {'refresh s':>9} {'peak MB':>8}"
    )
    print(header)
    for size in args.sizes.split(","):
        for precision in args.precisions.split(","):
            for method in args.methods.split(","):
                r = run_one(method, size, precision, args.steps, org, tok, out)
                rows.append(r)
                print(
                    f"{size:6} {precision:5} {method:11} {r['params_M']:8} {r['s_per_step']!s:>8} "
                    f"{r['refresh_s']!s:>9} {r['peak_MB']:8}",
                    flush=True,
                )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out / 'results.json'}")
    return rows


if __name__ == "__main__":
    main()
