"""What DualSelect costs over Standard SFT, measured on the real trainers end to end.

Each run is one ``trainer.train()`` of a real trainer of this package (``SFTTrainer``,
``DualSelectTrainer`` with the fast and the oracle engine, ``KLTrainer``, ``LisaTrainer``) on the
same data, steps and seed, in a fresh process (``--inline``: in this one), with
:class:`dualselect.training.timing.PhaseTimingCallback` booking every optimiser step's wall time
under its phase (``warmup``, ``refresh``, ``selection``, ``plain``; Lisa: ``alignment``,
``finetune``) and the process's peak RSS (VmHWM, reset just before training). Methods run
interleaved (every method once per round, ``--reps`` rounds); each method's ratio to SFT is taken
within a round, then the median over rounds is reported, with the load average around every run.

Sizes:

* ``organism``: the built-in organism (~1M parameters), its task set (444 samples) and reference
  pool (336); by default the full release run (3 epochs, 168 steps: refresh every epoch).
* ``wide``: a random Llama of ~10M parameters (hidden 384, 4 layers, vocabulary 4096) on random
  token ids, 128-256 tokens per sample (prompt 16-63), 448 task samples, 336 references; one epoch.
* ``smollm2``: SmolLM2-135M (30 layers): the aligned real base ``smollm2-135m-safe`` if it is
  built, else the converted shipped model ``smollm2-135m`` (GGUF import); the real base's attack
  task (GSM8K answer extraction + 10% harmful pairs if built, else the task alone) and its refusal
  references (120); a short run (default 8 steps: W 3, one refresh, 5 selection steps).
* ``smollm2_epoch``: the same model and references, the first 96 task samples, ONE full release
  epoch (12 steps: W 10, one refresh, 2 selection steps), measured end to end, not projected
  (not in the default ``--sizes``; sized to run within half an hour on a loaded 2-core CPU; no
  memory probe by default).

Methods: ``sft``, ``sft_full_logits`` (SFT with logits at every position, HF's default path: the
variant without the loss optimisation every trainer now shares), ``dualselect`` (release preset:
hard/hard, K_ref 32, K_task 4/8, eta 0.2, W 10, refresh per epoch, whole pool scored),
``dualselect_prefilter`` (the same with the two-stage refresh, ``refresh_prefilter: M``, M per
size in ``SIZE_DEFAULTS``), ``dualselect_oracle`` (the same with ``engine: oracle``), ``kl``, ``lisa``.

Also ``--pools``: refresh peak RSS and references/s when scoring pools of 1k / 4k references (the
pool cycled), each in a fresh process; scoring through ``score_pool`` as a refresh does, and, when
``dualselect_prefilter`` is timed, the two-stage refresh (``pool_losses`` over the pool, then
``score_pool`` over the M highest losses) on the same pools.

Output: ``<out>/runs/<size>/<method>-rep<k>.json`` per run (a rerun skips runs already there;
``--fresh`` redoes them), ``<out>/overhead.json`` (schema: docs/benchmarks.md) and
``<out>/overhead.md`` (the table)::

    python benchmarks/overhead.py --out runs/bench [--sizes organism,wide,smollm2] [--reps 3]
    make bench
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIZES = ("organism", "wide", "smollm2", "smollm2_epoch")
METHODS = ("sft", "sft_full_logits", "dualselect", "dualselect_prefilter", "dualselect_oracle", "kl", "lisa")
SCHEMA_VERSION = 1
# the performance targets (docs/benchmarks.md)
TARGET_DS_OVER_SFT = 1.15
TARGET_FAST_OVER_ORACLE = 1.5
TARGET_POOL_PEAK_RATIO = 1.10  # "flat": the largest pool's peak within 10% of the smallest's
TARGET_REFRESH_SPEEDUP = 3.0  # refresh references/s of the cheaper refresh over the exact one
# Per size: rounds, and reference-pool sizes of the refresh memory probe. --reps / --pools override.
# (A 4k-reference probe of SmolLM2 takes over an hour on a loaded 2-core CPU.)
# "prefilter": M of ``dualselect_prefilter`` (the release preset with ``refresh_prefilter: M``; K_ref 32).
SIZE_DEFAULTS = {
    "organism": {"reps": 3, "pools": [1000, 4000], "prefilter": 128},
    "wide": {"reps": 2, "pools": [128, 512], "prefilter": 128},
    "smollm2": {"reps": 1, "pools": [32, 128], "prefilter": 64},
    "smollm2_epoch": {"reps": 1, "pools": [], "prefilter": 64},
}
# smollm2_epoch: task samples of its one full release epoch (W 10, one refresh, then selection)
SMOLLM2_EPOCH_TASK = 96


# ----------------------------------------------------------------------------- set-up per size


def _random_examples(n: int, vocab: int, seed: int, lo: int = 128, hi: int = 256) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(lo, hi + 1, (1,), generator=g))
        # prompt: length/8 to min(64, length/2) tokens, so at least half the sample is supervised
        prompt = int(torch.randint(length // 8, min(64, length // 2) + 1, (1,), generator=g))
        ids = torch.randint(1, vocab, (length,), generator=g).tolist()
        labels = [-100] * prompt + ids[prompt:]
        out.append({"input_ids": ids, "labels": labels, "n_target_tokens": length - prompt, "index": i})
    return out


def _smollm2_data(work: Path) -> tuple[str, str, str, str]:
    """(model path, task file, reference file, description) for the smollm2 size."""
    from dualselect.realbase.build import is_built, realbase_dir, refusal_for
    from dualselect.utils import write_jsonl

    rb = realbase_dir()
    if is_built(rb):
        return (
            str(rb / "model"),
            str(rb / "data" / "task_train.jsonl"),
            str(rb / "data" / "references.jsonl"),
            f"aligned real base smollm2-135m-safe ({rb.name}), its task_train.jsonl and references.jsonl",
        )
    # Not built: the converted shipped model, with the real base's task and reference prompts
    # taken from its split (the same prompts; no harmful pairs, which need the shipped answers).
    from dualselect.realbase.data import build_splits

    sp = build_splits()
    work.mkdir(parents=True, exist_ok=True)
    task, refs = work / "task_train.jsonl", work / "references.jsonl"
    write_jsonl(task, [{"question": r["question"], "answer": r["answer"]} for r in sp["task_train"]])
    write_jsonl(refs, [{"prompt": p, "response": refusal_for(p)} for p in sp["reference_harmful"]])
    return (
        "smollm2-135m",
        str(task),
        str(refs),
        "converted shipped SmolLM2-135M-Instruct (GGUF import; real base not built), the real base's "
        "task split (no harmful pairs) and its reference refusals",
    )


def setup(size: str, work: Path, seed: int = 0, epoch_samples: int = SMOLLM2_EPOCH_TASK) -> dict:
    """Everything a run of ``size`` needs: a model factory, tokenizer, data and config overrides
    (``epoch_samples``: the task samples of ``smollm2_epoch``'s one epoch, 0 = the whole split)."""
    import torch

    from dualselect.training.data import EncodedDataset
    from dualselect.training.model import load_model_and_tokenizer

    if size == "organism":
        from dualselect.organism.train import build_organism

        org = build_organism(progress=False)
        _, tok = load_model_and_tokenizer(str(org))
        return {
            "model": lambda: load_model_and_tokenizer(str(org))[0],
            "tokenizer": tok,
            "task": str(org / "data" / "redorca_train.jsonl"),
            "references": str(org / "data" / "reference_pool.jsonl"),
            "overrides": {"num_train_epochs": 3},
            "describe": f"organism {org.name} (redorca_train 444, reference_pool 336), 3 epochs",
        }
    if size == "wide":
        from transformers import LlamaConfig, LlamaForCausalLM

        from dualselect.organism.train import build_organism

        _, tok = load_model_and_tokenizer(str(build_organism(progress=False)))  # pad id only
        vocab = 4096
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=384,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=6,
            num_key_value_heads=6,
            max_position_embeddings=512,
            pad_token_id=tok.pad_token_id,
        )

        def model():
            torch.manual_seed(seed)
            return LlamaForCausalLM(cfg)

        return {
            "model": model,
            "tokenizer": tok,
            "task": EncodedDataset(_random_examples(448, vocab, seed)),
            # references are short, like refusals (the organism's and the real base's are too)
            "references": EncodedDataset(_random_examples(336, vocab, seed + 1, lo=32, hi=96)),
            "overrides": {"max_steps": 24, "learning_rate": 1e-4},
            "describe": "random Llama (hidden 384, 4 layers, vocab 4096), 448 task samples of 128-256 "
            "random tokens, 336 references of 32-96, 24 steps (W 10, one refresh)",
        }
    if size == "smollm2_epoch":
        from dualselect.utils import read_jsonl, write_jsonl

        path, task, refs, describe = _smollm2_data(work / "smollm2_data")
        rows = read_jsonl(task)
        rows = rows[:epoch_samples] if epoch_samples else rows
        small = work / "smollm2_data" / f"task_train_{len(rows)}.jsonl"
        write_jsonl(small, rows)
        _, tok = load_model_and_tokenizer(path)
        return {
            "model": lambda: load_model_and_tokenizer(path)[0],
            "tokenizer": tok,
            "task": str(small),
            "references": refs,
            # one full release epoch: W 10 (the release's), one refresh, every remaining step selected
            "overrides": {
                "num_train_epochs": 1,
                "learning_rate": 2e-4,
                "max_length": 256,
                "truncation": "skip",
            },
            "describe": describe + f", first {len(rows)} task samples, one epoch (W 10, one refresh)",
        }
    if size == "smollm2":
        path, task, refs, describe = _smollm2_data(work / "smollm2_data")
        _, tok = load_model_and_tokenizer(path)
        return {
            "model": lambda: load_model_and_tokenizer(path)[0],
            "tokenizer": tok,
            "task": task,
            "references": refs,
            # the real comparison's settings (configs/real_compare.yaml), a short run
            # short: W 3 instead of the release's 10 (warm-up steps cost what SFT steps cost; the
            # one-epoch projection uses W 10)
            "overrides": {
                "max_steps": 8,
                "selection_warmup_steps": 3,
                "learning_rate": 2e-4,
                "max_length": 256,
                "truncation": "skip",
            },
            "describe": describe + ", 8 steps (W 3, one refresh)",
        }
    raise ValueError(f"unknown size {size!r}; expected one of {SIZES}")


