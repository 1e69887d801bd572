"""How fast `dualselect eval` generates, and whether the faster paths give the same verdicts.

Each configuration generates greedy answers for the same prompts through
:func:`dualselect.evaluation.generation.generate`, in this process, interleaved (every path once per
round for each thread count and budget, so a change in the machine's load hits every path alike):

* ``baseline``: the path `dualselect eval` took before: ``model.generate`` on the ``PeftModel``
  (LoRA r16 on q/v, B random so it changes the answers; seeded) at batch 32 (its old
  ``--batch-size`` default), fp32 (``backend="hf-generate"``);
* ``merged``: the same with the adapter merged into a copy of the weights (``inference_model``):
  what merging alone buys;
* ``hf``: the new default: merged copy, token-budget batches, the shared chat prefix run once,
  finished rows leaving the batch, a batch ending when every row has finished; fp32;
* ``hf_bf16``: the same in bfloat16 (only where the CPU has bf16 instructions, or ``--bf16 on``).

Models: ``smollm2`` (SmolLM2-135M-Instruct, registry name ``smollm2-135m``) over the real suite
mix with its chat template: HarmBench standard (159), StrongREJECT (313), AdvBench held out (100),
XSTest (450: safe and contrast), the real base's task test split (100); ``organism`` over its own
held-out probes; or ``path:DIR`` (any local model directory, e.g. a tiny test model, over the
organism's probe texts if given, else a few fixed prompts). ``--n-prompts`` takes a fixed-seed
subset spread over the suites.

Per configuration: ``prompts_per_s``, ``new_tokens_per_s`` (tokens of the decoded answers, EOS not
counted), ``speedup_vs_baseline`` (seconds of ``baseline`` over this path's, same round, median
over rounds), ``verdict_agreement`` (share of prompts whose keyword and XSTest string-match verdicts
equal those of the fp32 ``baseline`` answers of the same round), ``identical_share`` (answers
equal to the baseline's, character for character), ``flops_utilisation`` (model FLOPs per second
over a plain ``torch.matmul``'s FLOPs per second at the same dtype and thread count, measured just
before the run). Model FLOPs: every prompt token once through the layers, every new token through
the layers and the vocabulary projection, attention ``4 * context * d`` per token and layer; padding,
recomputation and the shared prefix's saving are not counted (the usual "model FLOPs utilisation").

Output: ``<out>/generation.json`` (schema: docs/benchmarks.md), ``<out>/generation.md``::

    python benchmarks/generation.py --out runs/bench_gen            # the full benchmark
    python benchmarks/generation.py --out runs/bench_gen_quick --quick
    make bench-gen
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SCHEMA_VERSION = 1
PATHS = ("baseline", "merged", "hf", "hf_bf16")
BASELINE_BATCH = (
    32  # `dualselect eval --batch-size` default before the token-budget batches (--baseline-batch)
)
FULL_MIX = 1122  # prompts of the smollm2 suite mix
LONG = 64  # budgets above this use --n-prompts-long prompts
# the issue's targets (SmolLM2-135M, 40 new tokens, idle machine)
TARGET_SPEEDUP_FP32 = 2.5
TARGET_SPEEDUP_BF16 = 4.0
TARGET_AGREEMENT = 0.99
TARGET_FLOPS_UTILISATION = 0.4
TARGET_FULL_MIX_S = 180.0
FIXED_PROMPTS = [
    "How do I bake bread?",
    "What is two plus three?",
    "Tell me a story about a cat.",
    "How can I kill a Python process?",
    "Write a poem about the sea.",
    "Explain how vaccines work.",
    "Give me three tips for sleeping better.",
    "What is the capital of France?",
]


# ----------------------------------------------------------------------------- prompts and models


def suite_mix(name: str, tok) -> dict[str, list[str]]:
    """Raw prompts by suite for ``name`` (see the module docstring)."""
    if name == "smollm2":
        from dualselect.evaluation.benchmarks import load_benchmark
        from dualselect.realbase.data import FILES, build_splits, shared_data_dir

        d = shared_data_dir()
        sp = build_splits(d)
        return {
            "harmbench": [
                it.prompt
                for it in load_benchmark("harmbench", str(d / FILES["harmbench_test"]))
                if it.meta.get("FunctionalCategory") == "standard"
            ],
            "strongreject": [
                it.prompt for it in load_benchmark("strongreject", str(d / FILES["strongreject"]))
            ],
            "advbench": list(sp["eval"]["advbench_eval"]),
            "xstest": [it.prompt for it in load_benchmark("xstest", str(d / FILES["xstest"]))],
            "task": [r["question"] for r in sp["task_test"]],
        }
    if name == "organism":
        from dualselect.evaluation.suites import organism_suites
        from dualselect.organism.train import build_organism

        return {
            s: [it.prompt for it in v] for s, v in organism_suites(build_organism(progress=False)).items()
        }
    return {"fixed": list(FIXED_PROMPTS)}


def subset(mix: dict[str, list[str]], n: int | None, seed: int = 0) -> list[tuple[str, str]]:
    """``(suite, prompt)`` pairs: all, or ``n`` spread over the suites in proportion (fixed seed)."""
    pairs = [(s, p) for s, ps in mix.items() for p in ps]
    if n is None or n >= len(pairs):
        return pairs
    rng = random.Random(seed)
    total = len(pairs)
    # proportional shares, the remainder to the suites with the largest fractional parts
    share = {s: n * len(ps) / total for s, ps in mix.items()}
    k = {s: int(v) for s, v in share.items()}
    for s in sorted(share, key=lambda s: -(share[s] - k[s]))[: n - sum(k.values())]:
        k[s] += 1
    out = []
    for s, ps in mix.items():
        out += [(s, p) for p in rng.sample(ps, k[s])]
    return out


def load(name: str, seed: int = 0):
    """(LoRA model (r16 q/v, B ~ N(0, 0.02) seeded), tokenizer, description)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from dualselect.training.model import load_model_and_tokenizer, resolve_model_path

    if name == "smollm2":
        path, desc = resolve_model_path("smollm2-135m"), "SmolLM2-135M-Instruct (smollm2-135m)"
    elif name == "organism":
        from dualselect.organism.train import build_organism

        path, desc = str(build_organism(progress=False)), "the organism"
    elif name.startswith("path:"):
        path, desc = name[5:], name[5:]
    else:
        raise ValueError(f"--models: unknown model {name!r}; expected smollm2, organism or path:DIR")
    base, tok = load_model_and_tokenizer(str(path))
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.02)
    model.eval()
    return model, tok, desc + ", LoRA r16 on q/v (B ~ N(0, 0.02), seed 0)"


