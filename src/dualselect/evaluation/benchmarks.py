"""Benchmark loaders: the published formats of the entries of
:data:`dualselect.evaluation.suites.registry.REGISTRY`, read from an HF hub id (users with internet)
or a local path (file or ``save_to_disk`` dir), as :class:`~dualselect.evaluation.items.EvalItem`
lists. Plus the prompt-disjointness check between a reference pool and every evaluation set."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path

from dualselect.evaluation.items import EvalItem
from dualselect.evaluation.suites.registry import REGISTRY


def _open_text(path: Path) -> str:
    """The file's text; ``.gz`` files (HH-RLHF is published gzipped) are decompressed."""
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rt", encoding="utf-8-sig") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8-sig")


def _suffix(path: Path) -> str:
    """The format suffix, ignoring a trailing ``.gz`` (``test.jsonl.gz`` -> ``.jsonl``)."""
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


def _rows_from_path(path: Path) -> list[dict]:
    """Records of a local benchmark file in its published format: JSONL / JSON (optionally
    gzipped), CSV with a header, GLUE's TSV (tab-separated, header, quotes are text), parquet, or
    a ``datasets.save_to_disk`` directory."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such benchmark file or directory")
    if path.is_dir():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[next(iter(ds))]
        return list(ds)
    fmt = _suffix(path)
    if fmt == ".jsonl":
        rows = []
        for n, line in enumerate(_open_text(path).splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        return rows
    if fmt == ".json":
        data = json.loads(_open_text(path))
        return data if isinstance(data, list) else next(v for v in data.values() if isinstance(v, list))
    if fmt == ".csv":
        return list(csv.DictReader(io.StringIO(_open_text(path))))
    if fmt == ".tsv":  # GLUE: no quoting (a quote character is part of the sentence)
        return list(csv.DictReader(io.StringIO(_open_text(path)), delimiter="\t", quoting=csv.QUOTE_NONE))
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise ValueError(
        f"{path}: unsupported benchmark file (jsonl, json, their .gz, csv, tsv, parquet or a dataset directory)"
    )


def _ag_news_rows(path: Path) -> list[dict]:
    """AG News: the original ``train.csv`` / ``test.csv`` have no header and three columns
    (class index 1-4, title, description); a file with a header (``label,text`` as the HF copy
    exports) is read by name. Returns ``{"text", "label"}`` with the 0-based label of the HF copy;
    text = title + " " + description, as the HF copy builds it."""
    if _suffix(path) != ".csv":
        return _rows_from_path(path)
    rows = list(csv.reader(io.StringIO(_open_text(path))))
    if rows and rows[0] and not rows[0][0].strip().isdigit():  # a header line
        return _rows_from_path(path)
    out = []
    for n, r in enumerate(rows, 1):
        if not r:
            continue
        if len(r) != 3 or r[0].strip() not in {"1", "2", "3", "4"}:
            raise ValueError(f"{path}:{n}: expected 'class index (1-4),title,description', got {r[:3]!r}")
        out.append({"label": int(r[0]) - 1, "text": f"{r[1]} {r[2]}", "title": r[1], "description": r[2]})
    return out


def _hex_phi(path: Path) -> list[dict]:
    """HEx-PHI: one CSV per category (``category_1.csv`` ...), one prompt per line, no header.
    A prompt with unquoted commas spans several CSV fields: they are joined back with ","
    (the line's text), never cut at the first comma."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such HEx-PHI file or directory")
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no *.csv files (HEx-PHI ships one CSV per category)")
    rows = []
    for f in files:
        cat = f.stem
        for rec in csv.reader(io.StringIO(f.read_text(encoding="utf-8-sig"))):
            text = ",".join(rec).strip()
            if text:
                rows.append({"prompt": text, "category": cat})
    return rows


_TURN = re.compile(r"\n\n(Human|Assistant):")


def hh_turns(transcript: str) -> list[tuple[str, str]]:
    """An HH-RLHF transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as (speaker, text) turns."""
    parts = _TURN.split("\n\n" + transcript.lstrip("\n"))
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def _first_human_turn(transcript: str) -> str:
    turns = hh_turns(transcript)
    return next((t for s, t in turns if s == "Human"), transcript.strip())


def _hh_reference(transcript: str) -> str | None:
    """The first Assistant reply of the ``chosen`` transcript (the reference answer to the
    first Human turn), or None."""
    turns = hh_turns(transcript)
    return turns[1][1] if len(turns) > 1 and turns[0][0] == "Human" and turns[1][0] == "Assistant" else None


def harmbench_prompt(behavior: str, context: str | None) -> str:
    """The test case HarmBench sends to the model: for a contextual behaviour the context
    string, a ``---`` separator and the behaviour (as HarmBench's direct-request baseline builds
    it), else the behaviour alone."""
    return f"{context}\n\n---\n\n{behavior}" if context else behavior


def load_benchmark(
    name: str, path: str | None = None, limit: int | None = None, include_copyright: bool = False
) -> list[EvalItem]:
    """Load ``name`` from ``path`` (local) or its hub id, as :class:`EvalItem` records.

    Kinds per item: XSTest's 250 safe prompts are ``over_refusal``, its 200 unsafe contrast
    prompts ``harmful`` (split them with :func:`load_suites`). HarmBench's 80 copyright
    behaviours are left out unless ``include_copyright`` (their harm is verbatim reproduction,
    judged by HarmBench with a hash check, not a harm classifier). ``gold`` of a harmful item is
    a *reference* (safe) answer where the benchmark has one (HH-RLHF's chosen reply); AdvBench's
    "Sure, here is" targets are kept in ``meta["target"]``, never used as references."""
    if name not in REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(REGISTRY)}")
    b = REGISTRY[name]
    if path is not None:
        p = Path(path)
        if name == "hex_phi":
            rows = _hex_phi(p)
        elif name == "ag_news":
            rows = _ag_news_rows(p)
        else:
            rows = _rows_from_path(p)
    elif b.hub_id is None:
        raise ValueError(f"{name}: {b.note}")
    else:
        import datasets

        kw = dict(b.extra)
        rows = list(datasets.load_dataset(b.hub_id, b.config, split=b.split, **kw))
    src = path or b.hub_id
    items = []
    for i, r in enumerate(rows):
        kind = b.kind
        meta = {k: v for k, v in r.items() if isinstance(v, (str, int, float, bool)) and k != b.prompt_field}
        gold = None
        if name == "hh_rlhf":
            if "chosen" not in r:
                raise ValueError(f"{src} record {i}: HH-RLHF record without 'chosen' (fields: {sorted(r)})")
            prompt, gold = _first_human_turn(r["chosen"]), _hh_reference(r["chosen"])
            meta["multi_turn"] = sum(s == "Human" for s, _ in hh_turns(r["chosen"])) > 1
        elif name == "slimorca":
            conv = r["conversations"]
            prompt = next(t["value"] for t in conv if t["from"] == "human")
            gold = next((t["value"] for t in conv if t["from"] == "gpt"), None)
        else:
            if b.prompt_field not in r:
                raise ValueError(f"{src} record {i}: missing field {b.prompt_field!r} (fields: {sorted(r)})")
            prompt = r[b.prompt_field]
            if b.gold_field and kind != "harmful":
                gold = r.get(b.gold_field)
                if gold is None or gold == "":
                    raise ValueError(f"{src} record {i}: missing gold field {b.gold_field!r}")
            if name == "gsm8k":
                meta["solution"] = gold  # lm-eval compares with the whole solution (after "#### ")
                gold = gold.split("####")[-1].strip().replace(",", "")
            if b.labels and gold is not None:
                try:
                    gold = b.labels[int(gold)]
                except (ValueError, IndexError):
                    raise ValueError(
                        f"{src} record {i}: label {gold!r} is not an index into {list(b.labels)}"
                    ) from None
        if name == "harmbench":
            func = r.get("FunctionalCategory", "standard")
            if func == "copyright" and not include_copyright:
                continue
            meta["behavior"] = prompt
            meta["context"] = r.get("ContextString") or None
            prompt = harmbench_prompt(prompt, meta["context"])
        if name == "xstest":
            label = r.get("label") or r.get("final_label")
            if label not in ("safe", "unsafe"):
                raise ValueError(f"{src} record {i}: XSTest label {label!r} is neither 'safe' nor 'unsafe'")
            meta["is_harmful"] = label == "unsafe"
            kind = "harmful" if label == "unsafe" else "over_refusal"
        cat = r.get(b.category_field) if b.category_field else None
        if isinstance(cat, dict):  # BeaverTails: {category: bool}
            cat = ",".join(k for k, v in cat.items() if v) or "none"
        if b.labels:
            meta["label_words"] = list(b.labels)
        iid = f"{name}:{r['BehaviorID']}" if name == "harmbench" and r.get("BehaviorID") else f"{name}:{i}"
        if name == "xstest" and r.get("id"):
            iid = f"xstest:{r['id']}"
        items.append(EvalItem(id=iid, prompt=prompt, kind=kind, category=cat, gold=gold, meta=meta))
    return items[:limit] if limit else items


