"""The one place that names evaluation suites, and turns a name into items.

The suites are data (:mod:`~dualselect.evaluation.suites.tables`): the organism's probes, the real
base's held-out suites, and any list of registered benchmarks
(:mod:`~dualselect.evaluation.suites.registry`, :mod:`~dualselect.evaluation.suites.benchmark_list`).
``dualselect eval``, ``dualselect compare`` and the real base's recipe all resolve them here:

* :func:`default_suite_set`: which suite set a model is scored on when none is named (the
  per-base default: a ``benchmarks`` list when given, else the organism's probes for an organism,
  else the held-out suites of a real base);
* :func:`resolve_suites`: the items of a suite set (``EvalItem`` lists by suite name; ``realbase``
  and the real-model study's ``real_study`` read a built real base);
* :func:`organism_suites`, :func:`real_suites`, :func:`load_benchmark_suites`: the same per set.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dualselect.evaluation.items import EvalItem
from dualselect.evaluation.suites.benchmark_list import (
    BenchmarkSpec,
    load_benchmark_suites,
    parse_benchmarks,
    suite_kinds,
)
from dualselect.evaluation.suites.registry import REGISTRY, Benchmark
from dualselect.evaluation.suites.tables import (
    HARMFUL_REAL_SUITES,
    ORGANISM_PROBE,
    ORGANISM_SUITES,
    PROMPT_FILE,
    REAL_SUITE_NAMES,
    REAL_SUITES,
    STUDY_SUITES,
    STUDY_VAL_SUITES,
    SUITE_SETS,
    SuiteSet,
    SuiteSpec,
)

__all__ = [
    "HARMFUL_REAL_SUITES",
    "ORGANISM_SUITES",
    "REAL_SUITES",
    "REAL_SUITE_NAMES",
    "REGISTRY",
    "STUDY_SUITES",
    "STUDY_VAL_SUITES",
    "SUITE_SETS",
    "Benchmark",
    "BenchmarkSpec",
    "SuiteSet",
    "SuiteSpec",
    "cli_benchmark_suites",
    "default_suite_set",
    "is_organism",
    "limits_for",
    "load_benchmark_suites",
    "organism_suites",
    "parse_benchmarks",
    "real_suites",
    "realbase_root",
    "resolve_suites",
    "suite_kinds",
    "suite_set",
]


def suite_set(name: str) -> SuiteSet:
    """The suite set ``name``; an unknown name is a one-line ValueError naming it."""
    if name not in SUITE_SETS:
        raise ValueError(f"unknown suite set {name!r}; choose from {sorted(SUITE_SETS)}")
    return SUITE_SETS[name]


def is_organism(path: str | Path) -> bool:
    """Whether ``path`` is an organism directory (it holds the organism's probe splits)."""
    return str(path) == "organism" or all((Path(path) / s.file).exists() for s in ORGANISM_SUITES)


def realbase_root(model_path: str | Path) -> Path | None:
    """The built real base directory behind a model path (its ``model/`` or the directory itself),
    or None when the path is not a real base built by ``dualselect base build``."""
    root = _base_dir(model_path)
    return root if (root / "realbase.json").exists() else None


def _base_dir(path: str | Path) -> Path:
    """A real base's directory from itself or its ``model/`` subfolder."""
    path = Path(path)
    return path.parent if path.name == "model" else path


def default_suite_set(model_path: str | Path, has_benchmarks: bool = False) -> str | None:
    """The suite set a model is scored on when none is named: ``benchmarks`` when a benchmark list
    is given, ``organism`` for the organism (its name or a directory with its probes),
    ``realbase`` for a real base directory (or its ``model/``), else None (the caller asks for a
    benchmark list)."""
    if has_benchmarks:
        return "benchmarks"
    if is_organism(model_path):
        return "organism"
    if realbase_root(model_path) is not None:
        return "realbase"
    return None


def _spec_items(spec: SuiteSpec, roots: dict[str, Path], splits: dict | None) -> list[EvalItem]:
    """The items of one suite spec, in file order."""
    from dualselect.evaluation.benchmarks import load_benchmark

    path = roots[spec.root] / spec.file
    if spec.root == "base" and not path.exists():
        raise ValueError(f"suite {spec.name}: {path} not found" + _MISSING_BASE_FILE.get(spec.file, ""))
    if spec.loader == ORGANISM_PROBE:
        from dualselect.utils import read_jsonl

        return [
            EvalItem(
                id=f"{spec.name}:{i}",
                prompt=r["prompt"],
                kind=spec.kind,
                category=r.get("category"),
                gold=r["answer"] if spec.kind == "capability" else r["response"],
                meta=r,
            )
            for i, r in enumerate(read_jsonl(path))
        ]
    if spec.loader == PROMPT_FILE:
        return _prompt_file_items(spec, path)
    items = load_benchmark(spec.loader, str(path))
    if spec.item_kind is not None:
        items = [it for it in items if it.kind == spec.item_kind]
    for key, value in spec.where.items():
        items = [it for it in items if it.meta.get(key) == value]
    if spec.category_field is not None:
        for it in items:
            if it.meta.get(spec.category_field) is None:
                raise ValueError(f"suite {spec.name}: {path}: item {it.id} has no {spec.category_field!r}")
            it.category = str(it.meta[spec.category_field])
    if spec.held_out is not None:
        if splits is None:
            raise ValueError(f"suite {spec.name}: needs a real base's data/splits.json")
        keep = set(splits["eval"][spec.held_out])
        items = [it for it in items if it.prompt in keep]
    return items


def _prompt_file_items(spec: SuiteSpec, path: Path) -> list[EvalItem]:
    """The items of a project-written prompt file (JSONL rows with ``prompt`` and optional ``id``
    and ``category``), of the suite's kind; a bad row is a one-line error naming file and line."""
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"suite {spec.name}: {path}:{n}: not a JSON object ({e.msg})") from None
            if not isinstance(r, dict) or not isinstance(r.get("prompt"), str) or not r["prompt"].strip():
                raise ValueError(f"suite {spec.name}: {path}:{n}: needs a non-empty 'prompt' string")
            iid = f"{spec.name}:{r.get('id', len(items))}"
            cat = r.get("category")
            items.append(
                EvalItem(
                    id=iid,
                    prompt=r["prompt"],
                    kind=spec.kind,
                    category=None if cat is None else str(cat),
                    meta=r,
                )
            )
    return items


