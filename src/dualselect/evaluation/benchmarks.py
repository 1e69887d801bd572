"""Benchmarks as data (lm-eval style): name, source, fields, kind. Loaders read the published
formats from an HF hub id (users with internet) or a local path (file or ``save_to_disk`` dir).
Plus the prompt-disjointness check between a reference pool and every evaluation set."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from dualselect.evaluation.harness import EvalItem


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # harmful | benign | over_refusal | capability
    hub_id: str | None
    split: str
    prompt_field: str
    config: str | None = None
    gold_field: str | None = None
    category_field: str | None = None
    labels: tuple[str, ...] = ()  # classification label words, by label index
    note: str = ""
    extra: dict = field(default_factory=dict)


REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "hh_rlhf",
            "harmful",
            "Anthropic/hh-rlhf",
            "test",
            "chosen",
            extra={"data_dir": "harmless-base"},
            note="harmless-base test prompts = first human turn; chosen responses can be a reference pool",
        ),
        Benchmark(
            "hex_phi",
            "harmful",
            None,
            "train",
            "prompt",
            category_field="category",
            note="gated licence: give a local path (one CSV per category, one prompt per line, no header)",
        ),
        Benchmark("advbench", "harmful", "walledai/AdvBench", "train", "goal", gold_field="target"),
        Benchmark(
            "harmbench",
            "harmful",
            "walledai/HarmBench",
            "train",
            "Behavior",
            category_field="SemanticCategory",
        ),
        Benchmark(
            "strongreject",
            "harmful",
            "walledai/StrongREJECT",
            "train",
            "forbidden_prompt",
            category_field="category",
        ),
        Benchmark(
            "beavertails",
            "harmful",
            "PKU-Alignment/BeaverTails",
            "30k_test",
            "prompt",
            category_field="category",
        ),
        Benchmark("xstest", "over_refusal", "walledai/XSTest", "test", "prompt", category_field="type"),
        Benchmark(
            "gsm8k", "capability", "openai/gsm8k", "test", "question", config="main", gold_field="answer"
        ),
        Benchmark("slimorca", "benign", "Open-Orca/SlimOrca", "train", "conversations"),
        Benchmark(
            "sst2",
            "capability",
            "stanfordnlp/sst2",
            "validation",
            "sentence",
            gold_field="label",
            labels=("negative", "positive"),
        ),
        Benchmark(
            "ag_news",
            "capability",
            "fancyzhx/ag_news",
            "test",
            "text",
            gold_field="label",
            labels=("World", "Sports", "Business", "Sci/Tech"),
        ),
    ]
}


def _rows_from_path(path: Path) -> list[dict]:
    if path.is_dir():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[next(iter(ds))]
        return list(ds)
    if path.suffix == ".jsonl":
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else next(v for v in data.values() if isinstance(v, list))
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise ValueError(f"{path}: unsupported benchmark file (jsonl, json, csv, parquet or a dataset directory)")


def _hex_phi(path: Path) -> list[dict]:
    """HEx-PHI: one CSV per category (e.g. category_1.csv), one prompt per line, no header."""
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    rows = []
    for f in files:
        cat = f.stem
        for rec in csv.reader(io.StringIO(f.read_text(encoding="utf-8"))):
            if rec and rec[0].strip():
                rows.append({"prompt": rec[0].strip(), "category": cat})
    return rows


def _first_human_turn(transcript: str) -> str:
    m = re.search(r"Human:(.*?)(?:\n\nAssistant:|$)", transcript, re.DOTALL)
    return m.group(1).strip() if m else transcript.strip()


def load_benchmark(name: str, path: str | None = None, limit: int | None = None) -> list[EvalItem]:
    """Load ``name`` from ``path`` (local) or its hub id, as :class:`EvalItem` records."""
    if name not in REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(REGISTRY)}")
    b = REGISTRY[name]
    if path is not None:
        rows = _hex_phi(Path(path)) if name == "hex_phi" else _rows_from_path(Path(path))
    elif b.hub_id is None:
        raise ValueError(f"{name}: {b.note}")
    else:
        import datasets

        kw = dict(b.extra)
        rows = list(datasets.load_dataset(b.hub_id, b.config, split=b.split, **kw))
    items = []
    for i, r in enumerate(rows[:limit] if limit else rows):
        if name == "hh_rlhf":
            prompt, gold = _first_human_turn(r["chosen"]), None
        elif name == "slimorca":
            conv = r["conversations"]
            prompt = next(t["value"] for t in conv if t["from"] == "human")
            gold = next((t["value"] for t in conv if t["from"] == "gpt"), None)
        else:
            if b.prompt_field not in r:
                raise ValueError(f"{name} record {i}: missing field {b.prompt_field!r} (fields: {sorted(r)})")
            prompt = r[b.prompt_field]
            gold = r.get(b.gold_field) if b.gold_field else None
            if name == "gsm8k" and gold:
                gold = gold.split("####")[-1].strip().replace(",", "")
            if b.labels and gold is not None:
                gold = b.labels[int(gold)]
        cat = r.get(b.category_field) if b.category_field else None
        if isinstance(cat, dict):  # BeaverTails: {category: bool}
            cat = ",".join(k for k, v in cat.items() if v) or "none"
        meta = {k: v for k, v in r.items() if isinstance(v, (str, int, float, bool)) and k != b.prompt_field}
        if b.labels:
            meta["label_words"] = list(b.labels)
        if name == "xstest":
            label = r.get("label") or r.get("final_label")
            meta["is_harmful"] = label == "unsafe"
        items.append(
            EvalItem(id=f"{name}:{i}", prompt=prompt, kind=b.kind, category=cat, gold=gold, meta=meta)
        )
    return items


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