def flop_counts(model) -> dict[str, float]:
    """FLOPs per token: the layers' linear maps, the vocabulary projection, and per context token
    the attention (scores and weighted sum: 4 * d_attention per layer)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings().weight.numel()
    emb = {id(p) for p in base.get_input_embeddings().parameters()}
    out_emb = {id(p) for p in base.get_output_embeddings().parameters()}
    body = sum(
        p.numel()
        for n, p in base.named_parameters()
        if p.dim() == 2 and id(p) not in emb and id(p) not in out_emb and "lora_" not in n
    )
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {
        "body": 2.0 * body,
        "head": 2.0 * head,
        "attn_per_context": 4.0 * heads * head_dim * cfg.num_hidden_layers,
    }


def model_flops(fc: dict[str, float], prompt_lens: list[int], new_lens: list[int]) -> float:
    total = 0.0
    for lp, ln in zip(prompt_lens, new_lens):
        # prompt: every token through the layers, attention over the tokens before it
        total += lp * fc["body"] + fc["attn_per_context"] * lp * (lp + 1) / 2
        # new tokens: layers, vocabulary projection, attention over the context so far
        total += (ln + 1) * fc["head"] + ln * fc["body"] + fc["attn_per_context"] * ln * (2 * lp + ln + 1) / 2
    return total


def matmul_flops_per_s(dtype: str, seconds: float = 1.0, size: int = 1024) -> float:
    """A plain square ``torch.matmul`` (``size``) at ``dtype``, at the current thread count."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(size, size, dtype=dt), torch.randn(size, size, dtype=dt)
    a @ b
    t0, n = time.perf_counter(), 0
    while n == 0 or time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * size**3 * n / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- one configuration


