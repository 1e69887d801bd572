"""The command line: one method registry for
every command, names checked before any work, --help grouped with the method's own fields first,
a summary table after eval, and no progress-bar redraws in logs without a terminal."""

from __future__ import annotations

import pytest

from dualselect.cli.main import main
from dualselect.training.run import ConfigError, load_config, method_names, resolve_method


def test_train_accepts_every_name_compare_and_demo_accept():
    from dualselect.experiments.compare_config import DEFAULT_METHODS
    from dualselect.training.presets import PRESETS

    assert set(PRESETS) <= set(method_names()) and set(DEFAULT_METHODS) <= set(method_names())
    for name in PRESETS:
        trainer_method, preset = resolve_method(name)
        cfg = load_config(name)
        assert all(getattr(cfg, k) == v for k, v in preset.items()), name
    assert resolve_method("ds_soft") == ("dualselect", {"ref_mode": "soft", "task_mode": "soft"})


def test_preset_then_yaml_then_flags(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: ds_soft\ntask_mode: hard\neta: 0.3\n")
    cfg = load_config("ds_soft", str(p), ["--eta", "0.4"])
    assert (cfg.ref_mode, cfg.task_mode, cfg.eta) == ("soft", "hard", 0.4)


def test_unknown_method_lists_every_name(capsys):
    with pytest.raises(ConfigError, match=r"unknown method 'dualselct'.*ds_soft.*static_refs"):
        resolve_method("dualselct")
    assert main(["train", "--method", "dualselct", "--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown method 'dualselct'" in err and "\n" not in err


def test_help_lists_the_methods_own_fields_first(capsys):
    assert main(["train", "--method", "dualselect", "--help"]) == 0
    out = capsys.readouterr().out.splitlines()
    heads = [i for i, line in enumerate(out) if line and not line.startswith(" ") and line.endswith(":")]
    titles = [out[i] for i in heads]
    assert titles[0].startswith("DualSelectConfig: the method's own fields")
    assert titles[1].startswith("SFTConfig") and titles[2].startswith("TrainingArguments")
    eta = next(i for i, line in enumerate(out) if line.startswith("  --eta "))
    assert eta < 80 and "(default: 0.2)" in out[eta]
    # every field appears exactly once
    from dualselect.training import DualSelectConfig

    flags = [line.split()[0] for line in out if line.startswith("  --")]
    assert len(flags) == len(set(flags))
    import dataclasses

    assert {f"--{f.name}" for f in dataclasses.fields(DualSelectConfig) if f.init} == set(flags)


def test_help_of_a_preset_shows_its_settings(capsys):
    assert main(["train", "--method", "ds_no_correction", "--help"]) == 0
    out = capsys.readouterr().out
    assert "ds_no_correction: DualSelect without gradient correction" in out
    assert "  --eta float  (default: 0.0)" in out


def test_eval_summary_table():
    from dualselect.cli.eval_cmd import summary_table

    results = {
        "judges": ["keyword"],
        "suites": {"h": {"n": 2, "kind": "harmful"}, "t": {"n": 2, "kind": "capability"}},
        "methods": {
            "base": {"exact_match_strict.t": 0.5, "refusal_rate.h.keyword": 1.0, "incoherence_rate": 0.0},
            "sft": {
                "exact_match_strict.t": 0.75,
                "refusal_rate.h.keyword": 0.25,
                "incoherence_rate": 0.5,
                "safety_avg.keyword": 50.0,
                "kl_base": -1e-9,
            },
        },
    }
    table = summary_table(results).splitlines()
    assert table[0].split()[:3] == ["variant", "capability", "incoherent"]
    assert table[2].split()[:4] == ["base", "50.0%", "0.0%", "100.0%"]
    assert table[3].split() == ["sft", "75.0%", "50.0%", "25.0%", "50.0", "0.000"]


def test_no_progress_bar_redraws_without_a_terminal(organism_dir, tmp_path):
    """The real case: the command's output goes to a file or pipe (a fresh process)."""
    import os
    import subprocess
    import sys

    argv = ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(tmp_path / "r")]
    argv += ["--max_steps", "2", "--logging_steps", "1", "--max_length", "128"]
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    p = subprocess.run(
        [sys.executable, "-m", "dualselect.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "\r" not in p.stderr and "\r" not in p.stdout
    assert "'loss'" in p.stdout  # the Trainer's log lines are still there, one per line


def test_demo_rejects_a_typo_before_training(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("no work may start")

    monkeypatch.setattr("dualselect.organism.train.build_organism", boom)
    assert main(["demo", "--methods", "sft,dualselct", "--out", str(tmp_path / "d")]) == 2
    assert "unknown method 'dualselct'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ fast errors and help


def test_help_and_config_errors_import_no_torch(tmp_path):
    """`train --help` and config errors are answered from the cached field spec: no torch import
    (about 0.4 s instead of 15 s on the shared 2-core test machine)."""
    import os
    import subprocess
    import sys

    (tmp_path / "bad.yaml").write_text("learning_rate: 0\n")
    # build the cache first (this imports torch), then answer from it in a fresh process
    code = "from dualselect.training.fieldspec import field_spec\nfield_spec('dualselect')\n"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ), timeout=600)
    check = (
        "import sys\n"
        "from dualselect.cli.main import main\n"
        "rcs = [main(['train', '--method', 'dualselect', '--help']), main(['train', '--config', sys.argv[1]]),\n"
        "       main(['train', '--method', 'ds_soft', '--k_task', '0']), main(['train', '--model_name_or_path', '/nope'])]\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]\n"
        "print(rcs, heavy[:3])\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", check, str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )
    assert p.stdout.strip().splitlines()[-1] == "[0, 2, 2, 2] []", p.stderr[-2000:]
    assert "learning_rate=0.0: must be > 0" in p.stderr and "--k_task: k_task=0" in p.stderr


def test_precheck_reports_what_load_config_reports(tmp_path):
    from dualselect.training.fieldspec import precheck
    from test_config import BAD_TYPES, BAD_VALUES

    for method, text, pattern in BAD_VALUES:
        p = tmp_path / "bad.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=rf"bad\.yaml: {pattern}"):
            precheck(method, str(p))
    for text, pattern in BAD_TYPES:
        p = tmp_path / "types.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=rf"types\.yaml: {pattern}"):
            precheck("sft", str(p))


def test_precheck_accepts_what_load_config_accepts(tmp_path, monkeypatch):
    from dualselect.training.fieldspec import precheck
    from dualselect.training.presets import PRESETS

    monkeypatch.chdir(tmp_path)
    p = tmp_path / "ok.yaml"
    p.write_text(
        "learning_rate: 1e-3\nlora_target_modules: [q_proj, v_proj]\nskip_invalid: true\nmax_steps: 5\n"
    )
    argv = ["--lora_r", "4", "--lora_target_modules", "q_proj", "k_proj", "--skip_invalid", "--seed=3"]
    argv += [
        "--no_dataloader_pin_memory",
        "--report_to",
        "none",
        "--max_steps",
        "-1",
        "--num_train_epochs",
        "2",
    ]
    for name in PRESETS:
        precheck(name, str(p), argv)
        cfg = load_config(name, str(p), argv)
        assert cfg.lora_r == 4 and cfg.lora_target_modules == ["q_proj", "k_proj"] and cfg.seed == 3
    with pytest.raises(ConfigError, match="unrecognized arguments: --nope"):
        precheck("sft", None, ["--nope", "1"])
    with pytest.raises(ConfigError, match=r"argument --lora_r: invalid int value: 'x'"):
        precheck("sft", None, ["--lora_r", "x"])


def test_field_spec_cache_is_rebuilt_when_missing(tmp_path, monkeypatch):
    from dualselect.training.fieldspec import field_spec

    monkeypatch.setenv("DUALSELECT_CACHE", str(tmp_path))
    spec = field_spec("lisa")
    assert list(tmp_path.glob("fieldspec/*.json"))
    assert spec["groups"][0][0].startswith("LisaConfig") and "rho" in spec["groups"][0][1]
    assert spec["fields"]["learning_rate"] == {
        "type": "float",
        "optional": False,
        "default": 2e-5,
        "default_exact": True,
        "help": "AdamW learning rate (release: 2e-5).",
        "domain": "> 0",
        "choices": None,
    }


def test_errors_name_the_preset_or_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("eta: -1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: eta=-1\.0: must be >= 0"):
        load_config("ds_soft", str(p))
    with pytest.raises(ConfigError, match=r"--eta: eta=-1\.0"):
        load_config("ds_no_correction", str(tmp_path / "c.yaml"), ["--eta=-1"])


def test_library_messages_reach_stderr_once_with_one_prefix(capsys):
    """The command line shows the library's notes and warnings, from any dualselect module's
    logger, as one `note: ...` / `warning: ...` line each (never a doubled prefix)."""
    import logging

    from dualselect.utils import log_to_stderr, note, warn

    log_to_stderr()
    log_to_stderr()  # idempotent: one handler
    note("removed 2 entries")
    warn("k_ref above the pool")
    logging.getLogger("dualselect.evaluation.provenance").info("child logger note")
    assert capsys.readouterr().err.splitlines() == [
        "note: removed 2 entries",
        "warning: k_ref above the pool",
        "note: child logger note",
    ]