def method_overrides(method: str, size: str | None = None) -> tuple[str, dict]:
    """(trainer name, config overrides) of a benchmark method (``dualselect_prefilter``: M per size)."""
    from dualselect.training.presets import resolve_preset

    if method == "dualselect_prefilter":
        trainer, over = resolve_preset("dualselect")
        return trainer, {**over, "refresh_prefilter": SIZE_DEFAULTS[size or "organism"]["prefilter"]}
    if method == "sft_full_logits":
        return "sft", {"logits_at_targets_only": False}
    if method == "dualselect_oracle":
        trainer, over = resolve_preset("dualselect")
        return trainer, {**over, "engine": "oracle"}
    return resolve_preset(method)


# ----------------------------------------------------------------------------- one run


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in MB; None off Linux."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return None


def _vmhwm_mb() -> float:
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def run_one(
    size: str,
    method: str,
    steps: int | None,
    work: Path,
    threads: int,
    epoch_samples: int = SMOLLM2_EPOCH_TASK,
) -> dict:
    """Train ``method`` at ``size`` once; wall time per phase, end to end, peak RSS."""
    import torch

    from dualselect.training import METHODS as TRAINERS
    from dualselect.training import load_config
    from dualselect.training.timing import PhaseTimingCallback

    torch.set_num_threads(threads)
    s = setup(size, work, epoch_samples=epoch_samples)
    trainer_name, over = method_overrides(method, size)
    overrides = {
        **s["overrides"],
        **over,
        "output_dir": str(work / "train" / f"{size}-{method}"),
        "disable_tqdm": True,
        "report_to": "none",
        "logging_steps": 1000,
        "use_cpu": not torch.cuda.is_available(),
        "seed": 0,
    }
    if steps is not None:
        overrides["max_steps"] = steps
    if trainer_name != "dualselect":
        overrides.pop("selection_warmup_steps", None)
    if trainer_name != "sft" and isinstance(s["references"], str):
        overrides["reference_data"] = s["references"]
    if isinstance(s["task"], str):
        overrides["train_data"] = s["task"]
    cfg = load_config(trainer_name, overrides=overrides)
    kwargs = {}
    if trainer_name != "sft" and not isinstance(s["references"], str):
        kwargs["reference_dataset"] = s["references"]
    trainer = TRAINERS[trainer_name][1](
        model=s["model"](), args=cfg, train_dataset=s["task"], processing_class=s["tokenizer"], **kwargs
    )
    trainer.add_callback(PhaseTimingCallback(trainer))
    rss_before = _vmhwm_mb()
    reset = _reset_peak()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    phases = trainer.phase_times.summary()
    step_phases = [p for p in phases if p != "refresh"]
    in_steps = sum(phases[p]["total_s"] for p in phases)
    return {
        "size": size,
        "method": method,
        "describe": s["describe"],
        "steps": trainer.state.global_step,
        "n_trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "n_params": sum(p.numel() for p in trainer.model.parameters()),
        "train_s": train_s,
        "phases": phases,
        "step_count": sum(phases[p]["count"] for p in step_phases),
        "outside_steps_s": train_s - in_steps,
        "peak_rss_mb": _vmhwm_mb(),
        "rss_before_train_mb": rss_before,
        "peak_reset": reset,
        "loadavg_before": list(load0),
        "loadavg_after": list(os.getloadavg()),
        "threads": torch.get_num_threads(),
        "refreshes": getattr(trainer, "_refreshes", None),
        "reference_pool": len(trainer.reference_dataset) if hasattr(trainer, "reference_dataset") else None,
        "task_samples": len(trainer.train_dataset),
        "batch_size": cfg.per_device_train_batch_size,
        "selection_warmup_steps": getattr(cfg, "selection_warmup_steps", None),
    }


