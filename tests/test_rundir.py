"""The run directory (training/rundir.py): --overwrite and export --force remove only what a run's
manifest lists and write over no file a run did not write; a run is published by its manifest, so
eval and export say "incomplete run" for an interrupted one; one training process per directory;
an adapter is refused on another base than the one it was trained on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dualselect.cli.main import main
from dualselect.training.run import ConfigError, run_training
from dualselect.training.rundir import LOCK, MANIFEST, RunLock, check_run_complete
from dualselect.training.validation import prepare_run_dir
from training_helpers import sft_cfg


def _err_line(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error:" in x]
    assert len(lines) == 1, lines
    return lines[0]


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(organism_dir, tmp_path_factory):
    """One finished run (2 steps, a checkpoint per step), copied by the tests that change it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    run_training("sft", sft_cfg(organism_dir, out, save_strategy="steps", save_steps=1))
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------ --overwrite


def test_overwrite_removes_only_the_manifests_files_and_names_them(organism_dir, tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("before the run")
    (out / "mine").mkdir()
    run_training("sft", sft_cfg(organism_dir, out, save_strategy="steps", save_steps=1), overwrite=True)
    m = json.loads((out / MANIFEST).read_text())
    assert m["status"] == "complete" and m["preexisting"] == ["mine", "notes.txt"]
    assert {"adapter_model.safetensors", "checkpoint-1", "checkpoint-2", "log.json"} <= set(m["files"])
    assert "notes.txt" not in m["files"] and not (out / LOCK).exists()
    (out / "later.txt").write_text("after the run")  # a file the run did not write, added after it
    caplog.clear()
    with caplog.at_level("INFO", logger="dualselect"):  # library notes go to the dualselect logger
        run_training("sft", sft_cfg(organism_dir, out, seed=1), overwrite=True)
    err = caplog.text
    assert "removed the previous run's" in err and "checkpoint-1" in err
    assert "kept 3 entries no run wrote: later.txt, mine, notes.txt" in err
    assert not list(out.glob("checkpoint-*"))
    assert (out / "notes.txt").read_text() == "before the run" and (out / "later.txt").exists()
    assert (out / "mine").is_dir()


def test_overwrite_never_deletes_user_files_named_like_a_runs(trained, tmp_path, capsys):
    """eval/, runs/, checkpoint-*, data_report_*.json and vocab.json of the user's beside a run:
    --overwrite used to delete them. Now it refuses (one line, exit 2) and changes nothing."""
    out = _copy(trained, tmp_path / "run")
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text("{}")
    (out / "runs").mkdir()
    (out / "checkpoint-best-mine").mkdir()
    (out / "checkpoint-best-mine" / "w.bin").write_bytes(b"mine")
    (out / "data_report_mine.json").write_text("{}")
    (out / "vocab.json").write_text("{}")
    before = _snapshot(out)
    capsys.readouterr()
    with pytest.raises(ConfigError, match=r"which no run wrote and a run writes: nothing was removed"):
        prepare_run_dir(out, overwrite=True)
    assert _snapshot(out) == before
    # through the CLI: one line, exit 2, nothing touched (checked before any model loads)
    argv = ["train", "--output_dir", str(out), "--max_steps", "1", "--overwrite", "--max_length", "128"]
    argv += ["--model_name_or_path", _organism(out)]
    assert main(argv) == 2
    line = _err_line(capsys)
    assert "checkpoint-best-mine" in line and "data_report_mine.json" in line and "eval" in line
    assert _snapshot(out) == before and not (out / LOCK).exists()


def _organism(run: Path) -> str:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["model_name_or_path"]


def test_overwrite_of_a_folder_holding_no_run_writes_over_nothing(organism_dir, tmp_path, capsys):
    d = tmp_path / "project"
    d.mkdir()
    for name, text in (("README.md", "my project"), ("config.yaml", "lr: 1\n"), ("tokenizer.json", "{}")):
        (d / name).write_text(text)
    before = _snapshot(d)
    argv = ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(d)]
    argv += ["--max_steps", "1", "--max_length", "128", "--overwrite"]
    assert main(argv) == 2
    line = _err_line(capsys)
    assert "README.md, config.yaml, tokenizer.json, which no run wrote" in line
    assert _snapshot(d) == before and sorted(p.name for p in d.iterdir()) == sorted(before)