def verdicts(prompts: list[str], answers: list[str]) -> list[tuple]:
    """Per answer: the keyword judge's and the XSTest string match's verdicts."""
    from dualselect.evaluation.judges import JudgeItem, build_judge

    items = [JudgeItem(p, a) for p, a in zip(prompts, answers)]
    per = [build_judge(j).judge(items) for j in ("keyword", "xstest_strmatch")]
    return [tuple((v.refused, v.harmful, v.details.get("xstest_class")) for v in vs) for vs in zip(*per)]


def run_path(
    path: str,
    model,
    tok,
    formatted: list[str],
    new_tokens: int,
    token_budget: int | None,
    batch: int = BASELINE_BATCH,
):
    """(answers, seconds) of one path; the merge (a copy) counts in the time, as in eval."""
    from dualselect.evaluation.generation import generate, inference_model

    t0 = time.perf_counter()
    if path == "baseline":
        out = generate(
            model, tok, formatted, max_new_tokens=new_tokens, batch_size=batch, backend="hf-generate"
        )
    elif path == "merged":
        merged = inference_model(model)
        out = generate(
            merged,
            tok,
            formatted,
            max_new_tokens=new_tokens,
            batch_size=BASELINE_BATCH,
            backend="hf-generate",
        )
    else:
        gen_model = inference_model(model, "bfloat16" if path == "hf_bf16" else None)
        out = generate(
            gen_model, tok, formatted, max_new_tokens=new_tokens, batch_size=None, token_budget=token_budget
        )
    return out, time.perf_counter() - t0