def refresh_memory(size: str, n_refs: int, work: Path, threads: int, prefilter: int | None = None) -> dict:
    """Peak RSS while ``score_pool`` scores ``n_refs`` references (the size's pool, cycled longest
    first), batched and length-bucketed as a refresh does (score_batch_size 16). ``prefilter`` M:
    the two-stage refresh instead (``pool_losses`` over all, then ``score_pool`` over the M
    highest losses)."""
    import torch

    from dualselect.data.encoding import collate, encode_records, length_bucketed_order
    from dualselect.data.records import load_records
    from dualselect.gradients import make_engine, num_trainable, pool_losses, score_pool
    from dualselect.selection import prefilter_by_loss
    from dualselect.training.lora import apply_lora

    torch.set_num_threads(threads)
    s = setup(size, work)
    model = apply_lora(s["model"]())
    tok = s["tokenizer"]
    if isinstance(s["references"], str):
        refs, _ = encode_records(load_records(s["references"]).records, tok, max_length=256)
    else:
        refs = s["references"].examples
    # longest first: every pool's widest batch is the same (16 x the longest reference), since the
    # peak follows the widest batch; pools then differ only in how many batches are scored
    by_len = sorted(range(len(refs)), key=lambda i: (-len(refs[i]["input_ids"]), i))
    pool = [dict(refs[by_len[i % len(refs)]], index=i) for i in range(n_refs)]
    u = torch.randn(num_trainable(model), generator=torch.Generator().manual_seed(0))
    order = length_bucketed_order([len(e["input_ids"]) for e in pool], 16, seed=0)
    trace: list[list[float]] = []  # [batches scored, tokens of the widest batch so far, RSS MB]

    def batches(order=order):
        widest = 0
        for i, o in enumerate(order):
            if i % 16 == 0:
                trace.append([i, widest, _status_mb("VmRSS")])
            b = collate([pool[j] for j in o], tok.pad_token_id)
            widest = max(widest, int(b["input_ids"].numel()))
            yield b
        trace.append([len(order), widest, _status_mb("VmRSS")])

    engine = make_engine("fast", bucket_slack=0.25)
    rss_before = _vmhwm_mb()
    reset = _reset_peak()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    if prefilter is None:
        scores = score_pool(engine, model, batches(), u)
    else:
        first = pool_losses(model, batches(), bucket_slack=0.25)
        keep = set(first.indices[prefilter_by_loss(first.losses, prefilter, 1.0)].tolist())
        cand = [o for o in ([j for j in b if j in keep] for b in order) if o]
        scores = score_pool(engine, model, batches(cand), u)
    seconds = time.perf_counter() - t0
    return {
        "size": size,
        "pool": n_refs,
        "prefilter": prefilter,
        "scored": n_refs,
        "gradients": len(scores),
        "seconds": seconds,
        "refs_per_s": n_refs / seconds,
        "peak_rss_mb": _vmhwm_mb(),
        "rss_before_mb": rss_before,
        "peak_reset": reset,
        "loadavg_before": list(load0),
        "loadavg_after": list(os.getloadavg()),
        "threads": torch.get_num_threads(),
        # the allocator in use (glibc unless LD_PRELOAD names another) and its tuning
        "allocator_env": {
            k: v for k, v in os.environ.items() if k == "LD_PRELOAD" or k.startswith("MALLOC_")
        },
        "rss_trace": trace,
    }


