"""Turning a data source into the encoded dataset a trainer consumes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dualselect.data.encoding import encode_records
from dualselect.data.records import Record, SkipReport, load_records
from dualselect.utils import note


class EncodedDataset(torch.utils.data.Dataset):
    """Encoded samples (``input_ids``, ``labels``, ``n_target_tokens``, ``index``) plus the
    records they came from, so logs can name the original record."""

    def __init__(self, examples: list[dict], records: list[Record] | None = None) -> None:
        self.examples = examples
        self.records = records

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]

    @property
    def lengths(self) -> list[int]:
        return [len(e["input_ids"]) for e in self.examples]

    @property
    def n_target_tokens(self) -> list[int]:
        return [int(e["n_target_tokens"]) for e in self.examples]


def model_max_positions(model) -> int | None:
    """The longest sequence ``model`` can take (``max_position_embeddings`` / ``n_positions``), or
    None when the config does not say (e.g. relative-position models)."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def build_dataset(
    source: Any,
    tokenizer,
    args,
    name: str = "task",
    *,
    split: str | None = None,
    formatting_func: Callable[[dict], str] | None = None,
    max_positions: int | None = None,
) -> tuple[EncodedDataset, SkipReport]:
    """Load (if needed), validate and encode ``source``: a path/hub name, a ``datasets.Dataset``,
    ``IterableDataset`` or ``DatasetDict`` (``split``, default ``args.train_split`` or "train"), or a
    list of :class:`Record`/dicts. Every skip is counted by reason and every change (truncation,
    ``formatting_func``) by kind; the summary is printed when anything was skipped or changed,
    and saved next to the run (``data_report_<name>.json``, with its notes).

    ``max_positions`` (the model's): ``max_length`` above it is lowered to it, noted in the report,
    and longer samples follow the truncation policy like any over-long sample."""
    if isinstance(source, EncodedDataset):
        return source, SkipReport(name=name, seen=len(source), kept=len(source))
    max_length = args.max_length
    lowered = None
    if max_positions is not None and max_length > max_positions:
        lowered = (
            f"max_length {max_length} > the model's {max_positions} positions: samples are limited "
            f"to {max_positions} tokens (truncation={args.truncation!r})"
        )
        max_length = max_positions
    loaded = load_records(
        source if not isinstance(source, os.PathLike) else str(source),
        split=split if split is not None else getattr(args, "train_split", None),
        skip_invalid=args.skip_invalid,
        name=name,
        text_field=getattr(args, "dataset_text_field", "text") or "text",
        formatting_func=formatting_func,
    )
    records = loaded.records
    examples, enc_report = encode_records(
        records,
        tokenizer,
        max_length=max_length,
        truncation=args.truncation,
        skip_invalid=args.skip_invalid,
        name=name,
        completion_only_loss=getattr(args, "completion_only_loss", None),
        assistant_only_loss=getattr(args, "assistant_only_loss", None),
    )
    report = loaded.report
    report.merge(enc_report)
    report.source = _describe(source)
    if lowered:
        report.notes.append(lowered)
    if report.n_skipped or report.transformed:
        note("; ".join([report.summary(), *report.notes]))
    if getattr(args, "output_dir", None):
        report.save(Path(args.output_dir) / f"data_report_{name}.json")
    if not examples:
        raise ValueError(f"{name}: no usable samples in {_describe(source)!r}: {report.summary()}")
    return EncodedDataset(examples, records), report


