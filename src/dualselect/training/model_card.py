"""The model card (README.md) saved with every adapter: base model id, method and its
hyperparameters, data, budget, and the evaluation summary when there is one.

PEFT's own card is boilerplate with the local directory the base model was loaded from as
``base_model``; this one names the hub id (resolved from a hub cache path when needed) and leaves
``base_model`` out of the metadata when the base is only a local directory, so the card never
claims a path as a model id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from dualselect.utils import atomic_open

CARD = "README.md"
EVAL_SUMMARY = "eval_summary.json"
_HUB_CACHE = re.compile(r"models--(?P<org>[^/\\]+?)--(?P<name>[^/\\]+)[/\\]snapshots[/\\]")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
# Fields of TrainingArguments worth a line on the card (the rest are defaults nobody tunes here).
TRAINING_KEYS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "weight_decay",
    "max_grad_norm",
    "seed",
    "max_length",
    "truncation",
    "torch_dtype",
)


def base_model_id(name_or_path: str | None, model: Any = None) -> tuple[str | None, str]:
    """(hub id or None, human description) of the base model.

    ``"organism"`` and an organism directory -> the package's built-in organism (no hub id);
    a hub cache snapshot path ``.../models--org--name/snapshots/<rev>`` -> ``org/name``; a
    string that looks like ``org/name`` and is not an existing directory -> itself; another local
    directory -> no id (the card says "local directory <name>")."""
    raw = str(name_or_path or "")
    if not raw and model is not None:
        raw = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if raw == "organism" or (raw and Path(raw, "organism.json").exists()):
        h = Path(raw).name if raw != "organism" else "default config"
        return None, f"the dualselect model organism ({h}; built locally, not on a hub)"
    m = _HUB_CACHE.search(raw)
    if m:
        return f"{m['org']}/{m['name']}", f"{m['org']}/{m['name']}"
    if _HUB_ID.match(raw) and not Path(raw).exists():
        return raw, raw
    if raw and Path(raw).is_dir():
        return None, f"local directory {Path(raw).name!r}"
    return (raw or None), (raw or "unknown")


def method_name(trainer: Any) -> str:
    """The registry name of ``trainer``'s method ("sft", "dualselect", ...)."""
    from dualselect.training.run import METHODS

    for name, (_, cls) in METHODS.items():
        if type(trainer) is cls:
            return name
    return type(trainer).__name__


def method_hyperparameters(args: Any) -> dict[str, Any]:
    """The method's own fields (those its config adds to ``SFTConfig``), then LoRA, then the
    training fields of :data:`TRAINING_KEYS`."""
    own = {
        name: getattr(args, name)
        for name in args.method_fields()
        if not name.endswith(("_data", "_split"))  # data: its own section
    }
    lora = {
        k: getattr(args, k, None) for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
    }
    train = {k: getattr(args, k, None) for k in TRAINING_KEYS}
    return {"method": own, "lora": lora, "training": train}


def _data_lines(trainer: Any) -> list[str]:
    args = trainer.args
    lines = []
    for name, rep in getattr(trainer, "data_reports", {}).items():
        d = rep.to_dict() if hasattr(rep, "to_dict") else dict(rep)
        src = d.get("source") or (args.train_data if name == "task" else None)
        text = f"- **{name}**" + (f" (`{_public_path(src)}`)" if src else "")
        text += f": {d['kept']} of {d['seen']} records used"
        if d.get("skipped"):
            text += "; skipped " + ", ".join(f"{n} {r}" for r, n in sorted(d["skipped"].items()))
        if d.get("transformed"):
            text += "; changed " + ", ".join(f"{n} {w}" for w, n in sorted(d["transformed"].items()))
        lines.append(text)
    if not lines and getattr(args, "train_data", None):
        lines.append(f"- **task**: `{_public_path(args.train_data)}`")
    return lines


def _public_path(p: Any) -> str:
    """A data source as shown on a card: hub names as they are, local files by name only."""
    s = str(p)
    if _HUB_ID.match(s) and not Path(s).exists():
        return s
    return Path(s).name or s


