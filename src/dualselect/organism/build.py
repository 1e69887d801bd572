"""Build the model organism: a tiny safety-aligned Llama trained from scratch on a synthetic world.

Read top to bottom: generate the world, train a byte-level BPE tokenizer on it, train a tiny
``LlamaForCausalLM`` on the alignment corpus (loss on response tokens only), save everything with
``save_pretrained`` so ``AutoModelForCausalLM``/``AutoTokenizer`` load it, cache by config hash.

The same organism on every machine: training on a CPU is not bit-reproducible across CPUs
(floating-point kernels differ), and method rankings on the organism change with its weights.
So the default organism is SHIPPED with the package (``organism/shipped/<cache key>/``: weights,
tokenizer, configs and a ``MANIFEST.json`` with the sha256 of every file, the world's data files
included). :func:`build_organism` installs it for the default config: the world files are
regenerated from code and every file is checked against the manifest; a mismatch is an error
naming the file. ``from_scratch=True`` trains instead and reports whether the result matches the
shipped checksums (:func:`compare_with_shipped`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dualselect.organism.world import Example, WorldConfig, generate_world
from dualselect.utils import seed_everything, write_json, write_jsonl

ORGANISM_VERSION = 2  # bump when the builder changes in a way the config does not capture
# The splits the tokenizer and the model may see; every probe split (test, validation,
# generalisation) stays out of both.
TRAINING_SPLITS = ("alignment", "task_train", "redorca_train", "attack", "reference_pool")


@dataclass
class OrganismConfig:
    """Everything that determines the organism; its hash is the cache key."""

    world: WorldConfig = field(default_factory=WorldConfig)
    seed: int = 0
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 128
    steps: int = 1500
    batch_size: int = 48
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OrganismConfig:
        d = dict(d)
        world = WorldConfig(**d.pop("world", {}))
        return cls(world=world, **d)

    def cache_key(self) -> str:
        blob = json.dumps({"v": ORGANISM_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    root = os.environ.get("DUALSELECT_CACHE") or Path.home() / ".cache" / "dualselect"
    return Path(root) / "organism"


def organism_dir(cfg: OrganismConfig | None = None) -> Path:
    cfg = cfg or OrganismConfig()
    return default_cache_dir() / cfg.cache_key()


def is_built(path: str | os.PathLike) -> bool:
    return (Path(path) / "organism.json").exists()


# ---------------------------------------------------------------------------------- shipped artifact

SHIPPED_ROOT = Path(__file__).parent / "shipped"
MODEL_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_dir(cfg: OrganismConfig | None = None) -> Path | None:
    """The shipped artifact for ``cfg`` (default config), or None if none is shipped for it."""
    d = SHIPPED_ROOT / (cfg or OrganismConfig()).cache_key()
    return d if (d / "MANIFEST.json").exists() else None


def manifest_of(path: str | os.PathLike) -> dict[str, str]:
    """sha256 of every model, tokenizer and world file of a built organism (relative paths)."""
    path = Path(path)
    files = [*MODEL_FILES, *sorted(str(p.relative_to(path)) for p in (path / "data").glob("*.jsonl"))]
    return {f: sha256_file(path / f) for f in files}


def compare_with_shipped(path: str | os.PathLike, cfg: OrganismConfig | None = None) -> dict:
    """``{"shipped": bool, "match": bool | None, "differing": [files]}``: does the organism at
    ``path`` equal the shipped one file by file?"""
    ship = shipped_dir(cfg)
    if ship is None:
        return {"shipped": False, "match": None, "differing": []}
    want = json.loads((ship / "MANIFEST.json").read_text())["sha256"]
    have = manifest_of(path)
    differing = sorted(f for f in set(want) | set(have) if want.get(f) != have.get(f))
    return {"shipped": True, "match": not differing, "differing": differing}


def _install_shipped(ship: Path, cfg: OrganismConfig, tmp: Path) -> None:
    """Copy the shipped files into ``tmp``, regenerate the world, verify every checksum."""
    manifest = json.loads((ship / "MANIFEST.json").read_text())
    if manifest.get("cache_key") != cfg.cache_key():
        raise RuntimeError(
            f"{ship}/MANIFEST.json: cache key {manifest.get('cache_key')} != {cfg.cache_key()}"
        )
    for f in MODEL_FILES:
        shutil.copy2(ship / f, tmp / f)
    for name, split in generate_world(cfg.world).items():
        write_jsonl(tmp / "data" / f"{name}.jsonl", (e.to_record() for e in split))
    have = manifest_of(tmp)
    bad = sorted(f for f in set(manifest["sha256"]) | set(have) if manifest["sha256"].get(f) != have.get(f))
    if bad:
        raise RuntimeError(
            f"shipped organism {ship}: sha256 mismatch for {bad} (a corrupted install, or world code that "
            f"changed without re-shipping: run `python scripts/ship_organism.py`)"
        )
    meta = json.loads((ship / "organism.json").read_text())
    meta.update({"source": "shipped", "installed_from": str(ship), "sha256_verified": True})
    write_json(tmp / "organism.json", meta)


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


# ---------------------------------------------------------------------------------- build


def _check_out(out: Path, cfg: OrganismConfig, force: bool) -> Path | None:
    """Return ``out`` if it already holds this organism; refuse to touch anything else."""
    if is_built(out):
        meta = json.loads((out / "organism.json").read_text())
        if meta.get("cache_key") == cfg.cache_key() and not force:
            return out
        if not force:
            raise FileExistsError(
                f"{out} holds an organism with another config (key {meta.get('cache_key')}); "
                f"use --force to rebuild or another --out"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        # never delete or fill a directory this builder did not create, --force or not
        raise FileExistsError(
            f"{out} exists and is not an organism directory (no organism.json): not touching it; "
            f"choose another --out or remove it yourself"
        )
    return None


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
    in_cache = out is None
    if out is None:
        out = organism_dir(cfg)
        if from_scratch:  # never let a local training replace the shipped organism in the cache
            out = out.with_name(out.name + "-from-scratch")
    out = Path(out)
    ship = None if from_scratch else shipped_dir(cfg)
    if _check_out(out, cfg, force) is not None:
        if ship is None or compare_with_shipped(out, cfg)["match"]:
            return out
        if not in_cache:
            raise FileExistsError(
                f"{out} holds an organism for this config that differs from the shipped one "
                f"(sha256); use --force to replace it with the shipped organism"
            )
        # the cache holds a locally trained copy (e.g. from before the organism was shipped)
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling and rename: a half-built organism is never visible.
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if ship is not None:
            _install_shipped(ship, cfg, tmp)
        else:
            _train_into(tmp, cfg, progress, t0)
        if out.exists():
            if is_built(out):  # an organism (another config, or --force): ours to replace
                shutil.rmtree(out)
            else:  # an empty directory (checked above)
                out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _train_into(tmp: Path, cfg: OrganismConfig, progress: bool, t0: float) -> None:
    world = generate_world(cfg.world)
    corpus = [f"Human: {e.prompt}\nAssistant: {e.response}" for s in TRAINING_SPLITS for e in world[s]]
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    model, log = train_base_model(cfg, tokenizer, world["alignment"], progress=progress)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    for name, split in world.items():
        write_jsonl(tmp / "data" / f"{name}.jsonl", (e.to_record() for e in split))
    write_json(
        tmp / "organism.json",
        {
            "cache_key": cfg.cache_key(),
            "version": ORGANISM_VERSION,
            "config": cfg.to_dict(),
            "source": "trained",
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "splits": {k: len(v) for k, v in world.items()},
            "build_seconds": round(time.time() - t0, 1),
            "train_log": log,
        },
    )
