"""Greedy generation for evaluation, and the generations file that judges read.

Generations are written once (JSONL) and judged from the file, so a judge can be re-run, or a new
judge added, without regenerating.

Backends (docs/evaluation.md, "Generation backends"):

* ``hf`` (default): a LoRA adapter is merged into a *copy* of the base weights (the model given
  is never changed), prompts are tokenized once and sorted by length, batches are sized by a
  token budget (rows x (prompt + new tokens)), the chat template's common prefix is run once and
  its key/value cache shared by every row, each step feeds one token per unfinished row, rows that
  hit EOS or their budget leave the batch, and a batch ends when every row has finished. Results
  come back in input order. Greedy: the argmax of the logits (no penalties, no sampling).
* ``hf-generate``: ``model.generate`` on the model as given, a fixed number of prompts per batch
  (the path before the one above; kept as a reference and for architectures the loop above does
  not support).
* ``vllm``: the model (and its LoRA adapter, through ``LoRARequest``) served by vLLM; prompts are
  passed as token ids, so the tokens are the ones the ``hf`` path sees.
"""

from __future__ import annotations

import copy
import inspect
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dualselect.utils import read_jsonl, write_jsonl

BACKENDS = ("hf", "hf-generate", "vllm")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Default token budget of a batch: rows x (longest prompt + its generation budget). Measured on a
# 2-core CPU with SmolLM2-135M (docs/benchmarks.md, "Generation"): larger batches keep the matmuls
# efficient; 16k tokens of fp32 cache for a 135M model is under 1 GB.
DEFAULT_TOKEN_BUDGET = 16384
# A finished row leaves the batch once this share of the batch has finished (each compaction
# copies the key/value cache once; at most 1/8 of a step's rows compute tokens nobody reads)
_COMPACT_SHARE = 8


# ----------------------------------------------------------------------------- model preparation


def _peft_mergeable(model: Any) -> bool:
    """A peft model whose every adapter is LoRA-like and can be merged into the weights."""
    cfgs = getattr(model, "peft_config", None)
    if not isinstance(cfgs, dict) or not cfgs or not hasattr(model, "merge_and_unload"):
        return False
    mergeable = {"LORA", "ADALORA", "IA3", "LOHA", "LOKR", "OFT", "BOFT", "VERA"}
    return all(str(getattr(c.peft_type, "value", c.peft_type)).upper() in mergeable for c in cfgs.values())


def inference_model(model: Any, dtype: str | torch.dtype | None = None, merge: bool = True) -> Any:
    """The module generation runs on: for a peft model with a LoRA(-like) adapter, a deep copy
    with the adapter merged into the base weights (``W + s * B @ A``: one matmul per projection
    instead of three); else ``model`` itself. ``dtype`` (``"bfloat16"``, ...): a converted copy.
    ``model`` is never changed (its weights, adapter, train/eval mode and ``requires_grad``)."""
    dt = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if merge and _peft_mergeable(model):
        out = copy.deepcopy(model).merge_and_unload()
    elif dt is not None and dt != next(model.parameters()).dtype:
        out = copy.deepcopy(model)
    else:
        return model
    if dt is not None:
        out = out.to(dt)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _check_dtype(dtype: str | None) -> None:
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(DTYPES)}")


# ----------------------------------------------------------------------------- the hf loop