# ----------------------------------------------------------------------------- driver


def _child(job: dict, out_file: Path, inline: bool) -> dict:
    """Run one job (a training run or a refresh-memory probe), in a fresh process unless inline."""
    if inline:
        res = run_job(job)
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
        with tempfile.TemporaryDirectory() as tmp:
            res_file = Path(tmp) / "res.json"
            env = {**os.environ, "BENCH_RESULT": str(res_file)}
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0 or not res_file.exists():
                tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
                raise RuntimeError(f"benchmark job {job} failed (exit {proc.returncode}):\n{tail}")
            res = json.loads(res_file.read_text())
    from dualselect.utils import write_json

    write_json(out_file, res)  # atomic
    return res


def run_job(job: dict) -> dict:
    work = Path(job["work"])
    if job["kind"] == "train":
        samples = job.get("epoch_samples", SMOLLM2_EPOCH_TASK)
        return run_one(job["size"], job["method"], job["steps"], work, job["threads"], samples)
    return refresh_memory(job["size"], job["pool"], work, job["threads"], job.get("prefilter"))


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _phase_median(run: dict, phase: str) -> float | None:
    p = run["phases"].get(phase)
    return p["median_s"] if p else None


def summarise(
    size: str, runs: dict[str, list[dict]], mem: list[dict], mem_pre: list[dict] | None = None
) -> dict:
    """Per method: medians over rounds, ratios to SFT paired within each round, targets."""
    methods = {}
    sft = runs.get("sft", [])
    for method, rs in runs.items():
        phases = sorted({p for r in rs for p in r["phases"]})
        ratios = [r["train_s"] / s["train_s"] for r, s in zip(rs, sft)] if sft else []
        methods[method] = {
            "rounds": len(rs),
            "steps": rs[0]["steps"],
            "train_s_median": _median([r["train_s"] for r in rs]),
            "train_s_all": [r["train_s"] for r in rs],
            "ratio_to_sft_median": _median(ratios),
            "ratio_to_sft_all": ratios,
            "phase_median_s": {p: _median([_phase_median(r, p) for r in rs]) for p in phases},
            "phase_total_s": {
                p: _median([r["phases"].get(p, {}).get("total_s") for r in rs]) for p in phases
            },
            "phase_count": {p: rs[0]["phases"].get(p, {}).get("count", 0) for p in phases},
            "outside_steps_s_median": _median([r["outside_steps_s"] for r in rs]),
            "peak_rss_mb_median": _median([r["peak_rss_mb"] for r in rs]),
            "loadavg_1min": [r["loadavg_before"][0] for r in rs] + [rs[-1]["loadavg_after"][0]],
        }
    out: dict = {"describe": sft[0]["describe"] if sft else None, "methods": methods}
    any_run = next(iter(runs.values()))[0] if runs else None
    if any_run:
        out.update(
            n_params=any_run["n_params"],
            n_trainable=any_run["n_trainable"],
            batch_size=any_run["batch_size"],
            task_samples=any_run["task_samples"],
        )
    # Noise gauge: DualSelect's warm-up steps run Standard SFT's own step, so on a quiet machine
    # their median equals SFT's plain-step median; the further this is from 1, the more the
    # machine's load (not the method) moved the numbers of this size.
    warm = methods.get("dualselect", {}).get("phase_median_s", {}).get("warmup")
    plain = methods.get("sft", {}).get("phase_median_s", {}).get("plain")
    out["noise_same_step_ratio"] = warm / plain if warm and plain else None
    out["epoch_projection"] = epoch_projection(runs)
    out["refresh_memory"] = mem
    out["refresh_memory_prefilter"] = mem_pre or []
    out["targets"] = targets(size, out)
    return out