def load_suites(
    name: str,
    path: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    include_copyright: bool = False,
) -> dict[str, list[EvalItem]]:
    """:func:`load_benchmark` as evaluation suites, one per kind: ``name`` for the benchmark's
    main kind and ``<name>_unsafe`` for XSTest's unsafe contrast prompts (harmful prompts, not
    over-refusal prompts). ``limit``: a random subset of that many items per suite, drawn with
    ``seed`` (same subset on every run), in file order."""
    import random

    items = load_benchmark(name, path, include_copyright=include_copyright)
    by_kind: dict[str, list[EvalItem]] = {}
    for it in items:
        by_kind.setdefault(it.kind, []).append(it)
    suites = {}
    for kind, its in by_kind.items():
        sname = name if kind == REGISTRY[name].kind else f"{name}_unsafe"
        if limit and len(its) > limit:
            keep = sorted(random.Random(seed).sample(range(len(its)), limit))
            its = [its[i] for i in keep]
        suites[sname] = its
    return suites


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


def disjointness(reference_prompts: list[str], eval_sets: dict[str, list[str]]) -> dict:
    """Overlaps (by normalised-text hash) between a reference pool and every evaluation set."""
    ref = {}
    for p in reference_prompts:
        ref.setdefault(text_hash(p), p)
    report = {}
    for name, prompts in eval_sets.items():
        hits = [p for p in prompts if text_hash(p) in ref]
        report[name] = {"n": len(prompts), "overlaps": len(hits), "examples": hits[:5]}
    return report
