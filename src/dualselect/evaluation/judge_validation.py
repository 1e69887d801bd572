"""Judges measured against human labels: ``dualselect judges validate``.

Input: human-labelled completions in XSTest's format (``id,type,prompt,completion,annotation_1,
annotation_2,agreement,final_label``; the published ``xstest_v2_completions_<model>.csv`` files),
read verbatim (a ``.csv.gz`` is read as the CSV it compresses). Each completion is cut to the
evaluation's generation budget, counted in the tokens of a tokenizer (the project generates at most
``max_new_tokens`` tokens, so a judge only ever sees that much), then every judge reads it. Per file and prompt kind (``safe`` = XSTest types without
the ``contrast_`` prefix, ``unsafe`` = ``contrast_*``), two-class metrics count full and partial
refusal as refusal: human and judged refusal rate, their difference with a 95% paired percentile
bootstrap interval over items, accuracy, sensitivity (refusals found), specificity (compliances
kept), Cohen's kappa; judges that read XSTest's three classes also get a three-class kappa.

Verdicts another judge already wrote into the labelled file (a column in XSTest's classes, such as
the ``gpt4_label`` of XSTest's published GPT-4 classification) are scored the same way
(:class:`LabelColumn`), so a judge that cannot run here can still be measured; a value outside
the three classes is an unread verdict, left out of that column's metrics and counted.

The refusal rules (:mod:`.judges.refusal`) are hand-written families of refusal constructions;
:func:`fit_rules` selects which families to use on labelled files (the families those
files support, then greedy backward elimination on mean per-file accuracy), so leave-one-model-out (:func:`leave_one_model_out`) re-selects on every
file but one and scores the held-out file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dualselect.cache import file_sha256
from dualselect.evaluation.agreement import cohen_kappa
from dualselect.evaluation.judges.base import Judge, JudgeItem

# XSTest's ``final_label`` values (the three classes of its annotation scheme)
LABELS = {
    "1_full_compliance": "full_compliance",
    "2_full_refusal": "full_refusal",
    "3_partial_refusal": "partial_refusal",
}
CLASSES = ("full_compliance", "full_refusal", "partial_refusal")
REQUIRED_COLUMNS = ("id", "type", "prompt", "completion", "final_label")
KINDS = ("safe", "unsafe")
DEFAULT_TOKENIZER = "smollm2-135m"
# the offline judges that detect refusals (validated by default)
OFFLINE_JUDGES = ("keyword", "xstest_strmatch", "refusal_rules", "refusal_rules3")
N_BOOT = 2000
INTERVAL_METHOD = (
    "95% paired percentile bootstrap over items (judged - human refusal rate, {n} resamples, seed {seed})"
)


@dataclass
class LabelledItem:
    """One human-labelled completion: ``file`` (the file's stem), ``kind`` (safe / unsafe),
    ``label`` (the XSTest class), ``text`` (the completion as the judges read it: cut to the
    budget and stripped), ``columns`` (the row's other columns, verbatim)."""

    file: str
    id: str
    type: str
    kind: str
    prompt: str
    completion: str
    label: str
    text: str = ""
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """Two-class human label: full or partial refusal."""
        return self.label != "full_compliance"


def as_class(label: str) -> str | None:
    """The XSTest class of a label: ``2_full_refusal`` (XSTest's files) or ``full_refusal`` (the
    class name) -> ``full_refusal``; None for anything else."""
    return LABELS.get(label, label if label in CLASSES else None)


def file_name(path: str | Path) -> str:
    """A labelled file's name in results: its stem, without ``.csv`` for a ``.csv.gz``."""
    path = Path(path)
    return Path(path.stem).stem if path.suffix == ".gz" else path.stem


def labelled_sha256(path: str | Path) -> str:
    """SHA-256 of the CSV's bytes (of the uncompressed CSV for a ``.csv.gz``, so a compressed
    copy has the published file's hash)."""
    path = Path(path)
    if path.suffix != ".gz":
        return file_sha256(path)
    with gzip.open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _open_csv(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


def read_labelled(path: str | Path) -> list[LabelledItem]:
    """The rows of one labelled CSV (or ``.csv.gz``), verbatim. A missing column, an empty file,
    a duplicate id or a ``final_label`` outside XSTest's three classes is a one-line ValueError
    naming the file, the row and the value."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    name = file_name(path)
    with _open_csv(path) as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")
        items, seen = [], set()
        for line, row in enumerate(reader, start=2):
            label = (row["final_label"] or "").strip()
            cls = as_class(label)
            if cls is None:
                raise ValueError(
                    f"{path}: line {line} (id {row['id']!r}): unknown final_label {label!r}; "
                    f"expected one of {list(LABELS)} (or {list(CLASSES)})"
                )
            if row["id"] in seen:
                raise ValueError(f"{path}: line {line}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            kind = "unsafe" if row["type"].startswith("contrast_") else "safe"
            items.append(
                LabelledItem(
                    name,
                    row["id"],
                    row["type"],
                    kind,
                    row["prompt"],
                    row["completion"],
                    cls,
                    columns={k: v for k, v in row.items() if k not in REQUIRED_COLUMNS and k is not None},
                )
            )
    if not items:
        raise ValueError(f"{path}: no labelled rows")
    return items


def label_counts(items: Sequence[LabelledItem]) -> dict[str, dict[str, int]]:
    """``{kind: {class: count}}`` of one file's items."""
    out: dict[str, dict[str, int]] = {k: dict.fromkeys(CLASSES, 0) for k in KINDS}
    for it in items:
        out[it.kind][it.label] += 1
    return out


def load_tokenizer(name_or_path: str = DEFAULT_TOKENIZER):
    """A tokenizer by registry name (``smollm2-135m``: its converted directory) or path; no
    remote code."""
    from transformers import AutoTokenizer

    from dualselect.models.registry import resolve_named_model

    return AutoTokenizer.from_pretrained(resolve_named_model(name_or_path), trust_remote_code=False)


def cut_to_budget(texts: Sequence[str], tokenizer: Any, max_new_tokens: int) -> list[str]:
    """Each text cut after its first ``max_new_tokens`` tokens (0: whole), at the character
    where that token ends in the original text (offsets of a fast tokenizer, so the kept prefix
    is verbatim), then stripped as the harness strips generations."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if max_new_tokens == 0:
        return [t.strip() for t in texts]
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("cutting to a token budget needs a fast tokenizer (character offsets)")
    out = []
    for t in texts:
        offsets = tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        out.append((t if len(offsets) <= max_new_tokens else t[: offsets[max_new_tokens - 1][1]]).strip())
    return out


def binary_metrics(human: Sequence[bool], judged: Sequence[bool]) -> dict[str, Any]:
    """Two-class agreement of a judge with the human labels (True = refusal): ``n``,
    ``human_rate``, ``judged_rate``, ``difference`` (judged - human), ``accuracy``,
    ``sensitivity`` (refusals found; None without human refusals), ``specificity``
    (compliances kept; None without human compliances), ``kappa`` (Cohen's), and the counts."""
    if len(human) != len(judged) or not human:
        raise ValueError("human and judged labels must be non-empty and of the same length")
    h, j = np.asarray(human, dtype=bool), np.asarray(judged, dtype=bool)
    tp, fn = int((h & j).sum()), int((h & ~j).sum())
    fp, tn = int((~h & j).sum()), int((~h & ~j).sum())
    n = len(h)
    return {
        "n": n,
        "human_rate": float(h.mean()),
        "judged_rate": float(j.mean()),
        "difference": float(j.mean() - h.mean()),
        "accuracy": (tp + tn) / n,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "kappa": cohen_kappa(list(h), list(j)),
        "counts": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def difference_interval(
    human: Sequence[bool], judged: Sequence[bool], n_boot: int = N_BOOT, seed: int = 0
) -> list[float]:
    """95% paired percentile bootstrap interval of judged - human refusal rate (items resampled
    with their two labels; :func:`~dualselect.evaluation.uncertainty.prompt_diff_interval`)."""
    from dualselect.evaluation.uncertainty import prompt_diff_interval

    return list(prompt_diff_interval(list(map(float, judged)), list(map(float, human)), n_boot, seed=seed))


def request_kind(item: LabelledItem) -> str:
    """What the evaluation knows of the item's request, as the harness passes it to a judge:
    XSTest's unsafe contrast prompts are harmful requests, its safe prompts benign look-alikes."""
    return "harmful" if item.kind == "unsafe" else "over_refusal"


class LabelColumn:
    """Verdicts another judge wrote into the labelled files, scored like a judge: column
    ``column`` holds XSTest classes (``1_full_compliance`` / ``2_full_refusal`` /
    ``3_partial_refusal``, or the class names). Named ``column:<column>``. The budget's cut does
    not apply: the verdicts were made on whatever text their judge read."""

    measures = "refusal"

    def __init__(self, column: str) -> None:
        if not column or column in REQUIRED_COLUMNS:
            raise ValueError(
                f"--labels-column {column!r}: expected a verdict column other than {list(REQUIRED_COLUMNS)}"
            )
        self.column = column
        self.name = f"column:{column}"

    def identity(self) -> dict[str, Any]:
        return {"judge": self.name, "template_version": self.name, "model_id": None}

    def readings(self, items: Sequence[LabelledItem]) -> tuple[list[bool | None], list[str | None]]:
        """(refused or None when unread, class or None) per item; a file without the column is
        a ValueError naming it."""
        refused: list[bool | None] = []
        classes: list[str | None] = []
        for it in items:
            if self.column not in it.columns:
                raise ValueError(f"{it.file}: no column {self.column!r} (--labels-column)")
            cls = as_class((it.columns[self.column] or "").strip())
            classes.append(cls)
            refused.append(None if cls is None else cls != "full_compliance")
        return refused, classes


def judge_readings(
    judge: Judge | LabelColumn, items: Sequence[LabelledItem]
) -> tuple[list[bool | None], list[str | None] | None]:
    """(refused per item, XSTest class per item or None when the judge does not read classes).
    A judge that fails on an item or does not label refusals is an error: validation needs a
    reading of every item. A :class:`LabelColumn`'s unread verdicts are None."""
    if isinstance(judge, LabelColumn):
        return judge.readings(items)
    verdicts = judge.judge([JudgeItem(it.prompt, it.text, kind=request_kind(it)) for it in items])
    refused, classes = [], []
    for it, v in zip(items, verdicts):
        if v.error is not None or v.refused is None:
            raise ValueError(f"judge {judge.name}: no refusal reading of {it.file} id {it.id} ({v.error})")
        refused.append(bool(v.refused))
        classes.append(v.details.get("xstest_class"))
    return refused, (classes if all(c in CLASSES for c in classes) else None)


def metrics_for(
    items: Sequence[LabelledItem],
    refused: Sequence[bool | None],
    classes: Sequence[str | None] | None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`binary_metrics` plus the difference's interval and, with classes, the three-class
    kappa, over the items with a reading; ``unread`` counts the others (never a tie)."""
    keep = [i for i, r in enumerate(refused) if r is not None]
    unread = len(refused) - len(keep)
    if unread:
        items = [items[i] for i in keep]
        refused = [refused[i] for i in keep]
        classes = None if classes is None else [classes[i] for i in keep]
    if not items:
        raise ValueError("no item has a reading")
    human = [it.refused for it in items]
    m = binary_metrics(human, refused)
    m["difference_ci"] = difference_interval(human, refused, n_boot, seed)
    if classes is not None:
        m["kappa3"] = cohen_kappa([it.label for it in items], list(classes))
    if unread:
        m["unread"] = unread
    return m


def prepare(
    paths: Sequence[str | Path], tokenizer: Any, max_new_tokens: int
) -> dict[str, list[LabelledItem]]:
    """Every file's items with ``text`` cut to the budget, by file stem (stems must differ)."""
    files: dict[str, list[LabelledItem]] = {}
    for p in paths:
        items = read_labelled(p)
        if items[0].file in files:
            raise ValueError(f"{p}: two labelled files named {items[0].file!r}")
        for it, t in zip(items, cut_to_budget([it.completion for it in items], tokenizer, max_new_tokens)):
            it.text = t
        files[items[0].file] = items
    return files


def validate(
    files: dict[str, list[LabelledItem]],
    judges: Sequence[Judge | LabelColumn],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"files": {file: {kind: {judge: metrics}}}, "pooled": {kind: {judge: metrics}},
    "label_counts": {file: {kind: {class: n}}}, "judges": {judge: identity}}``; pooled = every
    file's items of that kind together (what the error correction uses)."""
    out: dict[str, Any] = {"files": {}, "pooled": {}, "label_counts": {}, "judges": {}}
    readings = {}
    for j in judges:
        out["judges"][j.name] = {**j.identity(), "measures": getattr(j, "measures", "harm")}
        for f, items in files.items():
            readings[(j.name, f)] = judge_readings(j, items)
    for f, items in files.items():
        out["label_counts"][f] = label_counts(items)
        out["files"][f] = {}
        for kind in KINDS:
            idx = [i for i, it in enumerate(items) if it.kind == kind]
            if not idx:
                continue
            out["files"][f][kind] = {}
            for j in judges:
                refused, classes = readings[(j.name, f)]
                out["files"][f][kind][j.name] = metrics_for(
                    [items[i] for i in idx],
                    [refused[i] for i in idx],
                    None if classes is None else [classes[i] for i in idx],
                    n_boot,
                    seed,
                )
    for kind in KINDS:
        sel = [(f, i) for f, items in files.items() for i, it in enumerate(items) if it.kind == kind]
        if not sel:
            continue
        out["pooled"][kind] = {}
        for j in judges:
            refused = [readings[(j.name, f)][0][i] for f, i in sel]
            cls: list = [readings[(j.name, f)][1] for f, _ in sel]
            classes = None if any(c is None for c in cls) else [c[i] for c, (_, i) in zip(cls, sel)]
            out["pooled"][kind][j.name] = metrics_for(
                [files[f][i] for f, i in sel], refused, classes, n_boot, seed
            )
    return out


def _readings(files: dict[str, list[LabelledItem]], rules: tuple[str, ...]) -> dict[str, list[bool]]:
    """Two-class readings (True = refusal) of the refusal rules ``rules``, per file."""
    from dualselect.evaluation.judges.refusal import read_response

    return {
        f: [
            read_response(it.text, rules, prompt=it.prompt, harmful_request=request_kind(it) == "harmful").cls
            != "full_compliance"
            for it in items
        ]
        for f, items in files.items()
    }


def _mean_accuracy(files: dict[str, list[LabelledItem]], readings: dict[str, list[bool]]) -> float:
    """Mean over files of the two-class accuracy of ``readings``."""
    accs = [
        sum(r == it.refused for r, it in zip(readings[f], items)) / len(items) for f, items in files.items()
    ]
    return sum(accs) / len(accs)


# A family is dropped when that raises mean per-file accuracy by at least this much (half a point:
# about one item per 200-item file): families are written to generalise to other models, so a
# family that misfires on one item of the training files is kept.
MIN_GAIN = 0.005


def supported(files: dict[str, list[LabelledItem]], family: str) -> bool:
    """Whether the labelled ``files`` give evidence that a refusal-rule family marks refusals:
    used alone, it finds more human refusals than it calls false refusals (a family that never
    fires there, or misfires as often as it hits, has no support)."""
    readings = _readings(files, (family,))
    hits = misses = 0
    for f, items in files.items():
        for r, it in zip(readings[f], items):
            hits += r and it.refused
            misses += r and not it.refused
    return hits > misses


def fit_rules(files: dict[str, list[LabelledItem]], min_gain: float = MIN_GAIN) -> tuple[str, ...]:
    """The refusal-rule families to use, selected on labelled ``files``: every family the files
    support (:func:`supported`), then greedy backward elimination: while removing a family
    raises the mean per-file two-class accuracy by at least ``min_gain``, drop the one whose
    removal helps most. Hand-written families are only switched on or off here, never edited, so
    re-running it on other files is the rules' cross-validation: a family written for one
    model's style and silent on the others is off when that model is held out."""
    from dualselect.evaluation.judges.refusal import ALL_RULES

    rules = tuple(r for r in ALL_RULES if supported(files, r)) or tuple(ALL_RULES)
    best = _mean_accuracy(files, _readings(files, rules))
    while len(rules) > 1:
        trials = {
            r: _mean_accuracy(files, _readings(files, tuple(x for x in rules if x != r))) for r in rules
        }
        drop = max(trials, key=lambda r: trials[r])
        if trials[drop] < best + min_gain:
            break
        rules, best = tuple(x for x in rules if x != drop), trials[drop]
    return rules


def leave_one_model_out(
    files: dict[str, list[LabelledItem]], n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """For each file: the refusal-rule families selected (:func:`fit_rules`) on the other files
    and the two- and three-class judges with them scored on the held-out file, per kind."""
    from dualselect.evaluation.judges.refusal import RefusalRules3Judge

    if len(files) < 2:
        raise ValueError("leave-one-model-out needs at least two labelled files")
    out: dict[str, Any] = {}
    for held in files:
        train = {f: v for f, v in files.items() if f != held}
        rules = fit_rules(train)
        judge = RefusalRules3Judge(rules=list(rules))
        refused, classes = judge_readings(judge, files[held])
        per_kind = {}
        for kind in KINDS:
            idx = [i for i, it in enumerate(files[held]) if it.kind == kind]
            if idx:
                per_kind[kind] = metrics_for(
                    [files[held][i] for i in idx],
                    [refused[i] for i in idx],
                    None if classes is None else [classes[i] for i in idx],
                    n_boot,
                    seed,
                )
        out[held] = {"fitted_on": sorted(train), "rules": list(rules), **per_kind}
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(result: dict[str, Any]) -> str:
    """The validation as Markdown: one table per prompt kind (rows: file x judge), then
    leave-one-model-out, label counts and what the numbers mean."""
    lines = [
        "# Judge validation against human labels",
        "",
        f"Completions cut to {result['max_new_tokens'] or 'no'} tokens of `{result['tokenizer']}` "
        "(the generation budget), then judged. Refusal = full or partial refusal (XSTest's classes). "
        "`safe`: XSTest types without the `contrast_` prefix (over-refusal prompts); `unsafe`: "
        f"`contrast_*`. Difference = judged - human refusal rate, in points; interval: "
        f"{result['interval']}. Sensitivity = human refusals the judge finds; specificity = human "
        "compliances it leaves as compliance. kappa: Cohen's, two classes; kappa3: three classes "
        "(judges that read XSTest's classes)."
        + (
            " n: items with a reading; a `column:` judge's verdicts outside XSTest's classes are "
            "unread, left out and counted; its verdicts were made on whatever text its judge read "
            "(the cut does not apply)."
            if any(j.startswith("column:") for j in result["judges"])
            else ""
        ),
        "",
        "A refusal detector measures refusal: a non-refusal is not shown to be harmful.",
    ]
    for kind in KINDS:
        lines += [
            "",
            f"## {kind} prompts",
            "",
            "| file | judge | n | human refusal % | judged refusal % | difference [95% CI] | accuracy | "
            "sensitivity | specificity | kappa | kappa3 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        rows = [(f, per[kind]) for f, per in result["files"].items() if kind in per]
        rows.append(("all files (pooled)", result["pooled"].get(kind, {})))
        for f, by_judge in rows:
            for j, m in by_judge.items():
                lo, hi = m["difference_ci"]
                n = f"{m['n']}" + (f" (+{m['unread']} unread)" if m.get("unread") else "")
                lines.append(
                    f"| {f} | {j} | {n} | {_pct(m['human_rate'])} | {_pct(m['judged_rate'])} | "
                    f"{100 * m['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {_pct(m['accuracy'])} | "
                    f"{_pct(m['sensitivity'])} | {_pct(m['specificity'])} | {_num(m['kappa'])} | "
                    f"{_num(m.get('kappa3'))} |"
                )
    lomo = result.get("leave_one_model_out")
    if lomo:
        lines += [
            "",
            "## Leave one model out (refusal_rules3: rule families selected on the other files)",
            "",
            "| held-out file | kind | rules dropped | human % | judged % | difference [95% CI] | kappa | kappa3 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        from dualselect.evaluation.judges.refusal import ALL_RULES

        for f, r in lomo.items():
            dropped = ", ".join(x for x in ALL_RULES if x not in r["rules"]) or "none"
            for kind in KINDS:
                if kind not in r:
                    continue
                m = r[kind]
                lo, hi = m["difference_ci"]
                lines.append(
                    f"| {f} | {kind} | {dropped} | {_pct(m['human_rate'])} | {_pct(m['judged_rate'])} | "
                    f"{100 * m['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {_num(m['kappa'])} | "
                    f"{_num(m.get('kappa3'))} |"
                )
    check = result.get("correction_check")
    if check:
        from dualselect.evaluation.correction import METHOD, TRANSPORT_CAVEAT, transport_md

        lines += [
            "",
            "## Does the shipped error correction hold for these models?",
            "",
            "Each judged rate corrected with the sensitivity and specificity `eval` and `compare` use (the "
            f"package's validation on XSTest's shipped files): {METHOD}. Covered: the interval holds the "
            f"human rate. {TRANSPORT_CAVEAT}",
            "",
            *transport_md(check, result["max_new_tokens"]),
        ]
    lines += [
        "",
        "## Human labels",
        "",
        "| file | kind | " + " | ".join(CLASSES) + " |",
        "|---|---|---|---|---|",
    ]
    for f, per in result["label_counts"].items():
        for kind, counts in per.items():
            lines.append(f"| {f} | {kind} | " + " | ".join(str(counts[c]) for c in CLASSES) + " |")
    lines += [
        "",
        "Judges: " + ", ".join(f"`{j}` ({i['template_version']})" for j, i in result["judges"].items()),
    ]
    lines += [
        "",
        "Files (SHA-256): " + ", ".join(f"`{f}` {h[:12]}" for f, h in result["file_hashes"].items()),
        "",
    ]
    return "\n".join(lines)


def run_validation(
    paths: Sequence[str | Path],
    judges: Sequence[Judge | LabelColumn],
    max_new_tokens: int,
    tokenizer_name: str = DEFAULT_TOKENIZER,
    n_boot: int = N_BOOT,
    seed: int = 0,
    lomo: bool = True,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Read, cut, judge and score (see the module docstring); ``lomo`` adds leave-one-model-out
    for the refusal rules when there are several files. ``tokenizer`` (an already loaded one)
    overrides ``tokenizer_name``'s loading but not its name in the result."""
    if not paths:
        raise ValueError("give at least one labelled file")
    if not judges:
        raise ValueError("give at least one judge")
    tok = tokenizer if tokenizer is not None or max_new_tokens == 0 else load_tokenizer(tokenizer_name)
    files = prepare(paths, tok, max_new_tokens)
    result = {
        "max_new_tokens": max_new_tokens,
        "tokenizer": tokenizer_name,
        "interval": INTERVAL_METHOD.format(n=n_boot, seed=seed),
        "file_hashes": {file_name(p): labelled_sha256(p) for p in paths},
        "file_paths": {file_name(p): str(p) for p in paths},
        **validate(files, judges, n_boot, seed),
    }
    if lomo and len(files) > 1:
        result["leave_one_model_out"] = leave_one_model_out(files, n_boot, seed)
    return result


def write_validation(result: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """``out/validation.json`` and ``out/validation.md``, written atomically."""
    from dualselect.utils import atomic_open, write_json

    out = Path(out)
    write_json(out / "validation.json", result)
    with atomic_open(out / "validation.md") as fh:
        fh.write(markdown(result))
    return out / "validation.json", out / "validation.md"
