"""Variant names as file names: every variant's files share ``OUT/generations/``.

A variant ``NAME`` writes ``NAME.jsonl`` (generations), ``NAME.verdicts.jsonl`` (per-item verdicts)
and ``NAME.pairwise.<judge>.jsonl`` (pairwise verdicts). A name with a dot-separated part
``verdicts`` or ``pairwise`` (``sft.verdicts``) would write over another variant's files, so such
names are refused before any model loads. Kept free of heavy imports (the command line checks
names before importing torch).
"""

from __future__ import annotations

from collections.abc import Iterable

# the parts after NAME in the file names a variant writes (see the module docstring)
RESERVED_NAME_PARTS = ("verdicts", "pairwise")


def variant_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a variant name (its files would clash with another's), or None."""
    parts = name.split(".")[1:]
    clash = [p for p in parts if p.lower() in RESERVED_NAME_PARTS]
    if clash:
        return (
            f"variant name {name!r}: a '.{clash[0]}' part would write over the files of variant "
            f"{name.split('.')[0]!r} (generations/<name>.{clash[0]}...); choose another name"
        )
    return None


def check_variant_names(names: Iterable[str]) -> None:
    """Raise ``ValueError`` for the first name that :func:`variant_name_problem` refuses."""
    for name in names:
        problem = variant_name_problem(name.partition("@")[0])
        if problem:
            raise ValueError(problem)