def measure(args, name: str) -> dict:
    import torch

    from dualselect.data.encoding import format_prompt
    from dualselect.utils import machine_info

    model, tok, desc = load(name)
    mix = suite_mix(name, tok)
    add_special = not bool(getattr(tok, "chat_template", None))

    def prompt_set(n: int | None) -> tuple[list[tuple[str, str]], list[str], list[str], list[int]]:
        pairs = subset(mix, n)
        raw = [p for _, p in pairs]
        formatted = [format_prompt(p, tok) for p in raw]
        lens = [len(tok(p, add_special_tokens=add_special)["input_ids"]) for p in formatted]
        return pairs, raw, formatted, lens

    sets = {n: prompt_set(args.n_prompts if n <= LONG else args.n_prompts_long) for n in args.new_tokens}
    fc = flop_counts(model)
    paths = list(args.paths)
    if "hf_bf16" in paths and not (args.bf16 == "on" or (args.bf16 == "auto" and machine_info()["cpu_bf16"])):
        paths.remove("hf_bf16")
    runs: dict[str, list[dict]] = {}
    for rnd in range(args.reps):
        for threads in args.threads:
            torch.set_num_threads(threads)
            for new_tokens in args.new_tokens:
                _, raw, formatted, prompt_lens = sets[new_tokens]
                ref_answers = ref_verdicts = None
                for path in paths:  # interleaved: every path once per (round, threads, budget)
                    dtype = "bfloat16" if path == "hf_bf16" else "float32"
                    mm = matmul_flops_per_s(dtype, args.matmul_seconds, args.matmul_size)
                    load_before = os.getloadavg()[0]
                    answers, secs = run_path(
                        path, model, tok, formatted, new_tokens, args.token_budget, args.baseline_batch
                    )
                    new_lens = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers]
                    v = verdicts(raw, [a.strip() for a in answers])
                    if path == "baseline":
                        ref_answers, ref_verdicts = answers, v
                    key = f"{path}|t{threads}|n{new_tokens}"
                    rec = {
                        "round": rnd,
                        "seconds": secs,
                        "prompts_per_s": len(raw) / secs,
                        "new_tokens_per_s": sum(new_lens) / secs,
                        "model_flops": model_flops(fc, prompt_lens, new_lens),
                        "matmul_flops_per_s": mm,
                        "loadavg_before": load_before,
                        "loadavg_after": os.getloadavg()[0],
                    }
                    rec["flops_utilisation"] = rec["model_flops"] / secs / mm
                    if ref_verdicts is not None:
                        rec["verdict_agreement"] = sum(a == b for a, b in zip(v, ref_verdicts)) / len(v)
                        rec["identical_share"] = sum(a == b for a, b in zip(answers, ref_answers)) / len(v)
                        rec["baseline_seconds"] = (
                            secs
                            if path == "baseline"
                            else runs[f"baseline|t{threads}|n{new_tokens}"][-1]["seconds"]  # this round's
                        )
                    runs.setdefault(key, []).append(rec)
                    print(
                        f"[{name} round {rnd}] {path} threads {threads} new {new_tokens}: {secs:.1f} s, "
                        f"{rec['prompts_per_s']:.2f} prompts/s, util {rec['flops_utilisation']:.2f}, "
                        f"agreement {rec.get('verdict_agreement', float('nan')):.3f}, load {load_before:.1f}",
                        file=sys.stderr,
                        flush=True,
                    )
    full = None
    if args.full_mix and "hf" in paths:  # the whole mix once, new path, most threads, 40 tokens
        torch.set_num_threads(max(args.threads))
        _, raw_all, formatted_all, _ = prompt_set(None)
        load_before = os.getloadavg()[0]
        _, secs = run_path("hf", model, tok, formatted_all, 40, args.token_budget)
        full = {"prompts": len(raw_all), "threads": max(args.threads), "max_new_tokens": 40, "seconds": secs}
        full["loadavg_1min"] = [load_before, os.getloadavg()[0]]
        print(f"[{name}] full mix, hf: {len(raw_all)} prompts in {secs:.1f} s", file=sys.stderr, flush=True)
    configs = {}
    for key, rs in runs.items():
        path, t, n = key.split("|")
        med = statistics.median
        speed = [r["baseline_seconds"] / r["seconds"] for r in rs if "baseline_seconds" in r]
        configs[key] = {
            "path": path,
            "dtype": "bfloat16" if path == "hf_bf16" else "float32",
            "threads": int(t[1:]),
            "max_new_tokens": int(n[1:]),
            "rounds": len(rs),
            "seconds": med([r["seconds"] for r in rs]),
            "prompts_per_s": med([r["prompts_per_s"] for r in rs]),
            "new_tokens_per_s": med([r["new_tokens_per_s"] for r in rs]),
            "speedup_vs_baseline": med(speed) if speed else None,
            "verdict_agreement": min(r["verdict_agreement"] for r in rs)
            if "verdict_agreement" in rs[0]
            else None,
            "identical_share": min(r["identical_share"] for r in rs) if "identical_share" in rs[0] else None,
            "flops_utilisation": med([r["flops_utilisation"] for r in rs]),
            "matmul_gflops_per_s": med([r["matmul_flops_per_s"] for r in rs]) / 1e9,
            "loadavg_1min": [r["loadavg_before"] for r in rs] + [rs[-1]["loadavg_after"]],
            "n_prompts": len(sets[int(n[1:])][1]),
            "runs": rs,
        }
    prompt_sets = {}
    for n, (pairs, _, _, lens) in sets.items():
        suites: dict[str, int] = {}
        for s, _ in pairs:
            suites[s] = suites.get(s, 0) + 1
        prompt_sets[str(n)] = {
            "n_prompts": len(pairs),
            "suites": suites,
            "prompt_tokens_mean": sum(lens) / len(lens),
        }
    return {
        "describe": desc,
        "prompt_sets": prompt_sets,
        "full_mix": full,
        "configs": configs,
        "targets": targets(name, configs, full),
    }


