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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualselect.evaluation.items import KINDS
from dualselect.evaluation.suites.registry import REGISTRY

SPEC_KEYS = ("name", "benchmark", "path", "limit", "max_new_tokens", "include_copyright", "kinds")


@dataclass
class BenchmarkSpec:
    """One evaluation set of a comparison (one ``benchmarks:`` entry).

    ``name``: the suite name in every table and file (the YAML key); ``benchmark``: the loader in
    :data:`dualselect.evaluation.suites.registry.REGISTRY` (default: ``name``); ``path``: a local file
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
        return REGISTRY[str(self.benchmark)].kind

    def suite_kinds(self) -> dict[str, str]:
        """Suite name -> item kind, as :meth:`load` names them (known before loading)."""
        kinds = self.kinds or [self.main_kind]
        return {(self.name if k == self.main_kind else f"{self.name}_unsafe"): k for k in kinds}

    def load(self, seed: int = 0, *, every_kind: bool = False, key: str | None = None) -> dict[str, list]:
        """The suites of this entry (``EvalItem`` lists), each in file order. Any loading problem
        (a missing field, a file in another format, a dataset not in the offline cache) is a
        one-line ValueError naming the entry (``key``, default ``benchmarks.<name>``); a kept kind
        with no items is an error too. ``every_kind``: every kind the file holds, named as
        :meth:`suite_kinds` names them (``dualselect eval --benchmark``), instead of ``kinds``."""
        key = key or f"benchmarks.{self.name}"
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
            raise ValueError(f"{key}: {msg}") from None
        b = str(self.benchmark)
        if every_kind:
            return {(self.name if s == b else self.name + s.removeprefix(b)): v for s, v in loaded.items()}
        suites = {}
        for sname, kind in self.suite_kinds().items():
            src = b if kind == self.main_kind else f"{b}_unsafe"
            items = loaded.get(src, [])
            if not items:
                raise ValueError(f"{key}: no {kind} items in {self.path or b}")
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