def test_overwrite_of_a_run_without_manifest_is_refused(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "log.json").write_text("{}")  # a run of an older version
    (d / "README.md").write_text("yours or the run's: cannot tell")
    with pytest.raises(ConfigError, match=r"holds a run without run_manifest.json .*nothing was removed"):
        prepare_run_dir(d, overwrite=True)
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "log.json"]


def test_overwrite_of_a_killed_run_removes_its_files_only(tmp_path):
    """A run killed mid-training left a 'running' manifest: its run-named entries go, the ones
    that were there before it stay."""
    from dualselect.training.rundir import start_manifest

    d = tmp_path / "killed"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    start_manifest(d)
    (d / "checkpoint-3").mkdir()
    (d / "selection_log.jsonl").write_text("")
    prepare_run_dir(d, overwrite=True)
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]


# ------------------------------------------------------------------------------ completion marker


KILL_MID_SAVE = r"""
import os, signal, sys
import dualselect.training.run as run
real = os.replace
moves = []
def replace(a, b):
    real(a, b)
    moves.append(b)
    if str(b).endswith("adapter_config.json"):  # moved; the weights are not yet
        os.kill(os.getpid(), signal.SIGKILL)
run.os.replace = replace
from dualselect.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_between_adapter_moves_is_an_incomplete_run(organism_dir, tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    argv = ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(out)]
    argv += ["--max_steps", "1", "--max_length", "128"]
    res = subprocess.run(
        [sys.executable, "-c", KILL_MID_SAVE, *argv], env=env, capture_output=True, text=True
    )
    assert res.returncode == -9, res.stderr[-2000:]
    assert (out / "adapter_config.json").exists() and not (out / "adapter_model.safetensors").exists()
    rc = main(["eval", "--model", f"x={out}", "--out", str(tmp_path / "ev")])
    line = _err_line(capsys)
    assert rc == 2 and "incomplete run" in line and "'running'" in line, line
    assert not (tmp_path / "ev").exists()
    rc = main(["export", str(out), "--out", str(tmp_path / "exp")])
    assert rc == 2 and "incomplete run" in _err_line(capsys)
    # the killed run is replaced with --overwrite (its manifest lists what to remove)
    assert main([*argv, "--overwrite"]) == 0
    assert check_run_complete(out)["status"] == "complete"


def test_adapters_without_a_manifest(tmp_path, trained):
    """An adapter saved elsewhere or by an older version has no manifest: accepted with weights,
    "incomplete" without them."""
    d = _copy(trained, tmp_path / "old")
    (d / MANIFEST).unlink()
    assert check_run_complete(d) is None
    (d / "adapter_model.safetensors").unlink()
    with pytest.raises(ValueError, match="incomplete run: adapter_config.json without adapter weights"):
        check_run_complete(d)


# ------------------------------------------------------------------------------ lock

HOLD = r"""
import sys, time
from dualselect.training.rundir import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_training_process_on_one_output_dir_is_refused(organism_dir, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(out)]
        argv += ["--max_steps", "1", "--max_length", "128"]
        assert main(argv) == 2
        line = _err_line(capsys)
        assert f"in use by another training process (pid {holder.pid}" in line
        assert main([*argv, "--overwrite"]) == 2  # --overwrite does not break a lock either
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale, taken over with a note
    assert json.loads((out / LOCK).read_text())["pid"] == holder.pid
    capsys.readouterr()
    assert main(argv) == 0
    assert f"took over a stale lock of pid {holder.pid}" in capsys.readouterr().err
    assert not (out / LOCK).exists()  # released at the end


def test_lock_is_exclusive_and_released_on_exit(tmp_path):
    with RunLock(tmp_path / "d"), pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path / "d").acquire()
    with RunLock(tmp_path / "d"):  # released: free again
        pass


# ------------------------------------------------------------------------------ base fingerprint