# what writes a real base's file when it is missing (appended to the one-line error)
_MISSING_BASE_FILE = {
    s.file: (
        "; the study task's files are written by "
        "dualselect.experiments.real_data.build_study_data(<base>, task='gsm8k_final_step') "
        "(dualselect compare with suites: real_study writes them before the first run)"
    )
    for s in STUDY_SUITES + STUDY_VAL_SUITES
    if s.root == "base"
}


def _subset(suites: dict[str, list[EvalItem]], limits: dict[str, int] | None, how: str, seed: int) -> None:
    """Cut suites in place to ``limits`` (suite -> count): the first N (``head``) or a fixed-seed
    random N kept in file order (``random``; the same subset for every model and seed)."""
    for name, n in (limits or {}).items():
        if name not in suites:
            raise ValueError(f"limits: unknown suite {name!r}; suites: {sorted(suites)}")
        if how == "head":
            suites[name] = suites[name][:n]
        elif n < len(suites[name]):
            rng = random.Random(f"{seed}:{name}")
            keep = sorted(rng.sample(range(len(suites[name])), n))
            suites[name] = [suites[name][i] for i in keep]


def organism_suites(organism: str | Path, limits: dict[str, int] | None = None) -> dict[str, list[EvalItem]]:
    """The organism's held-out probe sets as evaluation suites, with ground truth in ``meta``;
    ``limits``: the first N of a suite."""
    roots = {"organism": Path(organism)}
    suites = {s.name: _spec_items(s, roots, None) for s in ORGANISM_SUITES}
    _subset(suites, limits, "head", 0)
    return suites


def real_suites(
    realbase: str | Path,
    limits: dict[str, int] | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    specs: tuple[SuiteSpec, ...] = REAL_SUITES,
) -> dict[str, list[EvalItem]]:
    """The held-out suites of the built real base at ``realbase`` (its directory or its
    ``model/``): the benchmark files from the folder its ``realbase.json`` records (or
    ``data_dir``, for a base whose build has not written it yet), its splits from ``data/``.
    ``limits``: a fixed-seed random subset per suite (same subset for every model and seed).
    ``specs``: the suites (default the ``realbase`` set's; the study's: :data:`STUDY_SUITES`)."""
    root = _base_dir(realbase)
    meta = root / "realbase.json"
    if meta.exists():
        data_dir = json.loads(meta.read_text())["data_dir"]
    elif data_dir is None:
        raise ValueError(f"{meta}: not found (not a real base built by `dualselect base build`)")
    splits = json.loads((root / "data" / "splits.json").read_text())
    roots = {"data": Path(data_dir), "base": root}
    suites = {s.name: _spec_items(s, roots, splits) for s in specs}
    _subset(suites, limits, "random", seed)
    return suites


def cli_benchmark_suites(
    entries: list[str], limit: int | None = None, seed: int = 0, include_copyright: bool = False
) -> dict[str, list[EvalItem]]:
    """``dualselect eval --benchmark NAME[=PATH]`` entries as suites: every kind each file holds
    (XSTest: ``xstest`` and ``xstest_unsafe``), ``limit`` a fixed-seed random subset per suite.
    Problems are one-line ValueErrors naming the ``--benchmark`` entry."""
    suites: dict[str, list[EvalItem]] = {}
    for entry in entries:
        name, _, path = entry.partition("=")
        key = f"--benchmark {name}"
        try:
            spec = BenchmarkSpec(name, path=path or None, limit=limit, include_copyright=include_copyright)
        except ValueError as e:
            raise ValueError(str(e).replace(f"benchmarks.{name}", key, 1)) from None
        suites.update(spec.load(seed, every_kind=True, key=key))
    return suites


def resolve_suites(
    name: str,
    model_path: str | Path,
    *,
    benchmarks: dict[str, BenchmarkSpec] | None = None,
    limits: dict[str, int] | None = None,
    seed: int = 0,
) -> dict[str, list[EvalItem]]:
    """The items of suite set ``name`` for the model at ``model_path``: ``organism`` (its probes),
    ``realbase`` (the real base's held-out suites), ``real_study`` (the real-model study's: the
    same in full plus XSTest's unsafe prompts and the study task's test split) or ``benchmarks``
    (the ``benchmarks`` specs); ``limits``: suite -> count, subset as the set says."""
    spec = suite_set(name)
    if spec.name == "benchmarks":
        if not benchmarks:
            raise ValueError("suites: benchmarks needs a benchmarks list")
        return load_benchmark_suites(benchmarks, seed=seed)
    if spec.on_real_base:
        root = realbase_root(model_path)
        if root is None:
            raise ValueError(
                f"suites: {spec.name} needs a real base model (e.g. smollm2-135m-safe); got {model_path}"
            )
        return real_suites(root, limits, seed=seed, specs=spec.suites)
    return organism_suites(model_path, limits)


def limits_for(name: str, limit: int | None) -> dict[str, int] | None:
    """One ``--limit`` for every fixed suite of set ``name`` (None: no limit)."""
    return {s.name: limit for s in suite_set(name).suites} if limit else None