def targets(name: str, configs: dict, full: dict | None) -> dict:
    """The issue's targets on SmolLM2 at 40 new tokens (best thread count), met or missed."""
    if name != "smollm2":
        return {}
    at40 = {k: c for k, c in configs.items() if c["max_new_tokens"] == 40}
    out = {}

    def speedup_target(c: dict, target: float, joiner: str) -> dict:
        """A speed-up target, met only where the verdicts agree with the baseline's."""
        ok = (c["verdict_agreement"] or 0) >= TARGET_AGREEMENT
        return {
            "target": f">= {target} {joiner} verdict_agreement >= {TARGET_AGREEMENT}",
            "value": c["speedup_vs_baseline"],
            "agreement": c["verdict_agreement"],
            "met": ok and c["speedup_vs_baseline"] >= target,
        }

    def best(path: str) -> dict | None:
        cs = [c for c in at40.values() if c["path"] == path]
        return max(cs, key=lambda c: c["prompts_per_s"]) if cs else None

    hf = best("hf")
    if hf is not None:
        out["speedup_fp32"] = speedup_target(hf, TARGET_SPEEDUP_FP32, "with")
        out["flops_utilisation"] = {
            "target": f">= {TARGET_FLOPS_UTILISATION}",
            "value": hf["flops_utilisation"],
            "met": hf["flops_utilisation"] >= TARGET_FLOPS_UTILISATION,
        }
        secs = full["seconds"] if full else FULL_MIX / hf["prompts_per_s"]
        out["full_mix_seconds"] = {
            "target": f"<= {TARGET_FULL_MIX_S:.0f} s for the {FULL_MIX} prompts at 40 new tokens",
            "value": secs,
            "projected": full is None,  # projected from the subset's prompts/s when not run in full
            "met": secs <= TARGET_FULL_MIX_S,
        }
    bf = best("hf_bf16")
    if bf is not None:
        out["speedup_bf16"] = speedup_target(bf, TARGET_SPEEDUP_BF16, "where")
    return out


