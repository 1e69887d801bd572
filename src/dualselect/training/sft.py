"""Standard SFT: plain LoRA fine-tuning on the task set. The base every other method builds on.

``SFTConfig`` is a ``transformers.TrainingArguments`` with the model, data and LoRA fields added and
the defaults of the spec page (the authors' release); ``SFTTrainer`` is a ``transformers.Trainer``
that loads, wraps with LoRA and encodes for you, so checkpointing, resume, logging integrations
and accelerate come from the ecosystem.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from dualselect.data.encoding import TRUNCATION
from dualselect.gradients.losses import target_logits_inputs
from dualselect.training.data import (
    EncodedDataset,
    build_dataset,
    build_eval_datasets,
    model_max_positions,
)
from dualselect.training.lora import apply_lora
from dualselect.training.model import load_model_and_tokenizer
from dualselect.training.timing import PhaseTimes
from dualselect.training.validation import check_fields
from dualselect.utils import seed_everything

TRUNCATION_POLICIES = TRUNCATION
# Method state that the HF checkpoint does not hold (selection state, counters, stream positions).
METHOD_STATE_FILE = "method_state.pt"
DTYPES = ("float32", "bfloat16", "float16", "auto")
MODEL_INPUTS = ("input_ids", "attention_mask", "labels")


@dataclass
class SFTConfig(TrainingArguments):
    """Standard LoRA SFT. Every field also works as a YAML key and a ``--flag``."""

    # model
    model_name_or_path: str = field(
        default="organism",
        metadata={
            "help": "HF hub id or local directory of a causal LM; 'organism' = the built-in "
            "tiny safety-aligned model (built on first use, then cached)."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the hub. Off unless you ask."}
    )
    torch_dtype: str = field(
        default="float32",
        metadata={"help": f"One of {DTYPES}. fp32 on CPU (bf16 is ~27x slower there).", "choices": DTYPES},
    )
    # data
    train_data: str | None = field(
        default=None,
        metadata={
            "help": "Task data: JSONL/JSON/CSV/Parquet file, a saved HF dataset directory, or a "
            "hub name. Default with the organism: its RedOrca-style task set."
        },
    )
    train_split: str | None = field(default=None, metadata={"help": "Split for HF datasets (default train)."})
    eval_data: str | None = field(
        default=None,
        metadata={"help": "Evaluation data, any format train_data accepts (loss only, never in the budget)."},
    )
    eval_split: str | None = field(
        default=None, metadata={"help": "Split for eval data (default validation, else test)."}
    )
    max_length: int = field(
        default=512,
        metadata={
            "help": "Maximum tokens per sample (prompt + response); lowered to the model's positions "
            "when larger.",
            "domain": ">= 2",
        },
    )
    truncation: str = field(
        default="keep_start",
        metadata={
            "help": f"Over-long samples: one of {TRUNCATION_POLICIES}. 'keep_start' keeps the first "
            "max_length tokens (TRL's default); 'truncate_prompt' cuts the prompt's text from the left; "
            "'skip' drops them. Every truncation or drop is counted in the data report.",
            "choices": TRUNCATION_POLICIES,
        },
    )
    truncation_mode: str | None = field(
        default=None,
        metadata={"help": "TRL's name: 'keep_start' sets truncation to keep_start (the default)."},
    )
    dataset_text_field: str = field(
        default="text", metadata={"help": "Column of text-only (language-modelling) data (TRL)."}
    )
    completion_only_loss: bool | None = field(
        default=None,
        metadata={
            "help": "Loss on the completion only (TRL). Default: yes for prompt/response and "
            "prompt-completion data; False also trains on the prompt."
        },
    )
    assistant_only_loss: bool | None = field(
        default=None,
        metadata={
            "help": "For 'messages' data: loss on every assistant turn (default) or, with False, on "
            "every token (TRL's default)."
        },
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "TRL's packing is refused: selection scores whole samples, and every method is "
            "compared on the same unpacked samples."
        },
    )
    skip_invalid: bool = field(
        default=False,
        metadata={
            "help": "Skip malformed records instead of failing; every skip is counted by reason, "
            "printed and saved to <output_dir>/data_report_<name>.json."
        },
    )
    # LoRA (spec: r 16, alpha 32, dropout 0.05, q_proj v_proj)
    lora_r: int = field(default=16, metadata={"help": "LoRA rank.", "domain": ">= 1 and <= 65536"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha.", "domain": "> 0"})
    lora_dropout: float = field(
        default=0.05, metadata={"help": "LoRA dropout (off while scoring).", "domain": "in [0, 1)"}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Modules to adapt; default from the per-architecture table (q_proj v_proj)."},
    )
    # TrainingArguments defaults changed to the spec's release defaults
    output_dir: str | None = field(
        default="runs/sft", metadata={"help": "Where adapter, config and logs go."}
    )
    learning_rate: float = field(
        default=2e-5, metadata={"help": "AdamW learning rate (release: 2e-5).", "domain": "> 0"}
    )
    weight_decay: float = field(
        default=0.0, metadata={"help": "AdamW weight decay (release: 0).", "domain": ">= 0"}
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "Gradient-norm clipping (release: 1.0).", "domain": ">= 0"}
    )
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Task mini-batch size (release: 8).", "domain": ">= 1"}
    )
    optim: str = field(default="adamw_torch", metadata={"help": "Optimiser (AdamW)."})
    lr_scheduler_type: str = field(
        default="constant", metadata={"help": "LR schedule; constant like the release's plain loop."}
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seed for every RNG (LoRA init, data order, dropout).", "domain": "in [0, 2**32)"},
    )
    logging_steps: float = field(
        default=10, metadata={"help": "Log every N optimiser steps.", "domain": "> 0"}
    )
    save_strategy: str = field(default="no", metadata={"help": "Checkpointing: 'no', 'steps' or 'epoch'."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep our collated columns."})
    logits_at_targets_only: bool = field(
        default=True,
        metadata={
            "help": "Compute the vocabulary logits only at positions that predict a supervised "
            "token (as DualSelect's scoring does); the loss is the same. False: logits everywhere "
            "(HF's default path)."
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)  # every field's domain and choices, from its metadata (validation.py)
        if self.truncation_mode == "keep_start":  # TRL's name for the default policy
            self.truncation = "keep_start"
        errors = self.cross_field_errors()
        if errors:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(errors))
        super().__post_init__()

    def method_fields(self) -> list[str]:
        """The fields a method's config adds to ``SFTConfig`` (its own hyperparameters)."""
        base = {f.name for f in dataclasses.fields(SFTConfig)}
        return [f.name for f in dataclasses.fields(self) if f.name not in base]

    def cross_field_errors(self) -> list[str]:
        """Rules between fields (one field's domain is in its metadata). Subclasses extend it."""
        errors = []
        if self.truncation_mode not in (None, "keep_start"):
            errors.append(
                f"truncation_mode={self.truncation_mode!r}: only 'keep_start' (TRL's default; "
                "'keep_end' is deprecated there); see truncation for the other policies"
            )
        if self.packing:
            errors.append(
                "packing=True: not supported; selection methods score and keep whole samples, so "
                "samples are never packed together (set packing: false)"
            )
        return errors


