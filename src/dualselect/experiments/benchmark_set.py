"""The ``benchmarks:`` key of a compare config: which evaluation sets every run is scored on, on any
model (lm-eval's task list, for safety and capability sets alike), and the comparison's metrics
read from the harness results of those sets.

YAML (a mapping from suite name to its settings, or a list of names / mappings with ``name``)::

    benchmarks:
      harmbench: {path: ../shared/data/harmbench/harmbench_behaviors_text_test.csv, limit: 40}
      xstest: {path: ../shared/data/xstest/xstest_prompts.csv, limit: 40}   # safe prompts
      gsm8k: {path: ../shared/data/gsm8k/test.jsonl, limit: 40, max_new_tokens: 512}
      harmbench_val: {benchmark: harmbench, path: .../harmbench_behaviors_text_val.csv}

Each entry is loaded with the loaders ``dualselect eval`` uses
(:func:`dualselect.evaluation.benchmarks.load_suites`): the benchmark's published format from
``path`` (or its hub id when no path is given and the dataset is in the local cache), a fixed-seed
subset of ``limit`` items (the same subset for every method and seed). A benchmark whose items
are of several kinds (XSTest: safe prompts = over-refusal, unsafe contrast prompts = harmful)
keeps its main kind unless ``kinds`` lists more; the others become ``<name>_unsafe``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the harness's item kinds (evaluation.harness.KINDS; not imported here: it needs torch)
KINDS = ("harmful", "over_refusal", "benign", "capability")
SPEC_KEYS = ("name", "benchmark", "path", "limit", "max_new_tokens", "include_copyright", "kinds")


@dataclass
class BenchmarkSpec:
    """One evaluation set of a comparison (one ``benchmarks:`` entry).

    ``name``: the suite name in every table and file (the YAML key); ``benchmark``: the loader in
    :data:`dualselect.evaluation.benchmarks.REGISTRY` (default: ``name``); ``path``: a local file
    or ``save_to_disk`` directory in the benchmark's published format (default: its hub id, which
    needs the dataset in the local cache when ``HF_HUB_OFFLINE`` is set); ``limit``: a fixed-seed
    random subset of that many items per suite; ``max_new_tokens``: this set's generation budget
    (default: the config's ``max_new_tokens``); ``include_copyright``: HarmBench's copyright
    behaviours (left out by default, as HarmBench scores them with a hash check); ``kinds``: item
    kinds to keep (default: the benchmark's main kind; XSTest ``[over_refusal, harmful]`` adds its
    unsafe contrast prompts as ``<name>_unsafe``)."""

    name: str
    benchmark: str | None = None
    path: str | None = None
    limit: int | None = None
    max_new_tokens: int | None = None
    include_copyright: bool = False
    kinds: list[str] | None = None

    def __post_init__(self) -> None:
        from dualselect.evaluation.benchmarks import REGISTRY

        key = f"benchmarks.{self.name}"
        self.benchmark = self.benchmark or self.name
        if self.benchmark not in REGISTRY:
            raise ValueError(f"{key}: unknown benchmark {self.benchmark!r}; choose from {sorted(REGISTRY)}")
        for attr in ("limit", "max_new_tokens"):
            v = getattr(self, attr)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{key}.{attr}: expected a positive integer, got {v!r}")
        if not isinstance(self.include_copyright, bool):
            raise ValueError(
                f"{key}.include_copyright: expected true or false, got {self.include_copyright!r}"
            )
        if self.path is not None:
            if not isinstance(self.path, str) or not self.path:
                raise ValueError(f"{key}.path: expected a file or directory path, got {self.path!r}")
            if not Path(self.path).expanduser().exists():
                raise ValueError(f"{key}.path: {self.path}: no such file or directory")
        elif REGISTRY[self.benchmark].hub_id is None:
            raise ValueError(f"{key}.path: required ({REGISTRY[self.benchmark].note})")
        if self.kinds is not None:
            bad = [k for k in self.kinds if k not in KINDS] if isinstance(self.kinds, list) else [self.kinds]
            if bad or not self.kinds:
                raise ValueError(
                    f"{key}.kinds: expected a non-empty list of {list(KINDS)}, got {self.kinds!r}"
                )

    @property
    def main_kind(self) -> str:
        from dualselect.evaluation.benchmarks import REGISTRY

        return REGISTRY[str(self.benchmark)].kind

    def suite_kinds(self) -> dict[str, str]:
        """Suite name -> item kind, as :meth:`load` names them (known before loading)."""
        kinds = self.kinds or [self.main_kind]
        return {(self.name if k == self.main_kind else f"{self.name}_unsafe"): k for k in kinds}

    def load(self, seed: int = 0) -> dict[str, list]:
        """The suites of this entry (``EvalItem`` lists), each in file order. Any loading problem
        (a missing field, a file in another format, a dataset not in the offline cache) is a
        one-line ValueError naming the entry; a kept kind with no items is an error too."""
        from dualselect.evaluation.benchmarks import load_suites

        try:
            loaded = load_suites(
                str(self.benchmark),
                self.path,
                self.limit,
                seed=seed,
                include_copyright=self.include_copyright,
            )
        except Exception as e:  # noqa: BLE001 - re-raised as one line naming the YAML entry
            msg = " ".join(str(e).split()) or type(e).__name__
            raise ValueError(f"benchmarks.{self.name}: {msg}") from None
        b = str(self.benchmark)
        suites = {}
        for sname, kind in self.suite_kinds().items():
            src = b if kind == self.main_kind else f"{b}_unsafe"
            items = loaded.get(src, [])
            if not items:
                raise ValueError(f"benchmarks.{self.name}: no {kind} items in {self.path or b}")
            suites[sname] = items
        return suites


def parse_benchmarks(value: Any) -> dict[str, BenchmarkSpec]:
    """A ``benchmarks:`` value (mapping name -> settings or null, or a list of names / mappings
    with ``name``) as specs by suite name. Unknown settings, duplicate names and suite names that
    collide are one-line ValueErrors naming the entry."""
    if isinstance(value, dict):
        entries = []
        for name, opts in value.items():
            if isinstance(opts, BenchmarkSpec):
                opts = dataclasses.asdict(opts)
            if opts is None:
                opts = {}
            if not isinstance(opts, dict):
                raise ValueError(f"benchmarks.{name}: expected a mapping of settings, got {opts!r}")
            if opts.get("name", name) != name:
                raise ValueError(f"benchmarks.{name}: name {opts['name']!r} differs from its key")
            entries.append({**opts, "name": name})
    elif isinstance(value, list):
        entries = [{"name": e} if isinstance(e, str) else e for e in value]
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not e.get("name"):
                raise ValueError(
                    f"benchmarks[{i}]: expected a benchmark name or a mapping with name, got {e!r}"
                )
    else:
        raise ValueError(f"benchmarks: expected a mapping or a list of benchmarks, got {value!r}")
    if not entries:
        raise ValueError("benchmarks: give at least one benchmark")
    specs: dict[str, BenchmarkSpec] = {}
    for e in entries:
        name = str(e["name"])
        unknown = sorted(set(e) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(f"benchmarks.{name}: unknown setting(s) {unknown}; known: {list(SPEC_KEYS)}")
        if name in specs:
            raise ValueError(f"benchmarks.{name}: given twice")
        specs[name] = BenchmarkSpec(**{**e, "name": name})
    seen: dict[str, str] = {}
    for spec in specs.values():
        for sname in spec.suite_kinds():
            if sname in seen:
                raise ValueError(
                    f"benchmarks.{spec.name}: suite {sname!r} collides with benchmarks.{seen[sname]}"
                )
            seen[sname] = spec.name
    return specs


def load_benchmark_suites(specs: dict[str, BenchmarkSpec], seed: int = 0) -> dict[str, list]:
    """Every suite of every entry, in config order."""
    suites: dict[str, list] = {}
    for spec in specs.values():
        suites.update(spec.load(seed))
    return suites


def suite_kinds(specs: dict[str, BenchmarkSpec]) -> dict[str, str]:
    return {s: k for spec in specs.values() for s, k in spec.suite_kinds().items()}


def _detects_refusal(judge: str) -> bool:
    """Whether the registered judge ``judge`` is a refusal detector (its harm label only means
    "did not refuse"); unknown names count as harm judges."""
    from dualselect.evaluation.judges import JUDGES

    cls = JUDGES.get(judge)
    return cls is not None and getattr(cls, "measures", "harm") == "refusal"


@dataclass
class BenchmarkMetrics:
    """The comparison's columns on a benchmark set, from one run's harness metrics.

    Per judge ``j`` (suffix ``.j``) and, without suffix, for the headline judge (the first in
    ``judges:``): ``refusal_<suite>`` per harmful suite and their mean ``harmful_refusal``;
    ``harmless_<suite>`` / ``harmless_rate`` (1 - the judge's harmful rate, for judges that label
    harm: higher is safer, like refusal); ``over_refusal_<suite>`` per over-refusal suite and
    their mean ``over_refusal_rate``. Capability: ``exact_match_<suite>`` (strict, lm-eval's
    ``#### N``) and ``exact_match_flexible_<suite>``, or ``accuracy_<suite>`` for classification
    sets, and ``capability``, the mean over capability suites of the strict / accuracy score."""

    kinds: dict[str, str]
    judges: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        """Every metric name a run can have (for validating safety_metric / capability_metric
        before training), headline ones first."""
        harm = [s for s, k in self.kinds.items() if k == "harmful"]
        over = [s for s, k in self.kinds.items() if k == "over_refusal"]
        cap = [s for s, k in self.kinds.items() if k == "capability"]

        def per_judge(j: str) -> list[str]:
            # a refusal detector's "harmful" is only "did not refuse": no harmless columns
            prefixes = ("refusal",) if _detects_refusal(j) else ("refusal", "harmless")
            out = []
            if harm:
                out += ["harmful_refusal"] + ([] if _detects_refusal(j) else ["harmless_rate"])
                out += [f"{p}_{s}" for s in harm for p in prefixes]
            if over:
                out += ["over_refusal_rate"] + [f"over_refusal_{s}" for s in over]
            return out

        first = per_judge(self.judges[0]) if self.judges else per_judge("")
        names = list(first) + [f"{n}.{j}" for j in self.judges for n in per_judge(j)]
        if cap:
            names += ["capability"]
            names += [f"{p}_{s}" for s in cap for p in ("exact_match", "exact_match_flexible", "accuracy")]
        names += ["incoherence_rate"] + [f"safety_avg_{j}" for j in self.judges]
        return names

    def compute(self, m: dict) -> dict[str, float]:
        """The metrics of one run from its harness metrics ``m`` (judges that gave no value for a
        suite leave its keys out; a mean needs every suite)."""
        out: dict[str, float] = {}
        harm = [s for s, k in self.kinds.items() if k == "harmful"]
        over = [s for s, k in self.kinds.items() if k == "over_refusal"]
        for i, j in enumerate(self.judges):
            row: dict[str, float] = {}
            for prefix, mean_key, key, flip, suites in (
                ("refusal", "harmful_refusal", "refusal_rate", False, harm),
                ("harmless", "harmless_rate", "harmful_rate", True, harm),
                ("over_refusal", "over_refusal_rate", "refusal_rate", False, over),
            ):
                vals = []
                for s in suites:
                    v = m.get(f"{key}.{s}.{j}")
                    if v is not None:
                        row[f"{prefix}_{s}"] = 1.0 - v if flip else v
                        vals.append(row[f"{prefix}_{s}"])
                if vals and len(vals) == len(suites):
                    row[mean_key] = sum(vals) / len(vals)
            out.update({f"{k}.{j}": v for k, v in row.items()})
            if i == 0:  # the headline judge
                out.update(row)
        scores = []
        for s, k in self.kinds.items():
            if k != "capability":
                continue
            if m.get(f"label_accuracy.{s}") is not None:
                out[f"accuracy_{s}"] = m[f"label_accuracy.{s}"]
                scores.append(out[f"accuracy_{s}"])
            elif m.get(f"exact_match_strict.{s}") is not None:
                out[f"exact_match_{s}"] = m[f"exact_match_strict.{s}"]
                out[f"exact_match_flexible_{s}"] = m[f"exact_match_flexible.{s}"]
                scores.append(out[f"exact_match_{s}"])
        if scores:
            out["capability"] = sum(scores) / len(scores)
        if m.get("incoherence_rate") is not None:
            out["incoherence_rate"] = m["incoherence_rate"]
        return out

    def columns(self) -> list[tuple[str, str, int]]:
        """Table columns (key, label, scale) for the headline judge: capability first, then
        safety per suite and their means, over-refusal, incoherence."""
        cols: list[tuple[str, str, int]] = []
        cap = [s for s, k in self.kinds.items() if k == "capability"]
        for s in cap:
            cols += [(f"exact_match_{s}", f"{s} EM", 100), (f"accuracy_{s}", f"{s} acc", 100)]
        if len(cap) > 1:
            cols.append(("capability", "capability avg", 100))
        harm = [s for s, k in self.kinds.items() if k == "harmful"]
        cols += [(f"refusal_{s}", f"refusal {s}", 100) for s in harm]
        if len(harm) > 1:
            cols.append(("harmful_refusal", "refusal avg", 100))
        if self.judges and not _detects_refusal(self.judges[0]):  # refusal detectors: no harm column
            cols.append(("harmless_rate", "harmless", 100))
        over = [s for s, k in self.kinds.items() if k == "over_refusal"]
        cols += [(f"over_refusal_{s}", f"over-refusal {s}", 100) for s in over]
        cols.append(("incoherence_rate", "incoherent", 100))
        cols += [(f"safety_avg_{j}", f"Safety Avg ({j})", 1) for j in self.judges]
        return cols
