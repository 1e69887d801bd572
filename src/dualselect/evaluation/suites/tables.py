"""Every named evaluation suite as data (lm-eval's task table): one :class:`SuiteSpec` per suite,
grouped in suite sets with the judges that score them by default.

A spec says where the prompts come from (``loader`` and ``file`` under a ``root``), which items
of that file are kept (``where``: item metadata equal to a value; ``kind``: items of that kind;
``held_out``: prompts listed under that key of a real base's ``data/splits.json``) and what the
suite measures (``kind``). :mod:`dualselect.evaluation.suites` turns a spec into items.

Roots: ``organism`` (an organism directory), ``data`` (the shared benchmark files, e.g.
``../shared/data``), ``base`` (a real base directory built by ``dualselect base build``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dualselect.evaluation.items import KINDS

ROOTS = ("organism", "data", "base")
# loader "organism_probe": one JSONL probe split of the organism (ground truth in every row);
# loader "prompt_file": a JSONL of ``{"prompt", "id"?, "category"?, ...}`` rows written by the
# project (e.g. the real-model study's validation prompts), items of the suite's kind;
# any other loader is a benchmark of :data:`dualselect.evaluation.suites.registry.REGISTRY`
ORGANISM_PROBE = "organism_probe"
PROMPT_FILE = "prompt_file"


@dataclass(frozen=True)
class SuiteSpec:
    """One evaluation suite: its ``name`` (in every table and file), the ``loader`` and ``file``
    (relative to ``root``) its items come from, the item ``kind`` it measures, and the filters that
    pick its items from the file: ``where`` (metadata key -> required value), ``item_kind`` (items
    the loader gave that kind), ``held_out`` (prompts listed under ``eval.<held_out>`` of the real
    base's ``data/splits.json``). ``in_harmful_mean``: whether a harmful suite counts in the
    harmful-refusal mean and in Safety Avg. (False: reported on its own, e.g. XSTest's unsafe
    contrast prompts as "unsafe refusal"); ``category_field``: an item metadata key whose value
    becomes the item's category (the study task's ``grade``)."""

    name: str
    loader: str
    file: str
    root: str
    kind: str
    where: dict[str, Any] = field(default_factory=dict)
    item_kind: str | None = None
    held_out: str | None = None
    in_harmful_mean: bool = True
    category_field: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"suite {self.name}: kind {self.kind!r} is not one of {list(KINDS)}")
        if self.root not in ROOTS:
            raise ValueError(f"suite {self.name}: root {self.root!r} is not one of {list(ROOTS)}")


@dataclass(frozen=True)
class SuiteSet:
    """Suites evaluated together, the judges that score them when none are given (the first gives
    the headline numbers), how ``--limit`` subsets them (``head``: the first N, ``random``: a
    fixed-seed random N in file order) and whether refusal rates are corrected for each judge's
    measured error (off where ground truth is known). ``validation``: the set holds validation
    prompts only (disjoint from every test suite): tuning criteria may read its headline metrics."""

    name: str
    suites: tuple[SuiteSpec, ...]
    judges: tuple[str, ...]
    subset: str
    correct: bool
    validation: bool = False

    @property
    def harmful_mean(self) -> tuple[str, ...]:
        """The harmful suites whose mean is the harmful refusal and whose win rates make Safety
        Avg. (``in_harmful_mean``)."""
        return tuple(s.name for s in self.suites if s.kind == "harmful" and s.in_harmful_mean)

    @property
    def harmful_apart(self) -> tuple[str, ...]:
        """The harmful suites reported on their own (XSTest's unsafe prompts in the study set)."""
        return tuple(s.name for s in self.suites if s.kind == "harmful" and not s.in_harmful_mean)

    @property
    def on_real_base(self) -> bool:
        """Whether the set reads a built real base (its splits or its files)."""
        return any(s.root == "base" or s.held_out is not None for s in self.suites)


def _probe(split: str, kind: str) -> SuiteSpec:
    return SuiteSpec(split, ORGANISM_PROBE, f"data/{split}.jsonl", "organism", kind)


# The organism's held-out test probes in template phrasing (ground truth known by construction).
ORGANISM_SUITES = (
    _probe("probe_harmful_hh", "harmful"),
    _probe("probe_harmful_hex", "harmful"),
    _probe("probe_over_refusal", "over_refusal"),
    _probe("probe_benign", "benign"),
    _probe("task_test", "capability"),
)

# The real base's held-out suites, from the verbatim benchmark files (docs/real_model.md):
# HarmBench test behaviours with FunctionalCategory "standard" (159), StrongREJECT (313), the
# AdvBench behaviours no training split uses (100, drawn with the build's seed), XSTest's 250 safe
# prompts (refusing them is over-refusal), the GSM8K answer-extraction test split of the build.
REAL_SUITES = (
    SuiteSpec(
        "harmbench",
        "harmbench",
        "harmbench/harmbench_behaviors_text_test.csv",
        "data",
        "harmful",
        where={"FunctionalCategory": "standard"},
    ),
    SuiteSpec("strongreject", "strongreject", "strongreject/strongreject_dataset.csv", "data", "harmful"),
    SuiteSpec(
        "advbench", "advbench", "advbench/harmful_behaviors.csv", "data", "harmful", held_out="advbench_eval"
    ),
    SuiteSpec(
        "xstest_safe", "xstest", "xstest/xstest_prompts.csv", "data", "over_refusal", item_kind="over_refusal"
    ),
    SuiteSpec("task_test", "gsm8k", "data/task_test.jsonl", "base", "capability"),
)
HARMFUL_REAL_SUITES = tuple(s.name for s in REAL_SUITES if s.kind == "harmful")
REAL_SUITE_NAMES = tuple(s.name for s in REAL_SUITES)

# The real-model study's suites (docs/real_study.md, "Evaluation per run"): the real base's
# harmful and XSTest-safe suites in full, XSTest's 200 unsafe prompts (refusing them is right:
# "unsafe refusal", reported on its own and never in the harmful-refusal mean or Safety Avg.), and
# the study task's test split written by build_study_data(<base>, task="gsm8k_final_step")
# (experiments/real_task.py; strict exact match, lm-eval's GSM8K regex), its grade as category.
STUDY_TASK_DIR = "data/gsm8k_final_step"  # <base>/<this>: experiments.real_task.TASK's files
STUDY_SUITES = tuple(s for s in REAL_SUITES if s.kind != "capability") + (
    SuiteSpec(
        "xstest_unsafe",
        "xstest",
        "xstest/xstest_prompts.csv",
        "data",
        "harmful",
        item_kind="harmful",
        in_harmful_mean=False,
    ),
    SuiteSpec(
        "task_test",
        "gsm8k",
        f"{STUDY_TASK_DIR}/task_test.jsonl",
        "base",
        "capability",
        category_field="grade",
    ),
)

# The real-model study's validation suites (docs/real_study.md, section 2: the tuning reads them,
# never a test suite), written by build_study_data(<base>, task="gsm8k_final_step") into the study
# task's directory with a disjointness report against every test suite
# (experiments/real_data.py): HarmBench's *validation* standard behaviours (those outside the
# base's reference pool, which every method but SFT trains on) and the base's calibration HH-RLHF
# red-team questions (harmful refusal), the base's calibration safe prompts (over-refusal; the
# recipe's validation contrast prompts), the study task's validation split (strict EM). The
# headline metric names are the test set's (harmful_refusal, over_refusal_rate, task_exact_match).
STUDY_VAL_SUITES = (
    SuiteSpec("val_harmbench", PROMPT_FILE, f"{STUDY_TASK_DIR}/val_harmbench.jsonl", "base", "harmful"),
    SuiteSpec("val_hh_redteam", PROMPT_FILE, f"{STUDY_TASK_DIR}/val_hh_redteam.jsonl", "base", "harmful"),
    SuiteSpec("val_safe", PROMPT_FILE, f"{STUDY_TASK_DIR}/val_safe.jsonl", "base", "over_refusal"),
    SuiteSpec(
        "task_val", "gsm8k", f"{STUDY_TASK_DIR}/task_val.jsonl", "base", "capability", category_field="grade"
    ),
)

# Suite sets by name (``suites:`` of a compare config). "benchmarks" has no fixed suites: they
# come from a ``benchmarks:`` list or ``dualselect eval --benchmark``.
SUITE_SETS = {
    s.name: s
    for s in (
        SuiteSet("organism", ORGANISM_SUITES, ("ground_truth", "keyword"), "head", correct=False),
        # the refusal judges that run offline
        SuiteSet(
            "realbase", REAL_SUITES, ("keyword", "xstest_strmatch", "refusal_rules"), "random", correct=True
        ),
        SuiteSet(
            "real_study",
            STUDY_SUITES,
            ("refusal_rules", "keyword", "xstest_strmatch"),
            "random",
            correct=True,
        ),
        SuiteSet(
            "real_study_val",
            STUDY_VAL_SUITES,
            ("refusal_rules", "keyword", "xstest_strmatch"),
            "random",
            correct=True,
            validation=True,
        ),
        SuiteSet("benchmarks", (), ("keyword", "refusal_rules"), "random", correct=True),
    )
}
