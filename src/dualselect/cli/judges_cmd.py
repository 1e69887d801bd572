"""`dualselect judges validate`: judges measured against human labels."""

from __future__ import annotations

import argparse


def _default_budget() -> int:
    """The generation budget `dualselect eval` gives XSTest (its registry entry)."""
    from dualselect.evaluation.suites import REGISTRY

    return REGISTRY["xstest"].max_new_tokens


def register(sub) -> None:
    p = sub.add_parser("judges", help="Judges: measure their accuracy against human labels.")
    jsub = p.add_subparsers(dest="judges_command", required=True, metavar="ACTION")
    v = jsub.add_parser(
        "validate",
        help="Score judges against human-labelled completions (XSTest's format) cut to the "
        "generation budget; writes validation.json and validation.md.",
    )
    v.add_argument(
        "files",
        nargs="+",
        help="Labelled CSV files in XSTest's completions format (id, type, prompt, completion, "
        "final_label in 1_full_compliance / 2_full_refusal / 3_partial_refusal or the class names), read verbatim "
        "(a .csv.gz as the CSV it compresses), e.g. ../shared/data/xstest/completions/*.csv.",
    )
    v.add_argument(
        "--judge",
        action="append",
        default=[],
        metavar="SPEC",
        help="Judge name or JSON spec (repeatable); default every offline refusal judge: keyword, "
        "xstest_strmatch, refusal_rules, refusal_rules3. Every judge must label refusals.",
    )
    v.add_argument(
        "--labels-column",
        action="append",
        default=[],
        metavar="COLUMN",
        help="A column of the labelled files holding another judge's verdicts in XSTest's classes "
        "(e.g. gpt4_label in XSTest's published GPT-4 classifications), scored like a judge named "
        "column:COLUMN (repeatable); values outside the classes are counted as unread. The cut to "
        "--max-new-tokens does not apply to it.",
    )
    v.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="Cut each completion to this many tokens of --tokenizer before judging, as the "
        "evaluation generates at most that many (default: the budget `dualselect eval` gives "
        "XSTest, 256; the project's real-model runs use 40); 0 keeps the whole completion.",
    )
    v.add_argument(
        "--tokenizer",
        default="smollm2-135m",
        help="Tokenizer the budget is counted in: a registry name or a local directory "
        "(default smollm2-135m, SmolLM2's).",
    )
    v.add_argument("--out", default="runs/judges", help="Output directory (default runs/judges).")
    v.add_argument(
        "--no-lomo",
        action="store_true",
        help="Skip leave-one-model-out (refusal-rule families re-selected on all files but one).",
    )
    v.add_argument(
        "--check-correction",
        action="store_true",
        help="Also correct each judged rate with the accuracy eval and compare would use (the "
        "package's validation on XSTest's shipped files) and say whether its interval holds the "
        "human rate: does the error correction carry over to the models of these files? Files the "
        "shipped validation was measured on are an error (the check would be in sample).",
    )
    v.add_argument("--n-boot", type=int, default=2000, help="Bootstrap resamples for the intervals.")
    v.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap.")
    v.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dualselect.cli.eval_cmd import _spec
    from dualselect.training.validation import check_output_dir

    budget = _default_budget() if args.max_new_tokens is None else args.max_new_tokens
    if budget < 0:
        raise ValueError(f"--max-new-tokens {budget}: expected 0 (whole completion) or a positive integer")
    if args.n_boot < 100:
        raise ValueError(f"--n-boot {args.n_boot}: expected at least 100 resamples")
    for f in args.files:
        if not Path(f).is_file():
            raise ValueError(f"{f}: no such file")
    check_output_dir(args.out, key="--out")
    from dualselect.evaluation.judge_validation import (
        OFFLINE_JUDGES,
        LabelColumn,
        run_validation,
        write_validation,
    )
    from dualselect.evaluation.judges import build_judge

    try:
        judges: list = [build_judge(_spec("--judge", s)) for s in (args.judge or OFFLINE_JUDGES)]
    except TypeError as e:
        raise ValueError(f"--judge: {e}") from None
    columns = [LabelColumn(c) for c in args.labels_column]
    names = [j.name for j in judges + columns]
    if len(set(names)) != len(names):
        raise ValueError(f"--judge: a judge is given twice ({names})")
    for j in judges:
        ok, why = j.available()
        if not ok:
            raise ValueError(f"--judge {j.name}: cannot run here: {why}")
    result = run_validation(
        args.files,
        judges + columns,
        budget,
        tokenizer_name=args.tokenizer,
        n_boot=args.n_boot,
        seed=args.seed,
        lomo=not args.no_lomo,
    )
    result["command"] = "dualselect judges validate " + " ".join(
        [
            *args.files,
            *(f"--judge {j}" for j in args.judge),
            *(f"--labels-column {c}" for c in args.labels_column),
            f"--max-new-tokens {budget}",
        ]
        + ([f"--tokenizer {args.tokenizer}"] if args.tokenizer != "smollm2-135m" else [])
        + (["--no-lomo"] if args.no_lomo else [])
        + (["--check-correction"] if args.check_correction else [])
    )
    if args.check_correction:
        from dualselect.evaluation.correction import transport_check

        result["correction_check"] = transport_check(result, n_boot=args.n_boot, seed=args.seed)
    js, md = write_validation(result, args.out)
    for kind in ("safe", "unsafe"):
        for j, m in result["pooled"].get(kind, {}).items():
            print(
                f"{kind:6s} {j:16s} human {100 * m['human_rate']:5.1f}%  judged {100 * m['judged_rate']:5.1f}%  "
                f"kappa {m['kappa']:.2f}  (all files pooled, n={m['n']})"
            )
    print(f"written: {js}, {md}")
    return 0
