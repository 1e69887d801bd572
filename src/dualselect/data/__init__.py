"""Data layer: records from files/datasets in the common schemas, and their encoding.

Names load on first use (``records`` needs no torch; ``encoding`` does), so reading a record file
or a file name from here imports no tensor library."""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "collate": "encoding",
    "encode_record": "encoding",
    "encode_records": "encoding",
    "format_prompt": "encoding",
    "length_bucketed_order": "encoding",
    "DataError": "records",
    "LoadResult": "records",
    "Record": "records",
    "SkipReport": "records",
    "load_records": "records",
}
__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'dualselect.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dualselect.data.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value