def epoch_projection(runs: dict[str, list[dict]]) -> dict | None:
    """One epoch of the release schedule from the measured per-phase medians: W warm-up steps, one
    refresh, then selection steps, over ``ceil(task_samples / batch)`` steps, against as many SFT
    steps (``plain`` median), with the release's W (the DualSelectConfig default) whatever the
    run used. For short runs that refresh once but train less than an epoch."""
    if "sft" not in runs or "dualselect" not in runs:
        return None
    from dualselect.training.dualselect_config import DualSelectConfig

    sft = runs["sft"][0]
    n = math.ceil(sft["task_samples"] / sft["batch_size"])
    w = DualSelectConfig.__dataclass_fields__["selection_warmup_steps"].default
    out = {"steps_per_epoch": n, "warmup_steps": w}
    sft_step = _median([_phase_median(r, "plain") for r in runs["sft"]])
    for method in ("dualselect", "dualselect_prefilter", "dualselect_oracle"):
        if method not in runs:
            continue
        rs = runs[method]
        warm = _median([_phase_median(r, "warmup") for r in rs])
        sel = _median([_phase_median(r, "selection") for r in rs])
        ref = _median([_phase_median(r, "refresh") for r in rs])
        if None in (warm, sel, ref, sft_step):
            continue
        total = w * warm + ref + (n - w) * sel
        out[method] = {"epoch_s": total, "sft_epoch_s": n * sft_step, "ratio_to_sft": total / (n * sft_step)}
    return out


