"""Train the model organism: a tiny safety-aligned Llama trained from scratch on a synthetic world.

Read top to bottom: generate the world, train a byte-level BPE tokenizer on it, train a tiny
``LlamaForCausalLM`` on the alignment corpus (loss on response tokens only), save everything with
``save_pretrained`` so ``AutoModelForCausalLM``/``AutoTokenizer`` load it, cache by config hash.
For the default config, :func:`build_organism` installs the shipped organism instead
(:mod:`dualselect.organism.artifact`) unless ``from_scratch``, and then reports whether the
trained result matches the shipped checksums (:func:`compare_with_shipped`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dualselect.organism.artifact import (
    ORGANISM_VERSION,
    TRAINING_SPLITS,
    OrganismConfig,
    _check_out,
    install_organism,
    materialise,
    organism_dir,
    shipped_dir,
)
from dualselect.organism.world import Example, generate_world
from dualselect.utils import seed_everything, write_jsonl

# ---------------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained from scratch (so any text encodes; no UNK)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )


# ---------------------------------------------------------------------------------- training


def _encode(examples: list[Example], tokenizer) -> list[tuple[list[int], list[int]]]:
    # Same prompt/response boundary rule as dualselect.data.encoding (exact boundary: the two
    # parts are tokenized separately; the response owns its leading space).
    out = []
    for e in examples:
        p = tokenizer(f"Human: {e.prompt}\nAssistant:")["input_ids"]
        r = tokenizer(" " + e.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((p + r, [-100] * len(p) + r))
    return out


def _batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    T = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), T), pad_id)
    lab = torch.full((len(rows), T), -100)
    att = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        lab[i, : len(y)] = torch.tensor(y)
        att[i, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def train_base_model(cfg: OrganismConfig, tokenizer, alignment: list[Example], progress: bool = True):
    """Train the tiny Llama on the alignment corpus. Returns (model, log)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    seed_everything(cfg.seed)
    mcfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(mcfg)
    data = _encode(alignment, tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    g = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    log = []
    model.train()
    bar = tqdm(range(cfg.steps), desc="organism: training base model", disable=not progress)
    for step in bar:
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(data), generator=g).tolist()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        batch = _batch([data[i] for i in idx], tokenizer.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": round(loss.item(), 5)})
            bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    return model, log


def build_organism(
    out: str | os.PathLike | None = None,
    cfg: OrganismConfig | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    from_scratch: bool = False,
) -> Path:
    """Build (or load from cache) the organism; returns its directory.

    The directory holds ``model/`` and ``tokenizer`` files (``save_pretrained``), ``data/*.jsonl``
    (every split with ground-truth labels) and ``organism.json`` (config, hash, training log, and
    ``source``: ``shipped`` or ``trained``). For a config with a shipped artifact (the default) the
    shipped organism is installed and verified, unless ``from_scratch``. An existing ``out`` is
    reused when it holds this organism; one with another organism is replaced only with
    ``force``; a non-empty directory without ``organism.json`` is never touched.
    """
    cfg = cfg or OrganismConfig()
    if not from_scratch and shipped_dir(cfg) is not None:
        return install_organism(out, cfg, force=force)
    if out is None:
        out = organism_dir(cfg)
        if from_scratch:  # never let a local training replace the shipped organism in the cache
            out = out.with_name(out.name + "-from-scratch")
    out = Path(out)
    if _check_out(out, cfg, force) is not None:
        return out
    t0 = time.time()
    return materialise(out, lambda tmp: _train_into(tmp, cfg, progress, t0))


def _train_into(tmp: Path, cfg: OrganismConfig, progress: bool, t0: float) -> dict:
    world = generate_world(cfg.world)
    corpus = [f"Human: {e.prompt}\nAssistant: {e.response}" for s in TRAINING_SPLITS for e in world[s]]
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    model, log = train_base_model(cfg, tokenizer, world["alignment"], progress=progress)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    for name, split in world.items():
        write_jsonl(tmp / "data" / f"{name}.jsonl", (e.to_record() for e in split))
    return {
        "cache_key": cfg.cache_key(),
        "version": ORGANISM_VERSION,
        "config": cfg.to_dict(),
        "source": "trained",
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "splits": {k: len(v) for k, v in world.items()},
        "build_seconds": round(time.time() - t0, 1),
        "train_log": log,
    }
