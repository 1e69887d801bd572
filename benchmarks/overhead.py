"""DualSelect overhead on this machine: prints a table and writes JSON.

Measures, at two sizes (the model organism at its batch size 8, and a wider random Llama with
128-256-token samples at batch 16), and on request at a third: ``smollm2``, the real 30-layer
SmolLM2-135M aligned base with its attack task and refusal pool at batch 8 (docs/real_model.md):

* seconds per optimiser step: Standard SFT, DualSelect fast, DualSelect oracle (refresh excluded);
* refresh (reference scoring) seconds per 1k references, and its samples/s relative to SFT training;
* refresh peak RSS for pools of 1k, 4k, 16k references (each pool in a fresh process).

    python benchmarks/overhead.py --out runs/bench [--sizes organism,wide,smollm2] [--steps 6]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_setup(size: str, seed: int = 0):
    """(model with LoRA, task examples, reference examples, pad id, batch size)."""
    from dualselect.training.lora import apply_lora
    from dualselect.utils import seed_everything

    seed_everything(seed)
    if size == "organism":
        from dualselect.data.encoding import encode_records
        from dualselect.data.records import load_records
        from dualselect.organism.build import build_organism
        from dualselect.training.model import load_model_and_tokenizer

        org = build_organism(progress=False)
        model, tok = load_model_and_tokenizer(str(org))
        task, _ = encode_records(load_records(str(org / "data/redorca_train.jsonl")).records, tok)
        refs, _ = encode_records(load_records(str(org / "data/reference_pool.jsonl")).records, tok)
        return apply_lora(model), task, refs, tok.pad_token_id, 8
    if size == "smollm2":  # the real 30-layer SmolLM2-135M, aligned base, its attack and reference data
        from dualselect.data.encoding import encode_records
        from dualselect.data.records import load_records
        from dualselect.realbase.build import build_real_base
        from dualselect.training.model import load_model_and_tokenizer

        rb = build_real_base(progress=False)
        model, tok = load_model_and_tokenizer(str(rb / "model"))
        task, _ = encode_records(load_records(str(rb / "data/task_train.jsonl")).records, tok, max_length=256)
        refs, _ = encode_records(load_records(str(rb / "data/references.jsonl")).records, tok, max_length=256)
        return apply_lora(model), task, refs, tok.pad_token_id, 8
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=4096,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=6,
        num_key_value_heads=6,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(seed)

    def sample(i: int) -> dict:
        n = int(torch.randint(128, 257, (1,), generator=g))
        p = int(torch.randint(16, 64, (1,), generator=g))
        ids = torch.randint(1, 4096, (n,), generator=g).tolist()
        return {"input_ids": ids, "labels": [-100] * p + ids[p:], "n_target_tokens": n - p, "index": i}

    task = [sample(i) for i in range(256)]
    refs = [sample(i) for i in range(256)]
    return apply_lora(model), task, refs, 0, 16


def cycle(examples: list[dict], n: int) -> list[dict]:
    return [dict(examples[i % len(examples)], index=i) for i in range(n)]


def time_steps(size: str, steps: int) -> dict:
    """Seconds per optimiser step (median over ``steps`` after one warm-up step)."""
    from dualselect.data.encoding import collate
    from dualselect.gradients import add_flat_grad, make_engine, trainable_parameters
    from dualselect.selection import correct, select_top, task_scores

    model, task, refs, pad, bs = make_setup(size)
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr=1e-4)
    batches = [collate(task[i * bs : (i + 1) * bs], pad) for i in range(steps + 1)]
    r = make_engine("fast").weighted_gradient(model, collate(refs[:bs], pad), torch.ones(len(refs[:bs])))
    out = {}

    def sft_step(b):
        model.train()
        loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def ds_step(engine):
        def step(b):
            cap = engine.capture(model, b)
            sel = select_top(task_scores(cap.losses, cap.cos(r)), "soft", k=bs // 2, largest=False)
            w = torch.zeros(cap.losses.numel())
            w[sel.indices] = sel.weights
            add_flat_grad(model, correct(cap.weighted_sum(w), r, 0.2))
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    for name, fn in (
        ("sft", sft_step),
        ("dualselect_fast", ds_step(make_engine("fast"))),
        ("dualselect_oracle", ds_step(make_engine("oracle"))),
    ):
        times = []
        for i, b in enumerate(batches):
            t0 = time.perf_counter()
            fn(b)
            if i:  # first step warms caches
                times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    # refresh throughput: scoring references vs SFT training samples/s on the same data
    from dualselect.data.encoding import length_bucketed_order
    from dualselect.gradients import score_pool

    pool = cycle(refs, 256 if size in ("wide", "smollm2") else 1000)
    order = length_bucketed_order([len(e["input_ids"]) for e in pool], 16, seed=0)
    t0 = time.perf_counter()
    score_pool(make_engine("fast"), model, (collate([pool[j] for j in o], pad) for o in order), r)
    refresh_s = time.perf_counter() - t0
    out["refresh_seconds_per_1k"] = refresh_s * 1000 / len(pool)
    out["refresh_samples_per_s"] = len(pool) / refresh_s
    out["sft_samples_per_s"] = bs / out["sft"]
    out["n_trainable"] = sum(p.numel() for p in params)
    return out


def _rss_child(size: str, n_refs: int, q) -> None:
    import resource

    from dualselect.data.encoding import collate, length_bucketed_order
    from dualselect.gradients import make_engine, score_pool

    model, _, refs, pad, _ = make_setup(size)
    pool = cycle(refs, n_refs)
    r = torch.randn(sum(p.numel() for p in model.parameters() if p.requires_grad))
    order = length_bucketed_order([len(e["input_ids"]) for e in pool], 16, seed=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    score_pool(make_engine("fast"), model, (collate([pool[j] for j in o], pad) for o in order), r)
    q.put(
        {
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_refresh_mb": before / 1024,
        }
    )


def refresh_rss(size: str, n_refs: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_rss_child, args=(size, n_refs, q))
    p.start()
    res = q.get()
    p.join()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--sizes", default="organism,wide")
    ap.add_argument("--steps", type=int, default=6, help="timed optimiser steps per method (median)")
    ap.add_argument("--pools", default="1000,4000,16000", help="pool sizes for the refresh memory check")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    }
    for size in args.sizes.split(","):
        res = time_steps(size, args.steps)
        res["rss"] = {n: refresh_rss(size, int(n)) for n in args.pools.split(",")}
        results[size] = res
        print(f"[{size}] done", file=sys.stderr)
    rows = []
    for size in args.sizes.split(","):
        r = results[size]
        rss = r["rss"]
        first, last = rss[args.pools.split(",")[0]], rss[args.pools.split(",")[-1]]
        rows.append(
            [
                size,
                f"{r['n_trainable']:,}",
                f"{r['sft']:.3f}",
                f"{r['dualselect_fast']:.3f}",
                f"{r['dualselect_oracle']:.3f}",
                f"{r['dualselect_fast'] / r['sft']:.2f}x",
                f"{r['dualselect_oracle'] / r['dualselect_fast']:.2f}x",
                f"{r['refresh_seconds_per_1k']:.1f}",
                f"{r['refresh_samples_per_s'] / r['sft_samples_per_s']:.2f}x",
                " / ".join(f"{rss[n]['peak_rss_mb']:.0f}" for n in args.pools.split(",")),
                f"{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x",
            ]
        )
    head = [
        "size",
        "LoRA params",
        "SFT s/step",
        "DS fast s/step",
        "DS oracle s/step",
        "fast/SFT",
        "oracle/fast",
        "refresh s/1k",
        "refresh vs SFT samples/s",
        f"refresh peak MB ({args.pools})",
        "peak last/first",
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    from dualselect.utils import write_json

    write_json(Path(args.out) / "overhead.json", results)
    print(f"\nwritten: {Path(args.out) / 'overhead.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
