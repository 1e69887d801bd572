"""Export a training run: the adapter with its model card, or the base model with the adapter
merged in (a plain ``transformers`` model directory that needs neither peft nor dualselect)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from dualselect.training.model_card import CARD, EVAL_SUMMARY

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
RUN_FILES = ("config.yaml", "log.json", EVAL_SUMMARY)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)


def base_model_of(run_dir: Path, base: str | None = None) -> str:
    """The base model a run was trained from: ``base`` if given, else the run's config.yaml
    ``model_name_or_path`` ("organism" resolved to its cached directory), else the adapter's
    ``base_model_name_or_path``."""
    from dualselect.training.model import resolve_model_path

    if base:
        return resolve_model_path(base)
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        name = (yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}).get("model_name_or_path")
        if name:
            return resolve_model_path(str(name))
    adapter = json.loads((run_dir / "adapter_config.json").read_text(encoding="utf-8"))
    name = adapter.get("base_model_name_or_path")
    if not name:
        raise ValueError(f"{run_dir}: cannot tell the base model; pass --base")
    return resolve_model_path(name)


def evaluation_from_results(results: str | Path, name: str) -> dict:
    """The metrics of variant ``name`` in a ``dualselect eval`` output (``results.json`` or its
    directory), numbers only; an error listing the variants when ``name`` is not one of them."""
    p = Path(results)
    p = p / "results.json" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file (a `dualselect eval` results.json)")
    methods = json.loads(p.read_text(encoding="utf-8")).get("methods", {})
    if name not in methods:
        raise ValueError(f"{p}: no variant {name!r}; variants: {sorted(methods)} (set --eval-name)")
    return {k: v for k, v in methods[name].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    merge: bool = False,
    base: str | None = None,
    force: bool = False,
    evaluation: dict | None = None,
) -> Path:
    """Write ``out``: with ``merge`` the merged model (safetensors), its tokenizer and card; else
    the adapter, tokenizer and card. The run's config.yaml, log.json and eval summary come along.
    Everything is written to a temporary directory beside ``out`` with a ``run_manifest.json``
    (complete; the run's base fingerprint for an adapter) and renamed into place. A non-empty
    ``out`` is written into only with ``force``, by the rule of ``train --overwrite``: the
    previous export's listed files are replaced, other files kept, and a file it did not write is
    never written over. An interrupted run ("incomplete run") is refused. ``evaluation`` (flat
    metrics, e.g. from :func:`evaluation_from_results`) goes into the card's Evaluation section."""
    run_dir, out = Path(run_dir), Path(out)
    from dualselect.training.rundir import MANIFEST, check_run_complete
    from dualselect.utils import write_json

    if not (run_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{run_dir}: no adapter_config.json (not a training run directory)")
    run_manifest = check_run_complete(run_dir) or {}  # an interrupted run: "incomplete run"
    if out.resolve() == run_dir.resolve():
        raise ValueError(f"--out {out} is the run directory itself; choose another directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(f"{out} exists and is not empty; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out}: is a file, not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        if merge:
            _write_merged(run_dir, tmp, base)
        else:
            for name in ADAPTER_FILES:
                if (run_dir / name).exists():
                    shutil.copy2(run_dir / name, tmp / name)
        for name in TOKENIZER_FILES + RUN_FILES:
            if (run_dir / name).exists() and not (tmp / name).exists():
                shutil.copy2(run_dir / name, tmp / name)
        _write_card(run_dir, tmp, merged=merge)
        if evaluation:
            from dualselect.training.model_card import add_evaluation

            add_evaluation(tmp, evaluation)
        # the export's own manifest: complete, with the base an adapter needs (none once merged)
        extra = {"kind": "merged" if merge else "adapter"}
        if not merge and run_manifest.get("base_fingerprint"):
            extra["base_fingerprint"] = run_manifest["base_fingerprint"]
        files = sorted(e.name for e in tmp.iterdir())
        write_json(
            tmp / MANIFEST, {"format": 1, "status": "complete", "preexisting": [], "files": files, **extra}
        )
        if not out.exists() or not any(out.iterdir()):
            if out.exists():
                out.rmdir()
            tmp.rename(out)  # one rename publishes the export
        else:
            _replace_into(out, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace_into(out: Path, tmp: Path) -> None:
    """``--force`` into a non-empty ``out``, by the rule of ``train --overwrite``: the entries the
    previous export or run listed in its ``run_manifest.json`` are removed, everything else is
    kept, and a file it did not write is never replaced (refused, nothing changed). Until the new
    manifest is written last, readers see an incomplete export."""
    from dualselect.training.rundir import LOCK, MANIFEST
    from dualselect.training.validation import run_artifacts
    from dualselect.utils import note, write_json

    had_manifest = (out / MANIFEST).exists()
    ours = run_artifacts(out)
    if not had_manifest and ours:
        raise FileExistsError(
            f"--out {out}: holds a run or export without {MANIFEST} (an older dualselect: "
            f"{', '.join(p.name for p in ours[:5])}); --force cannot tell its files from yours, so "
            "nothing was changed: delete them yourself or choose another --out"
        )
    new = sorted(e.name for e in tmp.iterdir() if e.name != MANIFEST)
    clash = [n for n in new if (out / n).exists() and out / n not in ours]
    if clash:
        raise FileExistsError(
            f"--out {out}: holds {', '.join(clash[:5])}, which no export or run wrote and the export "
            "writes; nothing was changed: move them or choose another --out"
        )
    kept = sorted(e.name for e in out.iterdir() if e not in ours and e.name not in (MANIFEST, LOCK))
    manifest = json.loads((tmp / MANIFEST).read_text(encoding="utf-8"))
    manifest.update(preexisting=kept, files=new)
    write_json(out / MANIFEST, {**manifest, "status": "running"})  # incomplete while files move
    for p in ours:
        if p.name == MANIFEST:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    for n in new:
        os.replace(tmp / n, out / n)
    write_json(out / MANIFEST, manifest)  # last: the export is complete
    removed = [p.name for p in ours if p.name != MANIFEST]
    note(
        f"export --force: removed the previous {len(removed)} entries ({', '.join(removed[:8])}); kept {kept or 'nothing else'}"
    )


def _write_merged(run_dir: Path, dest: Path, base: str | None) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = base_model_of(run_dir, base)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(run_dir)).merge_and_unload()
    merged.save_pretrained(str(dest), safe_serialization=True)
    tok_src = run_dir if (run_dir / "tokenizer_config.json").exists() else Path(base_path)
    AutoTokenizer.from_pretrained(str(tok_src)).save_pretrained(str(dest))


def _write_card(run_dir: Path, dest: Path, merged: bool) -> None:
    card = run_dir / CARD
    text = card.read_text(encoding="utf-8") if card.exists() else "# Exported adapter\n"
    if merged:
        text = text.replace("library_name: peft", "library_name: transformers", 1)
        text = text.replace("# LoRA adapter:", "# Merged model (base + LoRA adapter):", 1)
        text = text.replace(
            "from peft import AutoPeftModelForCausalLM\n\n"
            'model = AutoPeftModelForCausalLM.from_pretrained("PATH_TO_THIS_DIRECTORY")\n'
            "model = model.merge_and_unload()  # or: dualselect export RUN_DIR --merge --out DIR",
            "from transformers import AutoModelForCausalLM\n\n"
            'model = AutoModelForCausalLM.from_pretrained("PATH_TO_THIS_DIRECTORY")  # adapter merged in',
        )
    (dest / CARD).write_text(text, encoding="utf-8")