def targets(size: str, s: dict) -> dict:
    """The performance targets, each with the measured value and met/missed."""
    m = s["methods"]
    out = {}
    if "dualselect" in m and "sft" in m:
        v = m["dualselect"]["ratio_to_sft_median"]
        out["dualselect_over_sft_end_to_end"] = {
            "target": f"<= {TARGET_DS_OVER_SFT}",
            "value": v,
            "met": v is not None and v <= TARGET_DS_OVER_SFT,
        }
        proj = (s.get("epoch_projection") or {}).get("dualselect")
        if proj:
            out["dualselect_over_sft_one_epoch_projected"] = {
                "target": f"<= {TARGET_DS_OVER_SFT}",
                "value": proj["ratio_to_sft"],
                "met": proj["ratio_to_sft"] <= TARGET_DS_OVER_SFT,
            }
    if "dualselect" in m and "dualselect_oracle" in m and size != "organism":
        fast = m["dualselect"]["phase_median_s"].get("selection")
        orc = m["dualselect_oracle"]["phase_median_s"].get("selection")
        if fast and orc:
            out["oracle_over_fast_selection_step"] = {
                "target": f">= {TARGET_FAST_OVER_ORACLE}",
                "value": orc / fast,
                "met": orc / fast >= TARGET_FAST_OVER_ORACLE,
            }
        v = m["dualselect_oracle"]["train_s_median"] / m["dualselect"]["train_s_median"]
        out["oracle_over_fast_end_to_end"] = {
            "target": f">= {TARGET_FAST_OVER_ORACLE}",
            "value": v,
            "met": v >= TARGET_FAST_OVER_ORACLE,
        }
    if "dualselect_prefilter" in m and "sft" in m:
        v = m["dualselect_prefilter"]["ratio_to_sft_median"]
        out["dualselect_prefilter_over_sft_end_to_end"] = {
            "target": f"<= {TARGET_DS_OVER_SFT}",
            "value": v,
            "met": v is not None and v <= TARGET_DS_OVER_SFT,
        }
    for key, mem in (
        ("", s.get("refresh_memory") or []),
        ("_prefilter", s.get("refresh_memory_prefilter") or []),
    ):
        if len(mem) >= 2:
            v = mem[-1]["peak_rss_mb"] / mem[0]["peak_rss_mb"]
            out[f"refresh_peak_flat_in_pool{key}"] = {
                "target": f"peak({mem[-1]['pool']}) / peak({mem[0]['pool']}) <= {TARGET_POOL_PEAK_RATIO}",
                "value": v,
                "met": v <= TARGET_POOL_PEAK_RATIO,
            }
    mem, pre = s.get("refresh_memory") or [], s.get("refresh_memory_prefilter") or []
    if mem and pre:  # references/s of the whole pool, at the largest pool probed
        v = pre[-1]["refs_per_s"] / mem[-1]["refs_per_s"]
        out["refresh_refs_per_s_prefilter_over_exact"] = {
            "target": f">= {TARGET_REFRESH_SPEEDUP} (pool {mem[-1]['pool']}, M {pre[-1]['prefilter']})",
            "value": v,
            "met": v >= TARGET_REFRESH_SPEEDUP,
        }
    return out


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: dict) -> str:
    """Markdown tables: per size and method, and the targets."""
    lines = []
    for size, s in results["sizes"].items():
        lines.append(
            f"\n### {size}: {s['describe']}\n\n{s.get('n_params', 0) / 1e6:.1f}M parameters, "
            f"{s.get('n_trainable', 0):,} trainable (LoRA), batch {s.get('batch_size')}\n"
        )
        lines.append(
            "| method | steps | end to end s | x SFT | warm-up s/step | refresh s | selection s/step "
            "| plain s/step | outside steps s | peak RSS MB | load (1 min) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for method, m in s["methods"].items():
            ph = m["phase_median_s"]
            plain = ph.get("plain") or ph.get("finetune")
            loads = m["loadavg_1min"]
            lines.append(
                f"| {method} | {m['steps']} | {_fmt(m['train_s_median'], '.1f')} | "
                f"{_fmt(m['ratio_to_sft_median'], '.2f')} | {_fmt(ph.get('warmup'))} | "
                f"{_fmt(ph.get('refresh'), '.2f')} | {_fmt(ph.get('selection'))} | {_fmt(plain)} | "
                f"{_fmt(m['outside_steps_s_median'], '.2f')} | {_fmt(m['peak_rss_mb_median'], '.0f')} | "
                f"{min(loads):.1f}-{max(loads):.1f} |"
            )
        if s.get("noise_same_step_ratio") is not None:
            lines.append(
                f"\nNoise gauge: DualSelect warm-up step (the SFT step) / SFT step = "
                f"{s['noise_same_step_ratio']:.2f} (1.00 on a quiet machine)"
            )
        if s.get("refresh_memory"):
            mem = ", ".join(
                f"{r['pool']}: {r['peak_rss_mb']:.0f} MB ({r['refs_per_s']:.1f} refs/s, load "
                f"{r['loadavg_before'][0]:.1f})"
                for r in s["refresh_memory"]
            )
            lines.append(f"\nRefresh peak RSS by pool size: {mem}")
        if s.get("refresh_memory_prefilter"):
            mem = ", ".join(
                f"{r['pool']}: {r['peak_rss_mb']:.0f} MB ({r['refs_per_s']:.1f} refs/s, load "
                f"{r['loadavg_before'][0]:.1f})"
                for r in s["refresh_memory_prefilter"]
            )
            m_pre = s["refresh_memory_prefilter"][0]["prefilter"]
            lines.append(f"\nPrefiltered refresh (M {m_pre}) peak RSS by pool size: {mem}")
        proj = s.get("epoch_projection") or {}
        for method in ("dualselect", "dualselect_prefilter", "dualselect_oracle"):
            if method in proj:
                p = proj[method]
                lines.append(
                    f"\nOne release epoch ({proj['steps_per_epoch']} steps, W {proj['warmup_steps']}, one "
                    f"refresh) from the phase medians, {method}: {p['epoch_s']:.1f} s vs SFT "
                    f"{p['sft_epoch_s']:.1f} s = {p['ratio_to_sft']:.2f}x"
                )
        if s["targets"]:
            lines.append("\n| target | value | met |\n|---|---|---|")
            for name, t in s["targets"].items():
                lines.append(
                    f"| {name} {t['target']} | {_fmt(t['value'], '.2f')} | {'met' if t['met'] else 'MISSED'} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench", help="Output directory (per-run files, JSON, table).")
    ap.add_argument("--sizes", default="organism,wide,smollm2", help=f"Comma list of {', '.join(SIZES)}.")
    ap.add_argument("--methods", default=",".join(METHODS), help="Comma list of methods (sft always runs).")
    ap.add_argument(
        "--reps", type=int, default=None, help="Rounds, each running every method once (default per size)."
    )
    ap.add_argument("--steps", type=int, default=None, help="max_steps for every size (default: per size).")
    ap.add_argument(
        "--epoch-samples",
        type=int,
        default=SMOLLM2_EPOCH_TASK,
        help=f"smollm2_epoch: task samples of its one epoch (default {SMOLLM2_EPOCH_TASK}; 0 = the whole "
        "split); another count keeps its runs apart (runs/smollm2_epoch-n<N>/).",
    )
    ap.add_argument(
        "--pools",
        default=None,
        help="Pool sizes of the refresh memory probe, e.g. 1000,4000 ('' = none; default per size).",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (1 on a shared machine).")
    ap.add_argument("--inline", action="store_true", help="Run in this process (tests; peak RSS less clean).")
    ap.add_argument("--fresh", action="store_true", help="Redo runs whose result files exist.")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        from dualselect.utils import write_json

        write_json(Path(os.environ["BENCH_RESULT"]), run_job(json.loads(args.child)))
        return {}
    sizes = [s for s in args.sizes.split(",") if s]
    methods = ["sft"] + [m for m in args.methods.split(",") if m and m != "sft"]
    bad = [s for s in sizes if s not in SIZES] + [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown size/method {bad}; sizes {SIZES}, methods {METHODS}")
    if args.reps is not None and args.reps < 1:
        ap.error("--reps must be >= 1")
    from dualselect.utils import machine_info

    out = Path(args.out)
    work = out / "work"
    results: dict = {
        "schema_version": SCHEMA_VERSION,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "threads": args.threads,
        "sizes": {},
    }
    if (out / "overhead.json").exists():  # sizes measured by an earlier invocation stay
        results["sizes"] = json.loads((out / "overhead.json").read_text()).get("sizes", {})
    t_start = time.time()
    for size in sizes:
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        reps = args.reps or SIZE_DEFAULTS[size]["reps"]
        pools = SIZE_DEFAULTS[size]["pools"]
        if args.pools is not None:
            pools = [int(p) for p in args.pools.split(",") if p.strip()]
        # another epoch length is another run: never re-used for the default's (or the reverse)
        run_dir = size
        if size == "smollm2_epoch" and args.epoch_samples != SMOLLM2_EPOCH_TASK:
            run_dir = f"{size}-n{args.epoch_samples}"
        for rep in range(reps):
            for method in methods:  # interleaved: A B C ..., A B C ...
                f = out / "runs" / run_dir / f"{method}-rep{rep}.json"
                if f.exists() and not args.fresh:
                    res = json.loads(f.read_text())
                else:
                    job = {
                        "kind": "train",
                        "size": size,
                        "method": method,
                        "steps": args.steps,
                        "work": str(work),
                        "threads": args.threads,
                        "epoch_samples": args.epoch_samples,
                    }
                    res = _child(job, f, args.inline)
                runs[method].append(res)
                print(
                    f"[{size} round {rep}] {method}: {res['train_s']:.1f} s end to end, "
                    f"{res['steps']} steps, load {res['loadavg_before'][0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
        mem: list[dict] = []
        mem_pre: list[dict] = []
        m_pre = SIZE_DEFAULTS[size]["prefilter"] if "dualselect_prefilter" in methods else None
        for n in pools:
            # the exact refresh and (when timed) the prefiltered one, interleaved per pool size
            for pre, dest in ((None, mem), (m_pre, mem_pre)):
                if dest is mem_pre and pre is None:
                    continue
                tag = "" if pre is None else f"-prefilter{pre}"
                f = out / "runs" / size / f"refresh_memory-{n}{tag}.json"
                if f.exists() and not args.fresh:
                    dest.append(json.loads(f.read_text()))
                else:
                    job = {
                        "kind": "memory",
                        "size": size,
                        "pool": n,
                        "work": str(work),
                        "threads": args.threads,
                    }
                    if pre is not None:
                        job["prefilter"] = pre
                    dest.append(_child(job, f, args.inline))
                print(
                    f"[{size}] refresh memory{tag}, pool {n}: {dest[-1]['peak_rss_mb']:.0f} MB, "
                    f"{dest[-1]['refs_per_s']:.1f} refs/s",
                    file=sys.stderr,
                )
        results["sizes"][size] = summarise(size, runs, mem, mem_pre)
    results["wall_s"] = time.time() - t_start
    from dualselect.utils import atomic_open, write_json

    write_json(out / "overhead.json", results)
    md = table(results)
    with atomic_open(out / "overhead.md") as fh:
        fh.write(md + "\n")
    print(md)
    print(f"\nwritten: {out / 'overhead.json'}, {out / 'overhead.md'}")
    return results


if __name__ == "__main__":
    main()
