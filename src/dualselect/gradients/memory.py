"""The memory model of the fast engine's scoring pass (docs/method.md, "Memory model").

For a decoder with ``L`` layers and LoRA rank ``r`` on projections ``m`` with widths
``(in_m, out_m)``, a capture of ``B`` samples of ``T`` tokens holds, beyond what a training step at
batch ``B`` holds (weights, the autograd graph's activations, logits):

* ``G``: every sample's LoRA gradient, ``4 B P`` bytes (fp32), ``P = L r sum_m (in_m + out_m)``;
* during the backward, one layer's output gradient at a time, at most ``4 B T max_m out_m`` bytes
  (the in-hook reduction); without it, all of them: ``4 B T L sum_m (out_m + r)`` bytes;
* the supervised positions' logits, ``B T_sup V`` in the model dtype plus an fp32 copy for the
  cross-entropy (``T_sup``: positions predicting a supervised token, at most ``T``).

A refresh adds 4 scalars per scored reference and ``r`` (``4 P`` bytes), so its peak does not grow
with the pool; the task step holds the ``G`` of every accumulation micro-batch until the global
selection (``gradient_accumulation_steps`` x the capture's ``G``).
"""

from __future__ import annotations

from dataclasses import dataclass

QV = ("q_proj", "v_proj")
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def projection_shapes(hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int | None = None):
    """``name -> (in, out)`` of a Llama-style decoder layer's linear projections."""
    hd = head_dim or hidden // heads
    return {
        "q_proj": (hidden, heads * hd),
        "k_proj": (hidden, kv_heads * hd),
        "v_proj": (hidden, kv_heads * hd),
        "o_proj": (heads * hd, hidden),
        "gate_proj": (hidden, intermediate),
        "up_proj": (hidden, intermediate),
        "down_proj": (intermediate, hidden),
    }


@dataclass
class ScoringMemory:
    """Bytes of each term of the model (see the module doc)."""

    lora_params: int
    per_sample_gradient: int  # 4 P
    capture_G: int  # 4 B P
    peak_one_delta: int  # with the in-hook reduction
    all_deltas: int  # without it
    logits: int  # supervised positions, model dtype + fp32 copy


def scoring_memory(
    shapes: dict[str, tuple[int, int]],
    layers: int,
    targets: tuple[str, ...],
    r: int,
    batch: int,
    tokens: int,
    vocab: int,
    dtype_bytes: int = 2,
) -> ScoringMemory:
    """The terms of the memory model for a capture of ``batch`` x ``tokens`` (every token supervised)."""
    mods = [shapes[t] for t in targets]
    P = layers * r * sum(i + o for i, o in mods)
    return ScoringMemory(
        lora_params=P,
        per_sample_gradient=4 * P,
        capture_G=4 * batch * P,
        peak_one_delta=4 * batch * tokens * max(o for _, o in mods),
        all_deltas=4 * batch * tokens * layers * sum(o + r for _, o in mods),
        logits=batch * tokens * vocab * (dtype_bytes + 4),
    )


def llama3_8b() -> tuple[dict[str, tuple[int, int]], int, int]:
    """(projection shapes, layers, vocabulary) of Llama-3-8B."""
    return projection_shapes(4096, 14336, 32, 8), 32, 128256


def table(batch: int = 16, tokens: int = 512, r: int = 16) -> str:
    """The docs' Llama-3-8B table (``python -m dualselect.gradients.memory``)."""
    shapes, layers, vocab = llama3_8b()
    rows = [
        "| LoRA r16 on | P (LoRA params) | one g_k | G at B | one delta (in-hook) | all deltas (old) | logits |"
    ]
    rows.append("|---|---|---|---|---|---|---|")
    for name, targets in (("q, v", QV), ("all linear", ALL_LINEAR)):
        m = scoring_memory(shapes, layers, targets, r, batch, tokens, vocab)
        gb = lambda b: f"{b / 2**30:.2f} GB" if b >= 2**30 else f"{b / 2**20:.0f} MB"  # noqa: E731
        rows.append(
            f"| {name} | {m.lora_params / 1e6:.1f}M | {gb(m.per_sample_gradient)} | {gb(m.capture_G)} | "
            f"{gb(m.peak_one_delta)} | {gb(m.all_deltas)} | {gb(m.logits)} |"
        )
    return f"B = {batch}, T = {tokens}, fp32 statistics, bf16 logits\n\n" + "\n".join(rows)


if __name__ == "__main__":
    print(table())