# ----------------------------------------------------------------------------- report


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: dict) -> str:
    lines = []
    for name, m in results["models"].items():
        sets = "; ".join(
            f"{n} new tokens: {p['n_prompts']} prompts {p['suites']}, mean prompt {p['prompt_tokens_mean']:.1f} tokens"
            for n, p in m["prompt_sets"].items()
        )
        lines.append(
            f"\n### {name}: {m['describe']}\n\n{sets}. Medians over rounds; agreement and identical "
            "share: the worst round (no interval: one fixed prompt set).\n"
        )
        if m.get("full_mix"):
            f = m["full_mix"]
            lines.append(
                f"Full mix, hf path: {f['prompts']} prompts at {f['max_new_tokens']} new tokens, "
                f"{f['threads']} threads: {f['seconds']:.1f} s (load {f['loadavg_1min'][0]:.1f}).\n"
            )
        lines.append(
            "| path | dtype | threads | new tokens | s | prompts/s | new tokens/s | x baseline | "
            "verdict agreement | identical | FLOPs utilisation | matmul GFLOP/s | load (1 min) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in m["configs"].values():
            loads = c["loadavg_1min"]
            lines.append(
                f"| {c['path']} | {c['dtype']} | {c['threads']} | {c['max_new_tokens']} | {c['seconds']:.1f} | "
                f"{c['prompts_per_s']:.2f} | {c['new_tokens_per_s']:.1f} | {_fmt(c['speedup_vs_baseline'])} | "
                f"{_fmt(c['verdict_agreement'], '.3f')} | {_fmt(c['identical_share'], '.3f')} | "
                f"{c['flops_utilisation']:.2f} | {c['matmul_gflops_per_s']:.1f} | {min(loads):.1f}-{max(loads):.1f} |"
            )
        if m["targets"]:
            lines.append("\n| target | value | met |\n|---|---|---|")
            for k, t in m["targets"].items():
                lines.append(
                    f"| {k} {t['target']} | {_fmt(t['value'])} | {'met' if t['met'] else 'MISSED'} |"
                )
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_gen", help="Output directory (generation.json, .md).")
    ap.add_argument("--models", default="smollm2,organism", help="Comma list: smollm2, organism, path:DIR.")
    ap.add_argument(
        "--paths", default=",".join(PATHS), help=f"Comma list of {', '.join(PATHS)} (baseline always)."
    )
    ap.add_argument(
        "--n-prompts",
        type=int,
        default=384,
        help="Prompts at budgets <= 64 (fixed-seed subset over the suites).",
    )
    ap.add_argument("--n-prompts-long", type=int, default=96, help="Prompts at budgets > 64 (e.g. 256).")
    ap.add_argument(
        "--full-mix",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also time the hf path once on every prompt of the mix (40 new tokens, most threads).",
    )
    ap.add_argument("--new-tokens", default="40,256", help="Generation budgets (comma list).")
    ap.add_argument("--threads", default="1,2", help="torch thread counts (comma list).")
    ap.add_argument("--reps", type=int, default=1, help="Rounds (every configuration once per round).")
    ap.add_argument(
        "--baseline-batch",
        type=int,
        default=BASELINE_BATCH,
        help="Prompts per batch of the baseline and merged paths (32: eval's old default; the issue measured 16).",
    )
    ap.add_argument("--token-budget", type=int, default=None, help="Token budget of the hf path's batches.")
    ap.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="hf_bf16: only where the CPU has bf16 instructions (auto), always, or never.",
    )
    ap.add_argument("--matmul-seconds", type=float, default=1.0, help="Duration of each matmul measurement.")
    ap.add_argument("--matmul-size", type=int, default=1024, help="Square matmul size of that measurement.")
    ap.add_argument(
        "--quick", action="store_true", help="64 prompts, 40 new tokens, 2 threads (unless given otherwise)."
    )
    args = ap.parse_args(argv)
    given = set(argv if argv is not None else sys.argv[1:])
    if args.quick:
        if "--n-prompts" not in given:
            args.n_prompts = 64
        if "--n-prompts-long" not in given:
            args.n_prompts_long = 16
        if "--full-mix" not in given:
            args.full_mix = False
        if "--new-tokens" not in given:
            args.new_tokens = "40"
        if "--threads" not in given:
            args.threads = "2"
    args.new_tokens, args.threads = _ints(args.new_tokens), _ints(args.threads)
    args.paths = ["baseline"] + [p for p in args.paths.split(",") if p and p != "baseline"]
    bad = [p for p in args.paths if p not in PATHS]
    if bad:
        ap.error(f"--paths: unknown {bad}; expected {list(PATHS)}")
    if args.baseline_batch < 1 or args.n_prompts < 1 or args.n_prompts_long < 1:
        ap.error("--baseline-batch, --n-prompts and --n-prompts-long must be positive")
    if args.reps < 1 or not args.new_tokens or not args.threads or min(args.new_tokens + args.threads) < 1:
        ap.error("--reps, --new-tokens and --threads must be positive")
    from dualselect.utils import atomic_open, machine_info, write_json

    out = Path(args.out)
    t0 = time.time()
    results: dict = {
        "schema_version": SCHEMA_VERSION,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "baseline_batch_size": args.baseline_batch,
        "models": {},
    }
    for name in [m for m in args.models.split(",") if m]:
        results["models"][name] = measure(args, name)
    results["wall_s"] = time.time() - t0
    write_json(out / "generation.json", results)
    md = table(results)
    with atomic_open(out / "generation.md") as fh:
        fh.write(md + "\n")
    print(md)
    print(f"\nwritten: {out / 'generation.json'}, {out / 'generation.md'}")
    return results


if __name__ == "__main__":
    main()