def _budget_batches(
    lengths: list[int], budgets: list[int], token_budget: int, max_rows: int | None
) -> list[list[int]]:
    """Indices grouped into batches, longest generation budget and prompt first; a batch holds
    as many rows as fit ``rows * (longest prompt + largest budget) <= token_budget`` (at least
    one row; at most ``max_rows``)."""
    order = sorted(range(len(lengths)), key=lambda i: (-budgets[i], -lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    long_prompt = long_budget = 0
    for i in order:
        lp, lb = max(long_prompt, lengths[i]), max(long_budget, budgets[i])
        if cur and (
            (len(cur) + 1) * (lp + lb) > token_budget or (max_rows is not None and len(cur) >= max_rows)
        ):
            batches.append(cur)
            cur, lp, lb = [], lengths[i], budgets[i]
        cur.append(i)
        long_prompt, long_budget = lp, lb
    if cur:
        batches.append(cur)
    return batches


def _common_prefix(rows: list[list[int]]) -> int:
    """Length of the longest token prefix every row shares, leaving each row at least one token
    (the last prompt token's logits give the first new token)."""
    if not rows:
        return 0
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for r in rows[1:]:
        k = 0
        while k < n and r[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return max(n, 0)


def _has_sliding_window(model: Any) -> bool:
    cfg = getattr(model, "config", None)
    get = getattr(cfg, "get_text_config", None)
    cfg = get() if callable(get) else cfg
    # a sliding window counts cache columns: with the prefix shared, the padding between prefix and
    # prompt would sit inside a row's window (left padding alone keeps it outside)
    types = getattr(cfg, "layer_types", None) or ()
    return getattr(cfg, "sliding_window", None) is not None or any("sliding" in str(t) for t in types)


class _Forward:
    """``model(...)`` for the loop: logits of the last position only where the model supports it;
    the key/value cache passed as ``cache`` (transformers >= 5.25) or ``past_key_values``."""

    def __init__(self, model: Any):
        self.model = model
        params = inspect.signature(model.forward).parameters
        self.keep = "logits_to_keep" in params
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> tuple:
        kw: dict[str, Any] = {"logits_to_keep": 1} if self.keep else {}
        kw[self.cache_arg] = cache
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = out.past_key_values
        return out.logits[:, -1, :], new_cache


def _decode_batch(
    fwd: _Forward,
    rows: list[list[int]],
    budgets: list[int],
    eos: int | None,
    pad: int,
    prefix: tuple[int, Any] | None,
    device: Any,
) -> list[list[int]]:
    """Greedy new tokens of one batch (``rows``: prompt ids without the shared prefix); a row
    stops at EOS (kept) or at its budget; finished rows leave the batch."""
    n = len(rows)
    plen, pcache = prefix if prefix is not None else (0, None)
    width = max(len(r) for r in rows)
    steps = max(budgets)
    ids = torch.full((n, width), pad, dtype=torch.long)
    # the attention mask holds the shared prefix, the left-padded prompts and every new token
    mask = torch.zeros((n, plen + width + steps), dtype=torch.long)
    mask[:, :plen] = 1
    mask[:, plen + width :] = 1  # new tokens (a finished row's are never read)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, plen + width - len(r) : plen + width] = 1
    # positions count real tokens only (HF's convention for padded batches)
    pos = (mask[:, : plen + width].cumsum(-1) - 1).clamp(min=0)[:, plen:]
    cache = None
    if pcache is not None:
        cache = copy.deepcopy(pcache)
        cache.batch_repeat_interleave(n)
    ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
    logits, cache = fwd(ids, mask[:, : plen + width], pos, cache)
    out: list[list[int]] = [[] for _ in range(n)]
    live = torch.arange(n)  # batch row -> input row
    fin = torch.zeros(n, dtype=torch.bool)  # finished (EOS or budget), per batch row
    last_pos = pos[:, -1]
    budget_t = torch.tensor(budgets)
    for step in range(steps):
        nxt = logits.argmax(-1).cpu()
        for b, (i, f) in enumerate(zip(live.tolist(), fin.tolist())):
            if not f:
                out[i].append(int(nxt[b]))
        fin |= budget_t[live] <= step + 1
        if eos is not None:
            fin |= nxt == eos
        if step + 1 == steps or bool(fin.all()):
            break
        n_done = int(fin.sum())
        if n_done and n_done * _COMPACT_SHARE >= len(live):  # finished rows leave the batch
            keep = (~fin).nonzero().flatten()
            live, nxt, fin = live[keep], nxt[keep], fin[keep]
            kd = keep.to(device)
            cache.batch_select_indices(kd)
            mask, last_pos = mask[kd], last_pos[kd]
        nxt = nxt.masked_fill(fin, pad)  # rows finished but still in the batch: tokens not read
        last_pos = last_pos + 1
        cols = plen + width + step + 1
        logits, cache = fwd(nxt[:, None].to(device), mask[:, :cols], last_pos[:, None], cache)
    return out


def _generate_hf(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    budgets: list[int],
    *,
    token_budget: int,
    max_rows: int | None,
    share_prefix: bool,
    progress: bool,
) -> list[str]:
    add_special = not bool(getattr(tokenizer, "chat_template", None))
    enc = [tokenizer(p, add_special_tokens=add_special)["input_ids"] for p in prompts]
    if any(len(e) == 0 for e in enc):
        bad = next(i for i, e in enumerate(enc) if not e)
        raise ValueError(f"prompt {bad} is empty after tokenization: nothing to continue from")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad = 0 if pad is None else pad
    device = next(model.parameters()).device
    fwd = _Forward(model)
    plen = _common_prefix(enc) if share_prefix and not _has_sliding_window(model) else 0
    prefix = None
    if plen:  # the shared prefix (a chat template's system turn) runs once
        ids = torch.tensor([enc[0][:plen]], device=device)
        _, pcache = fwd(ids, torch.ones_like(ids), torch.arange(plen, device=device)[None], None)
        prefix = (plen, pcache)
    batches = _budget_batches([len(e) for e in enc], budgets, token_budget, max_rows)
    texts: list[str | None] = [None] * len(prompts)
    bar = tqdm(batches, desc="generate", disable=(not progress) or None, leave=False)
    for idx in bar:
        new = _decode_batch(
            fwd,
            [enc[i][plen:] for i in idx],
            [budgets[i] for i in idx],
            tokenizer.eos_token_id,
            pad,
            prefix,
            device,
        )
        for i, t in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
            texts[i] = t
    return [t if t is not None else "" for t in texts]


def _generate_hf_generate(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int, progress: bool
) -> list[str]:
    """``model.generate`` at a fixed batch size, prompts sorted by characters, left padding."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Prompts were formatted with their special tokens already when a chat template is used.
    add_special = not bool(getattr(tokenizer, "chat_template", None))
    try:
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        texts: dict[int, str] = {}
        bar = tqdm(
            range(0, len(order), batch_size), desc="generate", disable=(not progress) or None, leave=False
        )
        for start in bar:
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=add_special
            ).to(model.device)
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, t in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                texts[i] = t
        return [texts[i] for i in range(len(prompts))]
    finally:
        tokenizer.padding_side = side


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int | Sequence[int] = 64,
    batch_size: int | None = None,
    backend: str = "hf",
    token_budget: int | None = None,
    dtype: str | None = None,
    merge: bool = True,
    share_prefix: bool = True,
    progress: bool = True,
) -> list[str]:
    """Greedy continuations of already-formatted ``prompts`` (see ``data.format_prompt``), in
    input order; only the new tokens are decoded (special tokens skipped).

    ``max_new_tokens``: one budget, or one per prompt (``hf`` and ``vllm``). ``batch_size``: at
    most this many rows per batch (``None``: no limit; ``hf-generate``: its fixed batch, 16 if None).
    ``token_budget``: rows x (longest prompt + budget) per batch (default
    :data:`DEFAULT_TOKEN_BUDGET`). ``dtype``: ``float32`` or ``bfloat16`` for the generation copy
    (default: the model's). ``merge``: merge a LoRA adapter into a copy of the weights.
    ``share_prefix``: run the prompts' common token prefix once. ``model`` may be a
    :class:`VLLMTarget` (``backend="vllm"``). The model given is left as it was."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {list(BACKENDS)}")
    _check_dtype(dtype)
    budgets = (
        [int(max_new_tokens)] * len(prompts)
        if isinstance(max_new_tokens, int)
        else [int(b) for b in max_new_tokens]
    )
    if len(budgets) != len(prompts):
        raise ValueError(f"max_new_tokens: {len(budgets)} budgets for {len(prompts)} prompts")
    if any(b < 1 for b in budgets):
        raise ValueError("max_new_tokens: every budget must be >= 1")
    if not prompts:
        return []
    if backend == "vllm" or isinstance(model, VLLMTarget):
        return _generate_vllm(model, tokenizer, prompts, budgets)
    if token_budget is not None and token_budget < 1:
        raise ValueError(f"token_budget={token_budget}: expected a positive number of tokens")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive number of rows")
    was_training = model.training
    model.eval()
    try:
        if backend == "hf-generate":
            if len(set(budgets)) != 1:
                raise ValueError("backend='hf-generate': one max_new_tokens for every prompt")
            gen_model = inference_model(model, dtype, merge=False) if dtype else model
            return _generate_hf_generate(
                gen_model, tokenizer, prompts, budgets[0], batch_size or 16, progress
            )
        gen_model = inference_model(model, dtype, merge=merge)
        return _generate_hf(
            gen_model,
            tokenizer,
            prompts,
            budgets,
            token_budget=token_budget or DEFAULT_TOKEN_BUDGET,
            max_rows=batch_size,
            share_prefix=share_prefix,
            progress=progress,
        )
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- vLLM


@dataclass
class VLLMTarget:
    """What vLLM serves: a model directory (or hub id) and, for a LoRA variant, the adapter
    directory it loads through ``LoRARequest``. ``options``: extra ``vllm.LLM`` arguments (e.g.
    ``{"gpu_memory_utilization": 0.5}``)."""

    model: str
    adapter: str | None = None
    max_lora_rank: int = 16
    tokenizer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    _llm: Any = field(default=None, repr=False, compare=False)

    def llm_kwargs(self) -> dict[str, Any]:
        """The arguments of ``vllm.LLM(...)``."""
        kw: dict[str, Any] = {"model": self.model, "trust_remote_code": False}
        if self.tokenizer:
            kw["tokenizer"] = self.tokenizer
        if self.adapter:
            kw.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1)
        return {**kw, **self.options}

    def lora_request_args(self) -> tuple[str, int, str] | None:
        """``LoRARequest(name, id, path)`` arguments, or None without an adapter."""
        return ("adapter", 1, self.adapter) if self.adapter else None


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise RuntimeError(
            "backend 'vllm' needs vLLM installed (pip install 'dualselect[vllm]'; GPU only)"
        ) from None
    return vllm


def vllm_available() -> tuple[bool, str]:
    """Whether vLLM can be imported here (without importing it), and why not."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False, "backend 'vllm' needs vLLM installed (pip install 'dualselect[vllm]'; GPU only)"
    return True, ""


def vllm_target(
    model: Any,
    tokenizer: Any,
    workdir: str | os.PathLike | None = None,
    *,
    source: dict[str, str | None] | None = None,
    options: dict[str, Any] | None = None,
) -> VLLMTarget:
    """The :class:`VLLMTarget` of an in-memory model. ``source`` (``{"model": dir, "adapter":
    dir}``, from the command line) is used as given. Otherwise a peft model's adapter is saved to
    ``workdir/adapter`` (the weights in memory, not a file that may be older) and served on its
    base (``base_model_name_or_path``); any other model is saved whole to ``workdir/model``
    (its weights may have been trained since they were loaded)."""
    rank = 16
    cfgs = getattr(model, "peft_config", None)
    if isinstance(cfgs, dict) and cfgs:
        rank = max(int(getattr(c, "r", 16) or 16) for c in cfgs.values())
    if source is not None:
        return VLLMTarget(
            str(source["model"]),
            str(source["adapter"]) if source.get("adapter") else None,
            max_lora_rank=_vllm_rank(rank),
            options=dict(options or {}),
        )
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="dualselect-vllm-"))
    work.mkdir(parents=True, exist_ok=True)
    if isinstance(cfgs, dict) and cfgs:
        base = next(iter(cfgs.values())).base_model_name_or_path
        if not base:
            raise ValueError(
                "backend 'vllm': the adapter's base_model_name_or_path is empty; cannot serve it"
            )
        model.save_pretrained(str(work / "adapter"))
        return VLLMTarget(
            str(base),
            str(work / "adapter"),
            max_lora_rank=_vllm_rank(rank),
            tokenizer=_save_tokenizer(tokenizer, work),
            options=dict(options or {}),
        )
    model.save_pretrained(str(work / "model"))
    tokenizer.save_pretrained(str(work / "model"))
    return VLLMTarget(str(work / "model"), options=dict(options or {}))


def _vllm_rank(r: int) -> int:
    """vLLM accepts LoRA ranks 8, 16, 32, 64, 128, 256, ...: the smallest that holds ``r``."""
    for k in (8, 16, 32, 64, 128, 256, 320, 512):
        if r <= k:
            return k
    return r


def _save_tokenizer(tokenizer: Any, work: Path) -> str | None:
    if tokenizer is None:
        return None
    tokenizer.save_pretrained(str(work / "tokenizer"))
    return str(work / "tokenizer")


def _generate_vllm(target: Any, tokenizer: Any, prompts: list[str], budgets: list[int]) -> list[str]:
    if not isinstance(target, VLLMTarget):
        raise TypeError(
            f"backend 'vllm' serves a VLLMTarget (model and adapter directories; see vllm_target), "
            f"not a {type(target).__name__}"
        )
    vllm = _import_vllm()
    if target._llm is None:
        target._llm = vllm.LLM(**target.llm_kwargs())
    lora = target.lora_request_args()
    request = None
    if lora is not None:
        from vllm.lora.request import LoRARequest

        request = LoRARequest(*lora)
    add_special = not bool(getattr(tokenizer, "chat_template", None))
    # token ids, not text: vLLM would add special tokens to an already formatted chat prompt
    inputs = [
        {"prompt_token_ids": tokenizer(p, add_special_tokens=add_special)["input_ids"]} for p in prompts
    ]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else None
    params = [vllm.SamplingParams(temperature=0.0, max_tokens=b, stop_token_ids=eos) for b in budgets]
    res = target._llm.generate(inputs, params, lora_request=request)
    return [r.outputs[0].text for r in res]


# ----------------------------------------------------------------------------- files


def write_generations(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows: method, seed, benchmark, id, prompt, response, category, meta."""
    write_jsonl(path, rows)


def read_generations(path: str | os.PathLike) -> list[dict]:
    return read_jsonl(path)
