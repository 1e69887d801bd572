"""`dualselect eval` and `dualselect report`."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="Evaluate model variants: capability, coherence gate, several judges, "
        "Safety Avg. vs SFT, agreement; writes results.json, report.md and plots.",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH[,PATH...]",
        help="A variant: a model directory/hub id or a LoRA adapter directory (repeatable). Name one "
        "variant 'sft' to get win rates vs Standard SFT. Several comma-separated paths are seeds of "
        "one variant (evaluated as NAME@0, NAME@1, ..., paired with sft@K, and summarised with mean "
        "and a Student-t interval over seeds; a single run gets bootstrap intervals over prompts).",
    )
    p.add_argument(
        "--base",
        default="organism",
        help="The aligned base model (row 'base', KL reference, perplexity); default: the organism. "
        "A real base built by 'dualselect base build' (e.g. smollm2-135m-safe) brings its held-out "
        "suites (see --benchmark).",
    )
    p.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar="NAME[=PATH]",
        help="Benchmark by registry name, from a local path (its published file: csv, tsv, "
        "jsonl[.gz], json, parquet) or the hub (repeatable). XSTest becomes two suites: 'xstest' "
        "(250 safe prompts: over-refusal) and 'xstest_unsafe' (200 contrast prompts: harmful). "
        "Default: the organism's held-out probes (ground truth known); with a real base as --base, its "
        "held-out real suites: HarmBench standard test, StrongREJECT, the AdvBench behaviours no "
        "training split uses, XSTest safe prompts, the task's test split.",
    )
    p.add_argument(
        "--include-copyright",
        action="store_true",
        help="Keep HarmBench's 80 copyright behaviours (left out by default: their harm is verbatim "
        "reproduction, which HarmBench scores with a hash check, not a harm classifier).",
    )
    p.add_argument(
        "--judge",
        action="append",
        default=[],
        metavar="SPEC",
        help='Judge name or JSON spec, e.g. keyword or \'{"name": "llama_guard3", "path": "..."}\' '
        "(repeatable; default: ground_truth and keyword on the organism, keyword, xstest_strmatch and "
        "refusal_rules on a real base's suites, keyword and refusal_rules with --benchmark). Names: "
        "keyword, xstest_strmatch, refusal_rules, refusal_rules3 (refusal constructions, two / three "
        "classes; see 'dualselect judges validate'), ground_truth, llama_guard3, wildguard, beavertails, "
        "harmbench_cls (weights by path), hexphi_rubric, strongreject_rubric (option rubric: "
        "current|v1), xstest_rubric (API). Refusal judges validated against human labels also get "
        "error-corrected rates in the report (not on the organism, whose truth is known).",
    )
    p.add_argument(
        "--judge-validation",
        action="append",
        default=[],
        metavar="FILE",
        help="validation.json written by 'dualselect judges validate' on human-labelled completions "
        "(repeatable), e.g. of the model you evaluate: the judges' accuracy and the error correction "
        "come from it instead of the shipped XSTest validation.",
    )
    p.add_argument(
        "--quality-judge",
        action="append",
        default=[],
        metavar="SPEC",
        help="Pairwise quality judge for open-ended suites (win rate vs SFT): 'reference' (ROUGE-L "
        'against the reference answer; the default) or \'{"name": "api", "model": ..., '
        '"base_url": ...}\' (MT-Bench pair-v2 prompt over an OpenAI-compatible API). Repeatable.',
    )
    p.add_argument(
        "--coherence-judge",
        default=None,
        metavar="JSON",
        help='Optional LLM coherence judge over an OpenAI-compatible API, e.g. \'{"model": "...", '
        '"base_url": "http://127.0.0.1:8000/v1"}\'; it reads the responses the cheap signals pass.',
    )
    p.add_argument(
        "--max-perplexity",
        default=None,
        metavar="X|auto[:F]",
        help="Flag a response as incoherent above this per-token perplexity under the base model; "
        "'auto[:F]' sets it to F (default 3) times the 95th percentile of the base model's "
        "perplexity on the suites' reference answers (default: perplexity is recorded, not gated on).",
    )
    p.add_argument(
        "--allow-base-mismatch",
        action="store_true",
        help="Evaluate an adapter whose recorded base model (its run_manifest.json fingerprint) is "
        "not --base; without it such a variant is refused (its KL, win rates and deltas would compare "
        "different bases).",
    )
    p.add_argument("--reference-data", default=None, help="Reference pool to check for prompt overlaps.")
    p.add_argument(
        "--out",
        default="runs/eval",
        help="Output directory (default runs/eval). A previous evaluation there is updated: its "
        "generations are reused only for the exact model that wrote them. A non-empty directory "
        "holding no evaluation is refused unless --overwrite.",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="Write into a non-empty --out that holds no evaluation (files of the same name are replaced).",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="One generation budget for every suite. Default: per suite, long enough for the format "
        "its metric reads (GSM8K 512, SST-2/AG News 16, other benchmarks 256; organism probes 64).",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="At most this many prompts per generation batch (default: no limit; --token-budget decides).",
    )
    p.add_argument(
        "--token-budget",
        type=int,
        default=None,
        help="Generation batches hold rows x (prompt + new tokens) <= this many tokens "
        "(default 16384; backend hf).",
    )
    p.add_argument(
        "--backend",
        choices=("hf", "hf-generate", "vllm"),
        default="hf",
        help="Generation backend: hf (default: a LoRA adapter merged into a copy of the weights, "
        "token-budget batches, shared prompt prefix, greedy), hf-generate (transformers' generate on "
        "the model as loaded, fixed batches) or vllm (GPU; the adapter directory is served through "
        "LoRARequest). Answers are cached per backend.",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default=None,
        help="Generation dtype (default: the model's, float32 on CPU). bfloat16 is faster only on "
        "CPUs with bf16 instructions or GPUs; see docs/benchmarks.md for its verdict agreement.",
    )
    p.add_argument(
        "--vllm-options",
        default=None,
        metavar="JSON",
        help="Extra vllm.LLM arguments with --backend vllm, e.g. '{\"gpu_memory_utilization\": 0.5}'.",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="At most this many prompts per suite (>= 1): for --benchmark a random subset drawn with --seed "
        "(the same subset on every run, kept in file order); for the organism probes the first N.",
    )
    p.add_argument("--seed", type=int, default=0, help="Seed of subsets, answer orders and bootstraps.")
    p.set_defaults(func=run)
    r = sub.add_parser("report", help="Rebuild report.md and the plots from an evaluation's results.json.")
    r.add_argument("dir", help="Evaluation output directory.")
    r.set_defaults(func=run_report)


def check_variant_base(name: str, path: str, base_fp: str, base: str, allow: bool = False) -> None:
    """Refuse (one line) an adapter run whose recorded base fingerprint is not ``base_fp`` (the
    ``--base`` model's); with ``allow`` a warning instead. A run without a recorded fingerprint
    (an adapter saved elsewhere or by an older version) cannot be checked: a note says so."""
    import sys
    from pathlib import Path

    from dualselect.training.rundir import read_manifest

    if not (Path(path) / "adapter_config.json").exists():
        return  # a full model: it is its own base
    recorded = (read_manifest(path) or {}).get("base_fingerprint")
    if recorded is None:
        print(
            f"note: --model {name}: {path} records no base fingerprint; not checked against --base",
            file=sys.stderr,
        )
        return
    if recorded != base_fp:
        msg = (
            f"--model {name}: {path} was trained on another base model than --base {base} (base "
            f"fingerprint {recorded[:12]} vs {base_fp[:12]}); evaluate it with the base it was trained "
            "on, or pass --allow-base-mismatch"
        )
        if not allow:
            raise ValueError(msg)
        print(f"warning: {msg.rpartition(';')[0]} (allowed by --allow-base-mismatch)", file=sys.stderr)


def _vllm_source(path: str, base_path: str) -> dict[str, str | None]:
    """What vLLM serves for a variant: an adapter directory on its base, or a model directory."""
    from pathlib import Path

    from dualselect.training.model import resolve_model_path

    if (Path(path) / "adapter_config.json").exists():
        cfg = json.loads((Path(path) / "adapter_config.json").read_text())
        base = cfg.get("base_model_name_or_path") or base_path
        return {"model": str(resolve_model_path(base)), "adapter": str(Path(path).resolve())}
    return {"model": str(resolve_model_path(path)), "adapter": None}


def _load_variant(path: str, base_path: str):
    from pathlib import Path

    from dualselect.training.model import load_model_and_tokenizer, resolve_model_path

    if (Path(path) / "adapter_config.json").exists():
        from peft import PeftModel

        cfg = json.loads((Path(path) / "adapter_config.json").read_text())
        model, tok = load_model_and_tokenizer(cfg.get("base_model_name_or_path") or base_path)
        model = PeftModel.from_pretrained(model, path).eval()
        for n, p in model.named_parameters():  # a diverged adapter is not worth scoring
            if "lora_" in n and not bool(p.isfinite().all()):
                raise ValueError(
                    f"{path}: adapter weight {n} holds NaN or inf (a diverged run); not evaluated"
                )
        return model, tok
    return load_model_and_tokenizer(resolve_model_path(path))


def _perplexity_threshold(spec: str | None, base, suites) -> float | None:
    """``--max-perplexity``: a number, ``auto[:F]`` (calibrated on reference answers), or None."""
    if spec is None:
        return None
    if not spec.startswith("auto"):
        try:
            return float(spec)
        except ValueError:
            raise ValueError(f"--max-perplexity {spec!r}: expected a number or auto[:FACTOR]") from None
    from dualselect.evaluation.coherence import calibrate_perplexity

    factor = float(spec.partition(":")[2] or 3.0)
    refs = [(it.prompt, it.gold) for v in suites.values() for it in v if it.gold and it.kind != "capability"]
    model, tok = base
    threshold = calibrate_perplexity(model, tok, [p for p, _ in refs], [r for _, r in refs], factor)
    print(f"perplexity gate: {threshold:.2f} ({factor} x p95 on {len(refs)} reference answers)")
    return threshold


def parse_variants(specs: list[str]) -> dict[str, str]:
    """``--model NAME=PATH[,PATH...]`` -> ``{variant: path}``, checked before any model loads.

    A NAME becomes a file name (``OUT/generations/NAME.jsonl``), so it must be a plain name:
    letters, digits and ``. _ - + =``, not starting with a dot, no ``..``, no ``/``, no
    ``.verdicts`` or ``.pairwise`` part (another variant's files) and not ``base`` (the base
    model's row). Every PATH must be an existing directory or a hub id, and a training run must
    be complete (its ``run_manifest.json``)."""
    from pathlib import Path

    from dualselect.evaluation.names import variant_name_problem
    from dualselect.training.rundir import check_run_complete
    from dualselect.training.validation import check_model_path
    from dualselect.utils import safe_name

    variants: dict[str, str] = {}
    for spec in specs:
        name, sep, paths = spec.partition("=")
        paths = [x for x in paths.split(",") if x]
        if not sep or not name or "@" in name or not paths:
            raise ValueError(f"--model {spec!r}: expected NAME=PATH[,PATH...] (no '@' in NAME)")
        if safe_name(name) != name:
            raise ValueError(
                f"--model {spec!r}: NAME {name!r} is not a plain file name (use letters, digits and "
                "'. _ - + =', no '/', no '..', not starting with '.' or '-')"
            )
        if name == "base":
            raise ValueError(f"--model {spec!r}: 'base' is the --base model's row; choose another NAME")
        if problem := variant_name_problem(name):
            raise ValueError(f"--model {spec!r}: {problem}")
        for k, path in enumerate(paths):
            key = name if len(paths) == 1 else f"{name}@{k}"
            if key in variants:
                raise ValueError(f"--model {spec!r}: variant {key!r} given twice")
            check_model_path(path, key=f"--model {key}")
            if Path(path).is_dir():
                check_run_complete(path)  # an interrupted or diverged run: "incomplete run"
            variants[key] = path
    return variants


def _spec(flag: str, text: str, dict_only: bool = False):
    """A judge spec from the command line: a name, or a JSON object (one-line errors)."""
    if not text.strip().startswith("{"):
        if dict_only:
            raise ValueError(f"{flag} {text!r}: expected a JSON object")
        return text.strip()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} {text!r}: not valid JSON ({e})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{flag} {text!r}: expected a JSON object")
    return spec


def check_eval_numbers(args: argparse.Namespace) -> None:
    """``--limit``, ``--batch-size``, ``--max-new-tokens`` >= 1 and ``--seed`` in [0, 2**32): a
    one-line error naming the flag (``--limit -1`` would drop a suite's last prompt, ``--limit 0``
    evaluate everything); ``--max-perplexity`` a number > 0 or ``auto[:F]`` with F > 0."""
    import math

    for flag, value in (
        ("--limit", args.limit),
        ("--batch-size", args.batch_size),
        ("--max-new-tokens", args.max_new_tokens),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value}: must be >= 1")
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed {args.seed}: must be in [0, 2**32)")
    spec = args.max_perplexity
    if spec is not None:  # a NaN threshold would flag nothing, without a word
        head, colon, factor = spec.partition(":")
        text = (factor or "3") if head == "auto" else (None if colon or head.startswith("auto") else spec)
        try:
            value = float(text) if text is not None else math.nan
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--max-perplexity {spec!r}: expected a number > 0 or auto[:FACTOR > 0]")


def check_eval_out(out: str, overwrite: bool = False) -> None:
    """``--out`` must be new, empty, or a previous evaluation (``results.json`` or
    ``generations/``); any other non-empty directory is refused unless ``overwrite``."""
    from pathlib import Path

    from dualselect.training.validation import check_output_dir

    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {out}: is a file, not a directory")
    previous_eval = (p / "results.json").exists() or (p / "generations").is_dir()
    if p.is_dir() and any(p.iterdir()) and not overwrite and not previous_eval:
        names = ", ".join(sorted(e.name for e in p.iterdir())[:5])
        raise ValueError(
            f"--out {out}: not empty and holds no evaluation ({names}); choose another --out "
            "or pass --overwrite"
        )
    check_output_dir(p, key="--out")


def check_eval_args(args: argparse.Namespace) -> tuple[dict[str, str], dict | None, tuple[dict, ...] | None]:
    """Everything that can be wrong with the arguments, checked before a model loads (and before
    torch is even imported): the variants (returned as ``{variant: path}``), ``--out``, the base
    and benchmark paths, the numbers, the generation backend (``--vllm-options`` returned), the
    ``--judge-validation`` files (returned loaded; None without any: the shipped validation)."""
    from dualselect.training.validation import check_data_path, check_model_path

    check_eval_numbers(args)
    variants = parse_variants(args.model)
    check_eval_out(args.out, args.overwrite)
    if args.base != "organism":
        check_model_path(args.base, key="--base")
    for spec in args.benchmark:
        name, _, path = spec.partition("=")
        check_data_path(path or None, key=f"--benchmark {name}")
    for flag, v in (("--batch-size", args.batch_size), ("--token-budget", args.token_budget)):
        if v is not None and v < 1:
            raise ValueError(f"{flag} {v}: expected a positive number")
    validations = None
    if args.judge_validation:
        from dualselect.evaluation.correction import load_validations

        validations = load_validations(args.judge_validation)  # a bad file fails before any model loads
    vllm_options = _spec("--vllm-options", args.vllm_options, dict_only=True) if args.vllm_options else None
    if vllm_options and args.backend != "vllm":
        raise ValueError("--vllm-options: only with --backend vllm")
    if args.backend == "vllm":
        from dualselect.evaluation.generation import vllm_available

        ok, why = vllm_available()
        if not ok:
            raise ValueError(f"--backend vllm: {why}")
    return variants, vllm_options, validations


def eval_suites(args: argparse.Namespace, set_name: str, base_path: str) -> tuple[dict, dict[str, int]]:
    """The suites of suite set ``set_name`` (``--benchmark`` entries, or the base's own suites with
    ``--limit``) and their generation budgets (``--max-new-tokens``, else per benchmark, else 64)."""
    from dualselect.evaluation.suites import REGISTRY, cli_benchmark_suites, limits_for, resolve_suites

    budgets: dict[str, int] = {"default": 64}
    if args.benchmark:
        suites: dict = {}
        for spec in args.benchmark:
            loaded = cli_benchmark_suites([spec], args.limit, args.seed, args.include_copyright)
            suites.update(loaded)
            budgets.update({s: REGISTRY[spec.partition("=")[0]].max_new_tokens for s in loaded})
    else:
        suites = resolve_suites(set_name, base_path, limits=limits_for(set_name, args.limit), seed=args.seed)
    if args.max_new_tokens is not None:
        budgets = {"default": args.max_new_tokens}
    return suites, budgets


def run(args: argparse.Namespace) -> int:
    variants, vllm_options, validations = check_eval_args(args)
    from dualselect.evaluation.benchmarks import disjointness
    from dualselect.evaluation.coherence import ApiCoherenceJudge, CoherenceGate
    from dualselect.evaluation.harness import evaluate
    from dualselect.evaluation.judges import build_judge
    from dualselect.evaluation.suites import default_suite_set, suite_set
    from dualselect.training.model import load_model_and_tokenizer, resolve_model_path
    from dualselect.utils import seed_everything

    # the judges asked for and their options are checked before any model is resolved (resolving
    # may build one: the organism, a GGUF conversion, a real base)
    try:
        judges = [build_judge(_spec("--judge", s)) for s in args.judge]
        coherence_judge = (
            ApiCoherenceJudge(**_spec("--coherence-judge", args.coherence_judge, dict_only=True))
            if args.coherence_judge
            else None
        )
    except TypeError as e:  # unknown options of a judge: a usage error, not a bug
        raise ValueError(f"judge options: {e}") from None
    quality = [_spec("--quality-judge", q) for q in args.quality_judge] or None
    base_path = resolve_model_path(args.base)
    # the organism brings its probes, a real base built by `dualselect base build` (e.g.
    # smollm2-135m-safe) its held-out suites; any other base needs --benchmark
    set_name = default_suite_set(base_path, has_benchmarks=bool(args.benchmark))
    if set_name is None:
        raise ValueError(
            f"--base {args.base}: neither the organism nor a real base built by `dualselect base build`; "
            "name the evaluation sets with --benchmark"
        )
    suite_spec = suite_set(set_name)
    if not judges:  # defaults: the judges that run offline for these suites
        judges = [build_judge(s) for s in suite_spec.judges]
    seed_everything(args.seed)
    models = {"base": load_model_and_tokenizer(base_path)}
    from dualselect.training.rundir import base_fingerprint

    base_fp = base_fingerprint(*models["base"])
    for name, path in variants.items():  # before any variant loads
        check_variant_base(name, path, base_fp, args.base, args.allow_base_mismatch)
    models.update({name: _load_variant(path, base_path) for name, path in variants.items()})
    suites, budgets = eval_suites(args, set_name, base_path)
    gate = CoherenceGate(max_perplexity=_perplexity_threshold(args.max_perplexity, models["base"], suites))
    gate.llm_judge = coherence_judge
    res = evaluate(
        models,
        suites,
        judges,
        args.out,
        base="base",
        sft="sft" if any(n.partition("@")[0] == "sft" for n in models) else None,
        quality_judges=quality,
        gate=gate,
        max_new_tokens=budgets,
        batch_size=args.batch_size,
        seed=args.seed,
        correct=suite_spec.correct,
        judge_validations=validations,
        backend=args.backend,
        dtype=args.dtype,
        token_budget=args.token_budget,
        vllm_sources=(
            {"base": _vllm_source(base_path, base_path)}
            | {name: _vllm_source(path, base_path) for name, path in variants.items()}
            if args.backend == "vllm"
            else None
        ),
        vllm_options=vllm_options,
    )
    if args.reference_data:
        from dualselect.data.records import load_records
        from dualselect.evaluation.report import write_report

        refs = [r.prompt for r in load_records(args.reference_data).records]
        res["disjointness"] = disjointness(refs, {k: [i.prompt for i in v] for k, v in suites.items()})
        write_report(res, args.out)
    print(summary_table(res))
    for name, why in res["skipped_judges"].items():
        print(f"skipped judge {name}: {why}")
    for name, per in (res.get("judge_failures") or {}).items():
        n = sum(k for by_m in per.values() for k in by_m.values())
        print(f"judge {name}: {n} failed items (see report.md, 'Judge failures')")
    print(f"written: {args.out}/results.json, report.md, plots")
    return 0


def summary_table(results: dict) -> str:
    """The headline numbers per variant as a fixed-width terminal table (percentages; Safety
    Avg. and quality win rates are already 0-100; KL in nats per token)."""
    from dualselect.evaluation.aggregate import summary_metrics

    rows = {name: summary_metrics(m, results) for name, m in results["methods"].items()}
    cols = [
        ("capability", "capability"),
        ("over_refusal", "over-refusal"),
        ("incoherence_rate", "incoherent"),
    ]
    for j in results["judges"]:
        cols += [(f"refusal.{j}", f"refusal {j}"), (f"safety_avg.{j}", f"SafetyAvg {j}")]
    cols += [(f"quality_avg.{q}", f"quality {q}") for q in results.get("quality_judges", [])]
    cols.append(("kl_base", "KL(base)"))
    cols = [(k, label) for k, label in cols if any(k in r for r in rows.values())]

    def cell(key: str, v: float | None) -> str:
        if v is None:
            return "-"
        if key == "kl_base":
            return f"{v:.3f}".replace("-0.000", "0.000")  # rounding noise of a KL near 0
        return f"{v:.1f}" if key.startswith(("safety_avg", "quality_avg")) else f"{100 * v:.1f}%"

    widths = [max(len(label), 7) for _, label in cols]
    w0 = max(8, *(len(n) for n in rows)) if rows else 8
    head = f"{'variant':<{w0}}  " + "  ".join(f"{label:>{w}}" for (_, label), w in zip(cols, widths))
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        cells = "  ".join(f"{cell(k, r.get(k)):>{w}}" for (k, _), w in zip(cols, widths))
        lines.append(f"{name:<{w0}}  {cells}")
    return "\n".join(lines)


def run_report(args: argparse.Namespace) -> int:
    from dualselect.evaluation.report import rebuild

    rebuild(args.dir)
    print(f"rebuilt {args.dir}/report.md and plots")
    return 0