class SFTTrainer(Trainer):
    """``transformers.Trainer`` for LoRA SFT on prompt/response data.

    ``model`` may be a model or a name/path (then loaded with ``args.model_name_or_path`` rules);
    ``train_dataset`` and ``eval_dataset`` may be an :class:`EncodedDataset`, a list of
    :class:`~dualselect.data.Record` objects or dicts, a ``datasets.Dataset``/``DatasetDict``, or a
    path (see :func:`~dualselect.training.data.build_dataset`). As in TRL's ``SFTTrainer``:
    ``peft_config`` (a ``peft.LoraConfig``) replaces the ``lora_*`` fields, ``quantization_config``
    (e.g. ``BitsAndBytesConfig``) is passed to ``from_pretrained`` when ``model`` is a name, and
    ``formatting_func(row) -> str`` turns each row into a text sample.
    Subclasses (DualSelect, baselines) override :meth:`training_step` only.
    """

    def __init__(
        self,
        model: Any = None,
        args: SFTConfig | None = None,
        train_dataset: Any = None,
        processing_class: Any = None,
        eval_dataset: Any = None,
        peft_config: Any = None,
        quantization_config: Any = None,
        formatting_func: Any = None,
        **kwargs: Any,
    ) -> None:
        from dualselect.training.model import quantized_model_kwargs

        args = args or SFTConfig()
        self.data_reports: dict[str, Any] = {}
        if model is None or isinstance(model, str):
            model, processing_class = load_model_and_tokenizer(
                model or args.model_name_or_path,
                trust_remote_code=args.trust_remote_code,
                torch_dtype=args.torch_dtype,
                model_init_kwargs=quantized_model_kwargs(quantization_config),
            )
        elif quantization_config is not None:
            raise ValueError("quantization_config applies when model is a name or path, not a loaded model")
        if processing_class is None:
            raise ValueError("pass the tokenizer as processing_class when passing a model object")
        seed_everything(args.seed)  # LoRA init is random
        model = apply_lora(
            model,
            r=args.lora_r,
            alpha=args.lora_alpha,
            dropout=args.lora_dropout,
            target_modules=args.lora_target_modules,
            peft_config=peft_config,
        )
        positions = model_max_positions(model)
        if train_dataset is not None and not isinstance(train_dataset, EncodedDataset):
            train_dataset, report = build_dataset(
                train_dataset,
                processing_class,
                args,
                name="task",
                formatting_func=formatting_func,
                max_positions=positions,
            )
            self.data_reports["task"] = report
        if eval_dataset is None and args.eval_data is not None:
            eval_dataset = args.eval_data
        if eval_dataset is not None and not isinstance(eval_dataset, EncodedDataset):
            eval_dataset, reports = build_eval_datasets(
                eval_dataset, processing_class, args, formatting_func=formatting_func, max_positions=positions
            )
            self.data_reports.update(reports)
        collator = kwargs.pop("data_collator", None) or partial(
            _collate, pad_token_id=processing_class.pad_token_id
        )
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
            processing_class=processing_class,
            **kwargs,
        )
        # Budget accounting: supervised target tokens that reached an update (methods that drop
        # samples or spend steps elsewhere count less, and the comparison reports it).
        self.supervised_tokens = 0
        # Wall time per phase (training/timing.py): per-step times once a PhaseTimingCallback is added.
        self.phase_times = PhaseTimes()

    def step_phase(self) -> str:
        """Name of the phase the next optimiser step belongs to (``PhaseTimingCallback``)."""
        return "plain"

    # ------------------------------------------------------------------ checkpoint and resume

    def method_state(self) -> dict[str, Any]:
        """What this method must carry across a resume beyond model, optimiser, scheduler, scaler
        and RNG (which the HF checkpoint holds). Subclasses extend the dict."""
        return {"supervised_tokens": self.supervised_tokens}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`method_state` (called before training resumes)."""
        self.supervised_tokens = int(state["supervised_tokens"])

    def method_state_file(self, process_index: int | None = None) -> str:
        """This process's method-state file in a checkpoint: ``method_state.pt`` for the main
        process, ``method_state_<rank>.pt`` for the others of a distributed run (each counts its
        own tokens)."""
        rank = self.args.process_index if process_index is None else process_index
        return METHOD_STATE_FILE if rank == 0 else f"method_state_{rank}.pt"

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint and the method state, built in ``.checkpoint-N.tmp/`` and
        published with one rename to ``checkpoint-N/``: a checkpoint directory is complete or
        absent, never half-written (a kill mid-save leaves only the hidden staging directory)."""
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"checkpoint-{self.state.global_step}"
        stage_root = run_dir / f".{name}.tmp"
        staged, final = stage_root / name, run_dir / name
        self._get_output_dir = lambda trial=None: str(stage_root)  # the Trainer writes there
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        staged.mkdir(parents=True, exist_ok=True)
        torch.save(self.method_state(), staged / self.method_state_file())  # every process its own
        if self.args.should_save and self.state.best_model_checkpoint == str(staged):
            self.state.best_model_checkpoint = str(final)  # where it will live
            self.state.save_to_json(str(staged / "trainer_state.json"))
        self.accelerator.wait_for_everyone()  # every process has written into the staging dir
        if self.args.should_save:
            if final.exists():  # the same step saved again (a resumed run): replace it whole
                old = run_dir / f".{name}.old.tmp"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(staged, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staged, final)
            shutil.rmtree(stage_root, ignore_errors=True)
            _rotate(self, run_dir)  # older checkpoints go only once this one is in place
        self.accelerator.wait_for_everyone()

    def checkpoint_problem(self, checkpoint: str | os.PathLike) -> str | None:
        """Why ``checkpoint`` cannot be resumed from by this process (:func:`checkpoint_problem`)."""
        return checkpoint_problem(checkpoint, self.method_state_file())

    def last_complete_checkpoint(self, output_dir: str | os.PathLike) -> str | None:
        """The newest ``checkpoint-N`` of ``output_dir`` this process can resume from; every newer,
        incomplete one is skipped with a note (:func:`last_complete_checkpoint`)."""

        def skipped(p: Path, why: str) -> None:
            if self.args.should_save:
                from dualselect.utils import note

                note(f"resume: skipped the incomplete checkpoint {p}: {why}")

        return last_complete_checkpoint(output_dir, self.method_state_file(), on_skip=skipped)

    def load_method_state_file(self, path: str | os.PathLike) -> dict[str, Any]:
        """A method-state file read without unpickling code (``torch.load(weights_only=True)``:
        tensors, numbers, strings, lists and dicts only); anything else is a one-line error."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"{path}: not a method state this trainer wrote; refused to load it (only tensors, "
                f"numbers, strings, lists and dicts are read, never code: {first})"
            ) from None
        if not isinstance(state, dict):
            raise ValueError(
                f"{path}: not a method state this trainer wrote (a {type(state).__name__}, not a dict)"
            )
        return state

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """``transformers.Trainer.train``; a resume also restores :meth:`method_state`. ``True``
        resumes from the newest complete checkpoint (incomplete ones are skipped with a note)."""
        if self.args.should_save and self.args.output_dir and Path(self.args.output_dir).is_dir():
            # what a kill mid-save left: .checkpoint-N.tmp (staging) and .checkpoint-N.old.tmp
            for left in Path(self.args.output_dir).glob(".checkpoint-*.tmp"):
                shutil.rmtree(left, ignore_errors=True)
        if resume_from_checkpoint is True:
            resume_from_checkpoint = self.last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"no complete checkpoint found in output_dir {self.args.output_dir!r} to resume from"
                )
        if resume_from_checkpoint:
            why = self.checkpoint_problem(resume_from_checkpoint)
            if why is not None:
                raise ValueError(f"{resume_from_checkpoint}: cannot resume: {why}")
            path = Path(resume_from_checkpoint) / self.method_state_file()
            self.load_method_state(self.load_method_state_file(path))
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def global_supervised_tokens(self) -> int:
        """``supervised_tokens`` summed over the processes of a distributed run (each counts its own)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor([self.supervised_tokens], dtype=torch.long, device=self.args.device)
            dist.all_reduce(t)
            return int(t.item())
        return self.supervised_tokens

    def count_tokens(self, labels: torch.Tensor) -> None:
        """Add a training batch's supervised tokens to the budget; evaluation batches (model in
        eval mode) never count."""
        if not self.model.training:
            return
        self.supervised_tokens += int((labels[:, 1:] != -100).sum())

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        try:
            super()._save(output_dir, state_dict=state_dict)
        except Exception as e:
            # The tokenizers library reports a failed write (disk full, permissions) as a bare
            # Exception: made an OSError naming the directory, a one-line error and not a bug.
            if type(e) is not Exception:
                raise
            raise _os_error(e, output_dir or self.args.output_dir) from e
        from dualselect.training.model_card import write_model_card

        write_model_card(self, output_dir or self.args.output_dir)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.count_tokens(inputs["labels"])
        inputs = self.loss_inputs(model, inputs)
        return super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )

    def loss_inputs(self, model, inputs: dict) -> dict:
        """The model inputs of a task batch for the causal-LM loss. With ``logits_at_targets_only``
        (and neither label smoothing nor a custom ``compute_loss_func``, which read full logits),
        logits are computed only at positions that predict a supervised token: the same loss,
        without projecting prompt positions onto the vocabulary."""
        plain = {k: inputs[k] for k in MODEL_INPUTS}
        if (
            not self.args.logits_at_targets_only
            or self.label_smoother is not None
            or self.compute_loss_func is not None
            or not self.model_accepts_loss_kwargs  # shift_labels reaches the loss as a loss kwarg
        ):
            return plain
        return target_logits_inputs(self.accelerator.unwrap_model(model), plain) or plain