def _describe(source: Any) -> str:
    """A data source in one short string: a path or hub name, else the object's type (and, for a
    ``datasets`` object, its builder name when it has one)."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(getattr(source, "info", None), "dataset_name", None)
    return f"{type(source).__name__}({name})" if name else type(source).__name__


def build_eval_datasets(
    source: Any,
    tokenizer,
    args,
    *,
    formatting_func: Callable[[dict], str] | None = None,
    max_positions: int | None = None,
) -> tuple[EncodedDataset | dict[str, EncodedDataset], dict[str, SkipReport]]:
    """``eval_dataset`` takes what ``train_dataset`` takes (a path, a ``datasets.Dataset``, a list
    of dicts or :class:`Record`), encoded the same way; a ``DatasetDict`` gives its
    ``args.eval_split`` split (default "validation", else "test"); a plain ``dict`` of such
    sources gives several named evaluation sets, as with ``transformers.Trainer``."""
    import datasets

    split = getattr(args, "eval_split", None)
    if split is None and isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        split = next((s for s in ("validation", "test", "eval") if s in source), "validation")
    if isinstance(source, dict) and not isinstance(
        source, (datasets.DatasetDict, datasets.IterableDatasetDict)
    ):
        out, reports = {}, {}
        for key, sub in source.items():
            out[key], reports[f"eval_{key}"] = build_dataset(
                sub,
                tokenizer,
                args,
                name=f"eval_{key}",
                split=split,
                formatting_func=formatting_func,
                max_positions=max_positions,
            )
        return out, reports
    ds, report = build_dataset(
        source,
        tokenizer,
        args,
        name="eval",
        split=split or getattr(args, "train_split", None),
        formatting_func=formatting_func,
        max_positions=max_positions,
    )
    return ds, {"eval": report}


def cycle_batches(dataset: EncodedDataset, batch_size: int, pad_token_id: int, seed: int):
    """Endless shuffled mini-batches over ``dataset`` (a fresh seeded order each pass), collated."""
    from dualselect.data.encoding import collate

    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(dataset), generator=g).tolist()
        size = min(batch_size, len(order))
        for i in range(0, len(order) - size + 1, size):  # the ragged tail waits for the next pass
            yield collate([dataset[j] for j in order[i : i + size]], pad_token_id=pad_token_id)


def resolve_reference_data(cfg) -> str | None:
    """``reference_data``, or the organism's reference pool when training the organism."""
    if cfg.reference_data is not None:
        return cfg.reference_data
    from dualselect.training.model import named_models

    return named_models().default_reference_data(cfg.model_name_or_path)


def resolve_helpful_data(cfg) -> str:
    """``helpful_data``, or the default helpfulness pool of the model being trained: the organism's
    (``helpful/`` beside it) or a real base's (``data/helpful_pool.jsonl`` /
    ``data/helpful_refusals.jsonl`` beside ``references.jsonl``); the objectives
    ``refusal_penalty`` and ``unlikelihood`` read the refusals file. Never builds: a missing pool
    is an error naming the command (``train`` and ``compare`` build the organism's before a
    two-sided run)."""
    if cfg.helpful_data is not None:
        return cfg.helpful_data
    from dualselect.training.model import named_models

    return named_models().default_helpful_data(
        cfg.model_name_or_path, cfg.helpful_objective, cfg.reference_data
    )


def load_reference_dataset(trainer, cfg, reference_dataset=None, name: str = "reference") -> EncodedDataset:
    """The reference (retention) pool of a method that needs one, encoded like the task data;
    ``name`` names its data report (``data_report_<name>.json``)."""
    ref = reference_dataset if reference_dataset is not None else resolve_reference_data(cfg)
    if ref is None:
        raise ValueError(f"{type(trainer).__name__} needs a reference pool: set reference_data")
    if isinstance(ref, EncodedDataset):
        return ref
    ds, report = build_dataset(
        ref,
        trainer.processing_class,
        cfg,
        name=name,
        split=getattr(cfg, "reference_split", None),
        max_positions=model_max_positions(trainer.model),
    )
    trainer.data_reports[name] = report
    return ds


def reference_stream(trainer, cfg, reference_dataset=None):
    """(encoded reference pool, endless seeded batches over it) for methods that mix in references."""
    ds = load_reference_dataset(trainer, cfg, reference_dataset)
    return ds, cycle_batches(
        ds, cfg.per_device_train_batch_size, trainer.processing_class.pad_token_id, cfg.seed
    )