def render_card(
    *,
    base_id: str | None,
    base_desc: str,
    method: str,
    hyperparameters: dict[str, Any],
    data_lines: list[str],
    budget: dict[str, Any],
    evaluation: dict[str, Any] | None,
    version: str,
) -> str:
    """The card's text: YAML metadata (hub model-card fields) and markdown sections."""
    meta: dict[str, Any] = {"library_name": "peft"}
    if base_id:
        meta["base_model"] = base_id
    meta["tags"] = list(dict.fromkeys(["dualselect", method, "lora", "safety"]))
    meta["pipeline_tag"] = "text-generation"
    out = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", ""]
    out += [f"# LoRA adapter: {method}", ""]
    out += [
        f"Trained with [dualselect](https://pypi.org/project/dualselect/) {version}, method `{method}`, "
        f"on {base_desc}.",
        "",
        "## Method and hyperparameters",
        "",
    ]
    for group, values in hyperparameters.items():
        if not values:
            continue
        out.append(f"**{group}**: " + ", ".join(f"`{k}={_fmt(v)}`" for k, v in values.items()))
        out.append("")
    out += ["## Data", ""] + (data_lines or ["- (not recorded)"]) + [""]
    out += ["## Budget", ""]
    out += [f"- {k.replace('_', ' ')}: {_fmt(v)}" for k, v in budget.items() if v is not None]
    out += [""]
    out += ["## Evaluation", ""]
    if evaluation:
        out += ["| metric | value |", "|---|---|"]
        out += [f"| {k} | {_fmt(v)} |" for k, v in evaluation.items()]
    else:
        out += ["No evaluation recorded with this adapter (`dualselect eval` measures one)."]
    out += [
        "",
        "## Use",
        "",
        "```python",
        "from peft import AutoPeftModelForCausalLM",
        "",
        'model = AutoPeftModelForCausalLM.from_pretrained("PATH_TO_THIS_DIRECTORY")',
        "model = model.merge_and_unload()  # or: dualselect export RUN_DIR --merge --out DIR",
        "```",
        "",
    ]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    v = getattr(v, "value", v)  # enums (e.g. SchedulerType) by value
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def _with_actual_lora(hp: dict[str, Any], trainer: Any) -> dict[str, Any]:
    """The adapter's real LoRA settings (a ``peft_config`` overrides the ``lora_*`` fields)."""
    cfgs = getattr(getattr(trainer, "model", None), "peft_config", None) or {}
    cfg = cfgs.get("default") if isinstance(cfgs, dict) else None
    if cfg is not None and hasattr(cfg, "r"):
        targets = cfg.target_modules
        hp["lora"] = {
            "lora_r": cfg.r,
            "lora_alpha": cfg.lora_alpha,
            "lora_dropout": cfg.lora_dropout,
            "lora_target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else targets,
        }
    return hp


def _loaded_from(trainer: Any) -> str | None:
    """Where the base model was really loaded from (PEFT records it), else None."""
    cfgs = getattr(getattr(trainer, "model", None), "peft_config", None) or {}
    cfg = cfgs.get("default") if isinstance(cfgs, dict) else None
    return getattr(cfg, "base_model_name_or_path", None) or None


def load_evaluation(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's evaluation summary (``eval_summary.json``: flat ``{metric: value}``), if any."""
    p = Path(run_dir) / EVAL_SUMMARY
    if not p.exists():
        return None
    data = json.loads(p.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if isinstance(v, (int, float, str))} or None


def write_model_card(trainer: Any, output_dir: str | Path, evaluation: dict[str, Any] | None = None) -> Path:
    """Write ``output_dir/README.md`` for ``trainer``'s adapter (replacing PEFT's boilerplate)."""
    from dualselect._version import __version__

    args = trainer.args
    base_id, base_desc = base_model_id(_loaded_from(trainer) or getattr(args, "model_name_or_path", None))
    state = getattr(trainer, "state", None)
    budget = {
        "optimizer_steps": getattr(state, "global_step", None),
        "epochs": round(state.epoch, 3) if getattr(state, "epoch", None) else None,
        "supervised_tokens": getattr(trainer, "supervised_tokens", None),
    }
    text = render_card(
        base_id=base_id,
        base_desc=base_desc,
        method=method_name(trainer),
        hyperparameters=_with_actual_lora(method_hyperparameters(args), trainer),
        data_lines=_data_lines(trainer),
        budget=budget,
        evaluation=evaluation if evaluation is not None else load_evaluation(output_dir),
        version=__version__,
    )
    path = Path(output_dir) / CARD
    with atomic_open(path) as fh:
        fh.write(text)
    return path


def add_evaluation(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Record an evaluation summary with a saved adapter (``eval_summary.json``) and put it in
    the card's Evaluation section."""
    from dualselect.utils import write_json

    run_dir = Path(run_dir)
    clean = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
    write_json(run_dir / EVAL_SUMMARY, clean)
    card = run_dir / CARD
    if card.exists():
        text = card.read_text(encoding="utf-8")
        start = text.find("## Evaluation")
        end = text.find("## Use", start)
        if start >= 0 and end > start:
            table = ["## Evaluation", "", "| metric | value |", "|---|---|"]
            table += [f"| {k} | {_fmt(v)} |" for k, v in clean.items()]
            text = text[:start] + "\n".join(table) + "\n\n" + text[end:]
            with atomic_open(card) as fh:
                fh.write(text)
    return card