def test_base_fingerprint_is_the_same_with_lora_and_changes_with_the_weights(organism_dir):
    import copy

    import torch

    from dualselect.training.lora import apply_lora
    from dualselect.training.model import load_model_and_tokenizer
    from dualselect.training.rundir import base_fingerprint

    model, tok = load_model_and_tokenizer(str(organism_dir))
    fp = base_fingerprint(model, tok)
    other = copy.deepcopy(model)
    assert base_fingerprint(apply_lora(copy.deepcopy(model), r=4, alpha=8, dropout=0.0), tok) == fp
    assert base_fingerprint(copy.deepcopy(model).to(torch.bfloat16), tok) == fp  # trained in bf16
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 0.5
    assert base_fingerprint(other, tok) != fp


def test_eval_refuses_an_adapter_trained_on_another_base(
    organism_dir, trained, tmp_path, capsys, monkeypatch
):
    import torch

    from dualselect.training.model import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(organism_dir))
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 0.5
    other = tmp_path / "other_base"
    model.save_pretrained(other)
    tok.save_pretrained(other)
    _copy(Path(organism_dir) / "data", other / "data")  # the organism's probe suites

    class Reached(Exception):
        pass

    def stop(*a, **k):
        raise Reached

    monkeypatch.setattr("dualselect.evaluation.harness.evaluate", stop)
    argv = ["eval", "--model", f"x={trained}", "--out", str(tmp_path / "ev"), "--limit", "1"]
    assert main([*argv, "--base", str(other)]) == 2
    line = _err_line(capsys)
    assert (
        "x: " in line
        and "trained on another base model than --base" in line
        and "--allow-base-mismatch" in line
    )
    with pytest.raises(Reached):  # allowed: a warning, then the evaluation
        main([*argv, "--base", str(other), "--allow-base-mismatch"])
    assert "warning: --model x:" in capsys.readouterr().err
    with pytest.raises(Reached):  # its own base (another copy of it): no complaint
        main([*argv, "--base", str(organism_dir)])
    assert "another base" not in capsys.readouterr().err


# ------------------------------------------------------------------------------ export --force


def test_export_force_removes_only_the_previous_exports_files(trained, tmp_path, capsys):
    from dualselect.training.export import export_run

    out = tmp_path / "exp"
    export_run(trained, out)
    m = json.loads((out / MANIFEST).read_text())
    assert (
        m["status"] == "complete"
        and m["base_fingerprint"] == json.loads((trained / MANIFEST).read_text())["base_fingerprint"]
    )
    (out / "notes.txt").write_text("mine")
    (out / "extra_from_old_export").write_text("x")
    m["files"].append("extra_from_old_export")
    (out / MANIFEST).write_text(json.dumps(m))
    export_run(trained, out, force=True)
    assert (out / "notes.txt").read_text() == "mine" and not (out / "extra_from_old_export").exists()
    assert (out / "adapter_model.safetensors").exists()
    assert check_run_complete(out)["preexisting"] == ["notes.txt"]
    # a folder holding no export: a file the export writes is never replaced
    d = tmp_path / "project"
    d.mkdir()
    (d / "README.md").write_text("my project")
    (d / "paper.tex").write_text("x")
    before = _snapshot(d)
    capsys.readouterr()
    assert main(["export", str(trained), "--out", str(d), "--force"]) == 2
    assert "README.md, which no export or run wrote" in _err_line(capsys)
    assert _snapshot(d) == before
    (d / "README.md").unlink()  # nothing in the way: written beside the user's files
    assert main(["export", str(trained), "--out", str(d), "--force"]) == 0
    assert (d / "paper.tex").read_text() == "x" and (d / "adapter_model.safetensors").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_run_that_fails_before_writing_anything_leaves_no_run_behind(organism_dir, tmp_path):
    bad = tmp_path / "bad_model"
    bad.mkdir()
    (bad / "config.json").write_text("{}")  # passes the path check, fails to load
    out = tmp_path / "run"
    data = str(organism_dir / "data" / "redorca_train.jsonl")
    with pytest.raises(Exception):  # noqa: B017 - whatever transformers raises for it
        run_training("sft", sft_cfg(bad, out, train_data=data))
    assert list(out.iterdir()) == []  # no manifest, no lock: a retry is not refused
    prepare_run_dir(out)
