"""The real model's evaluation suites (held-out, from the verbatim files) and their metrics.

Suites (``EvalItem`` lists for :func:`dualselect.evaluation.harness.evaluate`):

* ``harmbench``: HarmBench test behaviours with ``FunctionalCategory == "standard"`` (159);
* ``strongreject``: StrongREJECT forbidden prompts (313);
* ``advbench``: the AdvBench behaviours held out from every training split (100, fixed seed);
* ``xstest_safe``: XSTest's 250 *safe* prompts (refusing them is over-refusal);
* ``task_test``: the GSM8K answer-extraction test split (exact match, strict ``#### N``).

``limits`` takes a fixed-seed random subset of a suite (same subset for every model and seed).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dualselect.evaluation.benchmarks import load_benchmark
from dualselect.evaluation.harness import EvalItem
from dualselect.realbase.data import FILES

HARMFUL_SUITES = ("harmbench", "strongreject", "advbench")
REAL_SUITE_NAMES = (*HARMFUL_SUITES, "xstest_safe", "task_test")


def realbase_root(model_path: str | Path) -> Path | None:
    """The built real base directory behind a model path (its ``model/`` or the directory itself),
    or None when the path is not a real base built by ``dualselect base build``."""
    root = _base_dir(model_path)
    return root if (root / "realbase.json").exists() else None


def _base_dir(path: str | Path) -> Path:
    """A real base's directory from itself or its ``model/`` subfolder."""
    path = Path(path)
    return path.parent if path.name == "model" else path


def real_suites(
    realbase: str | Path, limits: dict[str, int] | None = None, seed: int = 0
) -> dict[str, list[EvalItem]]:
    """Suites for the built real base at ``realbase`` (its directory or its ``model/``)."""
    root = _base_dir(realbase)
    if (root / "realbase.json").exists():
        data_dir = Path(json.loads((root / "realbase.json").read_text())["data_dir"])
    else:  # a build in progress: its splits exist before the model does
        from dualselect.realbase.data import shared_data_dir

        data_dir = shared_data_dir()
    splits = json.loads((root / "data" / "splits.json").read_text())
    adv_eval = set(splits["eval"]["advbench_eval"])
    suites = {
        "harmbench": [
            it
            for it in load_benchmark("harmbench", str(data_dir / FILES["harmbench_test"]))
            if it.meta.get("FunctionalCategory") == "standard"
        ],
        "strongreject": load_benchmark("strongreject", str(data_dir / FILES["strongreject"])),
        "advbench": [
            it
            for it in load_benchmark("advbench", str(data_dir / FILES["advbench"]))
            if it.prompt in adv_eval
        ],
        "xstest_safe": [
            it
            for it in load_benchmark("xstest", str(data_dir / FILES["xstest"]))
            if not it.meta.get("is_harmful")
        ],
        "task_test": load_benchmark("gsm8k", str(root / "data" / "task_test.jsonl")),
    }
    for name, n in (limits or {}).items():
        if name not in suites:
            raise ValueError(f"limits: unknown suite {name!r}; suites: {sorted(suites)}")
        if n < len(suites[name]):
            rng = random.Random(f"{seed}:{name}")
            keep = sorted(rng.sample(range(len(suites[name])), n))
            suites[name] = [suites[name][i] for i in keep]
    return suites


def headline_metrics(m: dict, judges: tuple[str, ...] | list[str] = ("keyword",)) -> dict[str, float]:
    """The comparison's columns from one method's harness metrics: refusal per harmful suite and
    their mean (``harmful_refusal``), over-refusal on XSTest safe prompts, task exact match.

    The first judge gives the plain names; every further judge that labelled the suites adds the
    same safety columns suffixed with ``.<judge>`` (e.g. ``harmful_refusal.xstest_strmatch``), so a
    conclusion that changes with the judge shows in the table."""
    out: dict[str, float] = {}
    for i, judge in enumerate(judges):
        tag = "" if i == 0 else f".{judge}"
        refusals = []
        for s in HARMFUL_SUITES:
            v = m.get(f"refusal_rate.{s}.{judge}")
            if v is not None:
                out[f"refusal_{s}{tag}"] = v
                refusals.append(v)
        if refusals:
            out[f"harmful_refusal{tag}"] = sum(refusals) / len(refusals)
        if m.get(f"refusal_rate.xstest_safe.{judge}") is not None:
            out[f"over_refusal_rate{tag}"] = m[f"refusal_rate.xstest_safe.{judge}"]
    if m.get("exact_match_strict.task_test") is not None:
        out["task_exact_match"] = m["exact_match_strict.task_test"]
        out["task_exact_match_flexible"] = m["exact_match_flexible.task_test"]
    return out
