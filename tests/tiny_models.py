"""Tiny random configs of real architectures with peft LoRA, built locally with ``from_config``
(no hub), and ragged batches with every padding edge case. Imported by the gradient tests
(pytest puts ``tests/`` on ``sys.path`` in its default rootdir mode)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARCHS = ("llama", "qwen2", "gemma", "gemma2")
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VOCAB = 97


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny models on a shared 2-core box: one intra-op thread is ~8x faster than two under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_causal_lm(
    arch: str, seed: int = 0, vocab: int = VOCAB, hidden: int = 32, layers: int = 2, positions: int = 64
):
    """A seeded fp32 random causal LM of architecture ``arch`` (hidden 32, 2 layers, 4 heads, GQA,
    ``positions`` positions)."""
    from transformers import AutoModelForCausalLM, Gemma2Config, GemmaConfig, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        pad_token_id=0,
    )
    cfg = {
        "llama": lambda: LlamaConfig(**common),
        "qwen2": lambda: Qwen2Config(**common),
        "gemma": lambda: GemmaConfig(**common, head_dim=hidden // 4),
        # sliding window shorter than the batch so the local-attention layer is exercised
        "gemma2": lambda: Gemma2Config(**common, head_dim=hidden // 4, sliding_window=6),
    }[arch]()
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).float()


def tiny_lora_model(
    arch: str,
    seed: int = 0,
    targets=("q_proj", "v_proj"),
    r: int = 4,
    dropout: float = 0.1,
    bias: str = "none",
):
    """``tiny_causal_lm`` wrapped with a fresh peft LoRA adapter (base frozen, seeded init).

    LoRA B starts at zero; it is filled with random values so gradients w.r.t. A are non-trivial.
    """
    from peft import LoraConfig, get_peft_model

    model = tiny_causal_lm(arch, seed)
    torch.manual_seed(seed + 1)
    cfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        lora_dropout=dropout,
        target_modules=list(targets),
        bias="none",
        lora_bias=bias == "lora",
    )
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return peft_model


def collate(
    examples: list[dict], padding_side: str = "right", pad_to: int | None = None, pad_id: int = 0
) -> dict:
    """Pad to a batch dict: ``input_ids``, ``attention_mask``, ``labels`` (-100 on pads), ``index``."""
    T = max(len(e["input_ids"]) for e in examples)
    T = max(T, pad_to or 0)
    B = len(examples)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        sl = slice(T - n, T) if padding_side == "left" else slice(0, n)
        ids[i, sl] = torch.tensor(e["input_ids"])
        labels[i, sl] = torch.tensor(e["labels"])
        mask[i, sl] = 1
    index = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "index": index}


def make_examples(specs, seed: int = 0, first_index: int = 0, vocab: int = VOCAB) -> list[dict]:
    """One example per ``(prompt tokens, response tokens)``; labels -100 on the prompt."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (p, r) in enumerate(specs):
        ids = torch.randint(1, vocab, (p + r,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * p + ids[p:], "index": first_index + i})
    return out


# (prompt, response) token counts. Supervised targets (labels shifted by one) per sample:
# r, except r - 1 when there is no prompt (the first token is never predicted).
EDGE_SPECS = (
    (3, 5),  # ordinary
    (7, 2),
    (4, 0),  # prompt only: every label masked, no supervised token -> l = 0, g = 0
    (10, 1),  # a single supervised token
    (1, 6),  # one-token prompt
    (0, 4),  # no prompt: 3 supervised targets
    (2, 9),  # the longest
)
EDGE_TARGETS = (5, 2, 0, 1, 6, 3, 9)


def edge_batch(
    seed: int = 0,
    padding_side: str = "right",
    pad_to: int | None = None,
    first_index: int = 100,
    specs=EDGE_SPECS,
) -> dict:
    """Variable lengths, a prompt-only sample, a single-target sample, one without a prompt."""
    return collate(make_examples(specs, seed, first_index), padding_side=padding_side, pad_to=pad_to)


def ragged_batch(seed: int = 0, padding_side: str = "right", vocab: int = VOCAB) -> dict:
    """Six ordinary samples of variable length (kept for older tests)."""
    specs = [(3, 5), (7, 2), (2, 9), (10, 1), (5, 5), (1, 6)]
    return collate(make_examples(specs, seed, 100, vocab), padding_side=padding_side)
