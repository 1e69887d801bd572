"""Reading prompt/response records from files and datasets, in the schemas the field uses.

Every malformed record either raises a :class:`DataError` naming the file, the line (or record
index) and the field, or, with ``skip_invalid=True``, is skipped and counted by reason in a
:class:`SkipReport`. ``seen == kept + sum(skipped)`` always: nothing disappears silently.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPT_KEYS = ("instruction", "prompt", "question", "query")
RESPONSE_KEYS = ("output", "response", "completion", "answer", "chosen")
REASONS = (
    "bad_json",
    "non_utf8",
    "missing_field",
    "empty_field",
    "wrong_type",
    "too_long",
    "no_supervised_token",
    "bad_messages",
    "bad_header",
    "extra_fields",
    "missing_split",
    "formatting_func_failed",
)
KINDS = ("pair", "text", "prompt_completion", "messages")
# A helpfulness pool (two-sided DualSelect) on disk, the same names for the organism and a real base:
# the base model's own answers (objective ``preserve``) and refusals of the same prompts
# (objectives ``refusal_penalty`` and ``unlikelihood``)
HELPFUL_POOL_FILE = "helpful_pool.jsonl"
HELPFUL_REFUSALS_FILE = "helpful_refusals.jsonl"


def helpful_pool_file(objective: str = "preserve") -> str:
    """The helpfulness pool file an objective reads: the answers for ``preserve``, the refusals
    for the objectives that push refusals down (``refusal_penalty``, ``unlikelihood``)."""
    return HELPFUL_POOL_FILE if objective == "preserve" else HELPFUL_REFUSALS_FILE


@dataclass
class Record:
    """One training sample.

    ``kind`` says how it is tokenized and which tokens are supervised (TRL's dataset formats plus
    the package's own prompt/response schemas):

    * ``"pair"``: the package's schemas (instruction/output, prompt/response, question/answer, HH
      transcripts): the prompt is formatted (chat template, else ``Human: ...\nAssistant:``) and the
      response supervised.
    * ``"prompt_completion"``: TRL's prompt-completion format. Strings are concatenated as they are
      (no template, EOS appended to the completion); conversational ones (``messages`` =
      prompt turns + completion turns, ``prompt_turns`` of them the prompt) go through the chat
      template. The completion is supervised unless ``completion_only_loss=False``.
    * ``"text"``: language modelling on ``text`` (EOS appended), every token supervised.
    * ``"messages"``: a conversation through the chat template; every assistant turn supervised
      (the assistant mask), or every token with ``assistant_only_loss=False``.

    ``prompt``/``response`` are always the last user turn's context and the last answer (what
    generation-time code formats); ``meta`` holds every other column; ``source`` is "file:line";
    ``transcript`` is True only when the schema said the prompt is an HH transcript
    ("\n\nHuman: ... \n\nAssistant: ..."), never guessed from the prompt's text.
    """

    prompt: str
    response: str
    messages: list[dict] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    kind: str = "pair"
    text: str | None = None
    prompt_turns: int | None = None
    transcript: bool = False


class DataError(ValueError):
    """A malformed record: names the file, the line or record index, and the field."""

    def __init__(
        self, path: str, location: str, field_name: str | None, reason: str, detail: str = ""
    ) -> None:
        self.path, self.location, self.field, self.reason = path, location, field_name, reason
        where = f"{path}:{location}" + (f": field '{field_name}'" if field_name else "")
        super().__init__(f"{where}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass
class SkipReport:
    """Counts of seen, kept and skipped records, by reason, with example locations."""

    name: str = "data"
    source: str = ""  # where the records came from (file name, hub name or object type)
    seen: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    # Kept records that were changed on the way (e.g. "truncated (keep_start, max_length 512)").
    transformed: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def transform(self, what: str, n: int = 1) -> None:
        """Count a change made to a kept record (a truncation, an EOS added, ...)."""
        self.transformed[what] = self.transformed.get(what, 0) + n

    def skip(self, err: DataError) -> None:
        self.skipped[err.reason] = self.skipped.get(err.reason, 0) + 1
        ex = self.examples.setdefault(err.reason, [])
        if len(ex) < 5:
            ex.append(str(err))

    def merge(self, other: SkipReport) -> None:
        """Fold a later stage's report in (its ``seen`` are this report's ``kept``)."""
        for reason, n in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n
            self.examples.setdefault(reason, []).extend(other.examples.get(reason, [])[:5])
            self.examples[reason] = self.examples[reason][:5]
        for what, n in other.transformed.items():
            self.transform(what, n)
        self.notes += [n for n in other.notes if n not in self.notes]
        self.kept = other.kept

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        if not self.n_skipped:
            text = f"{self.name}: {self.kept} of {self.seen} records kept"
        else:
            parts = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
            text = f"{self.name}: kept {self.kept} of {self.seen} records; skipped {self.n_skipped} ({parts})"
        if self.transformed:
            text += "; changed: " + ", ".join(f"{n} {w}" for w, n in sorted(self.transformed.items()))
        return text

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "seen": self.seen,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "transformed": dict(self.transformed),
            "notes": list(self.notes),
        }

    def save(self, path: str | os.PathLike) -> None:
        from dualselect.utils import write_json

        write_json(path, self.to_dict())


@dataclass
class LoadResult:
    records: list[Record]
    report: SkipReport


# ------------------------------------------------------------------------------------ readers


BOM = b"\xef\xbb\xbf"


def _read_jsonl(path: str) -> Iterator[tuple[str, Any]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            loc = f"line {lineno}"
            if lineno == 1 and raw.startswith(BOM):  # a UTF-8 BOM is dropped, as in JSON and CSV
                raw = raw[len(BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield loc, DataError(path, loc, None, "non_utf8", str(e))
                continue
            if not text.strip():
                continue
            try:
                yield loc, json.loads(text)
            except json.JSONDecodeError as e:
                yield loc, DataError(path, loc, None, "bad_json", e.msg)


def _read_json(path: str) -> Iterator[tuple[str, Any]]:
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # a UTF-8 BOM is dropped, as in JSONL and CSV
    except UnicodeDecodeError as e:
        raise DataError(path, "file", None, "non_utf8", str(e)) from e
    except json.JSONDecodeError as e:
        raise DataError(path, f"line {e.lineno}", None, "bad_json", e.msg) from e
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                path,
                "file",
                None,
                "wrong_type",
                "a JSON file must hold a list of records or an object with one list",
            )
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(path, "file", None, "wrong_type", "expected a list of records")
    for i, row in enumerate(data):
        yield f"record {i}", row


def _read_csv(path: str) -> Iterator[tuple[str, Any]]:
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"line {line}", None, "non_utf8", str(e)) from e
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(path, "line 1", dup[0], "bad_header", f"duplicate column name(s) {dup}")
    if any(not h.strip() for h in header):
        raise DataError(path, "line 1", None, "bad_header", "empty column name")
    for fields in reader:
        # reader.line_num is the physical line where this record ends (quoted fields may span lines)
        loc = f"line {reader.line_num}"
        if not fields:
            continue
        if len(fields) > len(header):
            yield (
                loc,
                DataError(
                    path,
                    loc,
                    None,
                    "extra_fields",
                    f"{len(fields)} values for {len(header)} columns (unquoted comma?)",
                ),
            )
            continue
        if len(fields) < len(header):
            missing = header[len(fields)]
            yield (
                loc,
                DataError(
                    path, loc, missing, "missing_field", f"{len(fields)} values for {len(header)} columns"
                ),
            )
            continue
        yield loc, dict(zip(header, fields))


def _read_parquet(path: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    for i, row in enumerate(pq.read_table(path).to_pylist()):
        yield f"record {i}", row


def pick_split(ds: Any, split: str | None, source: str = "<dataset>", default: str = "train") -> Any:
    """``ds[split]`` of a ``DatasetDict`` (or a plain dict of splits); anything else unchanged.
    A missing split is an error naming the available ones."""
    import datasets

    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict, dict)) and not (
        isinstance(ds, dict) and ds and not all(isinstance(k, str) for k in ds)
    ):
        want = split or default
        if want not in ds:
            raise DataError(
                source,
                "dataset",
                None,
                "missing_split",
                f"no split {want!r}; available splits: {sorted(ds)} (set the split)",
            )
        return ds[want]
    return ds


def _read_hf(source: str, split: str | None) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        if Path(source).is_dir():
            ds = pick_split(datasets.load_from_disk(source), split, source)
        else:
            ds = datasets.load_dataset(source, split=split or "train")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear error
        raise DataError(
            source, "dataset", None, "unreadable", f"{type(e).__name__}: {e}".split("\n")[0][:300]
        ) from e
    for i, row in enumerate(ds):
        yield f"record {i}", row


def _is_hf_dataset(obj: Any) -> bool:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return False
    return isinstance(
        obj, (datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict, datasets.IterableDatasetDict)
    )


def _rows(source: Any, split: str | None) -> tuple[str, Iterable[tuple[str, Any]]]:
    if _is_hf_dataset(source) or (isinstance(source, dict) and source):
        ds = pick_split(source, split)
        name = getattr(ds, "info", None) and ds.info.dataset_name
        return f"<dataset{':' + name if name else ''}>", ((f"record {i}", r) for i, r in enumerate(ds))
    if isinstance(source, (list, tuple)):
        return "<memory>", ((f"record {i}", r) for i, r in enumerate(source))
    path = str(source)
    ext = Path(path).suffix.lower()
    if Path(path).is_file():
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
        if ext not in readers:
            raise DataError(
                path,
                "file",
                None,
                "unsupported_format",
                f"expected one of {sorted(readers)}, a saved dataset directory or a hub name",
            )
        return path, readers[ext](path)
    if ext in (".jsonl", ".json", ".csv", ".parquet"):
        raise FileNotFoundError(f"{path}: no such file")
    return path, _read_hf(path, split)


# ------------------------------------------------------------------------------------ schemas


def _text(row: dict, key: str, path: str, loc: str) -> str:
    v = row[key]
    if not isinstance(v, str):
        raise DataError(path, loc, key, "wrong_type", f"expected a string, got {type(v).__name__}")
    if not v.strip():
        raise DataError(path, loc, key, "empty_field")
    return v


def _check_messages(msgs: Any, path: str, loc: str, key: str) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise DataError(path, loc, key, "bad_messages", "expected a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(path, loc, f"{key}[{i}]", "bad_messages", "each message needs role and content")
        if not isinstance(m["content"], str):
            raise DataError(path, loc, f"{key}[{i}].content", "wrong_type", "expected a string")
        out.append({"role": str(m["role"]), "content": m["content"]})
    return out


def _last_answer(msgs: list[dict], path: str, loc: str, key: str) -> int:
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None:
        raise DataError(path, loc, key, "bad_messages", "no assistant turn to learn from")
    if not msgs[last]["content"].strip():
        raise DataError(path, loc, f"{key}[{last}].content", "empty_field")
    return last


def _from_messages(msgs: list[dict], path: str, loc: str, key: str) -> tuple[str, str, bool]:
    """(prompt, last answer, prompt-is-a-transcript) of a conversation: the context before the last
    assistant turn (the user message alone when it is the only turn) and that turn."""
    last = _last_answer(msgs, path, loc, key)
    context = msgs[:last]
    users = [m["content"] for m in context if m["role"] == "user"]
    if not users or not users[-1].strip():
        raise DataError(path, loc, key, "bad_messages", "no user turn before the assistant turn")
    if len(context) == 1:
        return users[-1], msgs[last]["content"], False
    return _transcript(context), msgs[last]["content"], True


def _transcript(msgs: list[dict]) -> str:
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    return "\n\n".join(f"{names.get(m['role'], m['role'].title())}: {m['content']}" for m in msgs)


def is_hh_transcript(text: Any) -> bool:
    """The HH-RLHF schema: a ``chosen`` transcript that *starts* with a Human turn and has an
    Assistant turn. A string that merely contains "\n\nAssistant:" is not one."""
    return (
        isinstance(text, str)
        and (text.startswith("\n\nHuman:") or text.startswith("Human:"))
        and "\n\nAssistant:" in text
    )


def _split_hh(text: str, path: str, loc: str, key: str) -> tuple[str, str, list[dict], bool]:
    """HH-RLHF transcript "\\n\\nHuman: ...\\n\\nAssistant: ..." -> prompt, last answer, turns.

    A transcript that ends with a Human turn after its last Assistant turn is an error (reason
    ``bad_messages``): there is no answer to that turn, and dropping it silently would change the
    sample."""
    if not is_hh_transcript(text):
        raise DataError(path, loc, key, "bad_messages", "not an HH transcript")
    msgs = parse_transcript(text)
    if msgs and msgs[-1]["role"] == "user":
        raise DataError(
            path,
            loc,
            key,
            "bad_messages",
            f"the transcript ends with a Human turn after its last Assistant turn (turn {len(msgs)})",
        )
    prompt, response, transcript = _from_messages(msgs, path, loc, key)
    return prompt, response, msgs, transcript


def parse_transcript(text: str) -> list[dict]:
    """ "Human: ...\\n\\nAssistant: ..." -> ``[{role, content}, ...]`` (text before the first label
    is dropped; a chunk without a label continues the previous turn)."""
    labels = {"Human:": "user", "Assistant:": "assistant", "System:": "system"}
    msgs: list[dict] = []
    for chunk in text.split("\n\n"):
        label = next((k for k in labels if chunk.startswith(k)), None)
        if label:
            msgs.append({"role": labels[label], "content": chunk[len(label) :].strip()})
        elif msgs:
            msgs[-1]["content"] += "\n\n" + chunk
    return msgs


def _from_value(msgs: Any) -> Any:
    """ShareGPT ``{"from": "human", "value": ...}`` turns -> ``{"role", "content"}`` (TRL does the same)."""
    roles = {
        "human": "user",
        "gpt": "assistant",
        "system": "system",
        "user": "user",
        "assistant": "assistant",
    }
    if not isinstance(msgs, list):
        return msgs
    out = []
    for m in msgs:
        if isinstance(m, dict) and "from" in m and "value" in m:
            out.append({"role": roles.get(str(m["from"]), str(m["from"])), "content": m["value"]})
        else:
            out.append(m)
    return out


def normalise(
    row: Any,
    path: str,
    loc: str,
    column_map: dict[str, str] | None = None,
    text_field: str = "text",
) -> Record:
    """One raw row -> :class:`Record`, or a :class:`DataError` naming the field.

    Schemas, first match wins: ``column_map``; ``messages`` (or ShareGPT ``conversations``);
    TRL's ``prompt`` + ``completion`` (strings or message lists); an HH-RLHF ``chosen``
    transcript; a prompt key (:data:`PROMPT_KEYS`) with a response key (:data:`RESPONSE_KEYS`);
    a ``text_field`` column alone (language modelling)."""
    if isinstance(row, DataError):
        raise row
    if isinstance(row, Record):
        return row
    if not isinstance(row, dict):
        raise DataError(path, loc, None, "wrong_type", f"expected an object, got {type(row).__name__}")
    src = f"{path}:{loc.split(' ')[-1]}"
    used: set[str] = set()
    messages = None
    kind, text, prompt_turns, transcript = "pair", None, None, False
    if column_map:
        pk, rk = column_map.get("prompt", "prompt"), column_map.get("response", "response")
        for k in (pk, rk):
            if k not in row:
                raise DataError(path, loc, k, "missing_field", "named in column_map")
        prompt, response = _text(row, pk, path, loc), _text(row, rk, path, loc)
        used |= {pk, rk}
        ik = column_map.get("input")
        if ik and row.get(ik):
            prompt, used = f"{prompt}\n\n{_text(row, ik, path, loc)}", used | {ik}
    elif "messages" in row or "conversations" in row:
        key = "messages" if "messages" in row else "conversations"
        messages = _check_messages(_from_value(row[key]), path, loc, key)
        prompt, response, transcript = _from_messages(messages, path, loc, key)
        kind = "messages"
        used.add(key)
    elif "prompt" in row and "completion" in row and isinstance(row["prompt"], list):
        p = _check_messages(_from_value(row["prompt"]), path, loc, "prompt")
        c = _check_messages(_from_value(row["completion"]), path, loc, "completion")
        messages = p + c
        _last_answer(c, path, loc, "completion")
        prompt, response, transcript = _from_messages(messages, path, loc, "completion")
        kind, prompt_turns = "prompt_completion", len(p)
        used |= {"prompt", "completion"}
    elif "prompt" in row and "completion" in row:
        # TRL's standard prompt-completion: the strings are used as they are (no template).
        prompt, response = _text(row, "prompt", path, loc), _text(row, "completion", path, loc)
        kind = "prompt_completion"
        used |= {"prompt", "completion"}
    elif is_hh_transcript(row.get("chosen")) and not any(k in row for k in PROMPT_KEYS):
        prompt, response, messages, transcript = _split_hh(row["chosen"], path, loc, "chosen")
        used.add("chosen")
    elif any(k in row for k in PROMPT_KEYS) or text_field not in row:
        pk = next((k for k in PROMPT_KEYS if k in row), None)
        rk = next((k for k in RESPONSE_KEYS if k in row), None)
        if pk is None:
            raise DataError(
                path,
                loc,
                "prompt",
                "missing_field",
                f"expected one of {PROMPT_KEYS} or messages, or a {text_field!r} column",
            )
        if rk is None:
            raise DataError(path, loc, "response", "missing_field", f"expected one of {RESPONSE_KEYS}")
        prompt, response = _text(row, pk, path, loc), _text(row, rk, path, loc)
        used |= {pk, rk}
        inp = row.get("input")
        if inp not in (None, ""):
            if not isinstance(inp, str):
                raise DataError(path, loc, "input", "wrong_type", "expected a string")
            prompt = f"{prompt}\n\n{inp}"
        used.add("input")
    else:
        text = _text(row, text_field, path, loc)
        prompt, response, kind = "", text, "text"
        used.add(text_field)
    meta = {k: v for k, v in row.items() if k not in used}
    return Record(
        prompt=prompt,
        response=response,
        messages=messages,
        meta=meta,
        source=src,
        kind=kind,
        text=text,
        prompt_turns=prompt_turns,
        transcript=transcript,
    )


def load_records(
    source: Any,
    *,
    split: str | None = None,
    column_map: dict[str, str] | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    name: str = "data",
    text_field: str = "text",
    formatting_func: Callable[[dict], str] | None = None,
) -> LoadResult:
    """Load records from a JSONL/JSON/CSV/Parquet file, a ``save_to_disk`` directory, an HF hub
    dataset name (+ ``split``), a ``datasets.Dataset``/``IterableDataset``, a ``DatasetDict``
    (``split``, default "train"; a missing split names the available ones), or an in-memory list
    of dicts or :class:`Record` objects (used as they are).

    ``formatting_func`` (TRL's): each raw row becomes ``{"text": formatting_func(row)}``, a
    language-modelling record (counted in the report's ``transformed``)."""
    src = source if isinstance(source, (list, tuple, dict)) or _is_hf_dataset(source) else str(source)
    path, rows = _rows(src, split)
    report = SkipReport(name=name)
    records: list[Record] = []
    for loc, row in rows:
        if limit is not None and len(records) >= limit:
            break
        report.seen += 1
        try:
            formatted_row = formatting_func is not None and isinstance(row, dict)
            if formatted_row:
                try:
                    formatted = formatting_func(row)
                except Exception as e:  # noqa: BLE001 - name the record, keep the cause
                    raise DataError(
                        path, loc, None, "formatting_func_failed", f"{type(e).__name__}: {e}"
                    ) from e
                if not isinstance(formatted, str):
                    raise DataError(
                        path, loc, None, "wrong_type", f"formatting_func returned {type(formatted).__name__}"
                    )
                row = {text_field: formatted}
            records.append(normalise(row, path, loc, column_map, text_field=text_field))
            if formatted_row:
                report.transform("formatted by formatting_func")
        except DataError as e:
            if not skip_invalid:
                raise
            report.skip(e)
    report.kept = len(records)
    return LoadResult(records, report)