def checkpoint_problem(checkpoint: str | os.PathLike, state_file: str = METHOD_STATE_FILE) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (None: it can): the Trainer's state or the
    method state ``state_file`` is missing (a kill mid-save by an older version, another tool)."""
    p = Path(checkpoint)
    if not p.is_dir():
        return "not a directory"
    if not (p / "trainer_state.json").is_file():
        return "no trainer_state.json (the Trainer's save did not finish)"
    if not (p / state_file).is_file():
        return (
            f"no {state_file} (the method state: counters, selection state); it was not "
            "written by this trainer (or by as many processes), so the run cannot resume exactly"
        )
    return None


def last_complete_checkpoint(
    output_dir: str | os.PathLike, state_file: str = METHOD_STATE_FILE, on_skip=None
) -> str | None:
    """The newest ``checkpoint-N`` of ``output_dir`` that can be resumed from
    (:func:`checkpoint_problem`), or None; ``on_skip(path, why)`` is called for every newer,
    incomplete one."""
    import re

    d = Path(output_dir)
    found = [p for p in d.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
    for p in sorted(found, key=lambda q: int(q.name.split("-")[1]), reverse=True):
        why = checkpoint_problem(p, state_file)
        if why is None:
            return str(p)
        if on_skip is not None:
            on_skip(p, why)
    return None


def _rotate(trainer: Trainer, run_dir: Path) -> None:
    """The Trainer's ``save_total_limit`` rotation over ``run_dir`` (its function or method,
    by transformers version)."""
    if trainer.args.save_total_limit is None:
        return
    if hasattr(trainer, "_rotate_checkpoints"):
        trainer._rotate_checkpoints(use_mtime=False, output_dir=str(run_dir))
        return
    from transformers.trainer_utils import rotate_checkpoints

    rotate_checkpoints(
        output_dir=str(run_dir),
        save_total_limit=trainer.args.save_total_limit,
        best_model_checkpoint=trainer.state.best_model_checkpoint,
        use_mtime=True,
    )


def _os_error(e: Exception, path: str | os.PathLike) -> OSError:
    """An ``OSError`` for a bare ``Exception`` carrying an OS error (``... (os error 28)``)."""
    import re

    text = " ".join(str(e).split())
    m = re.search(r"os error (\d+)", text)
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return OSError(f"saving to {path} failed: {text}")


def _collate(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    from dualselect.data.encoding import collate

    return collate(examples, pad_token_id=pad_token_id, padding_side="right")
