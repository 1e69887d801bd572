"""Bad config: every bad value, type, YAML file and path is refused before any model
loads, in one line naming the file and key (or the flag), with exit code 2 and no traceback."""

from __future__ import annotations

import pytest

from dualselect.cli.main import main
from dualselect.training.run import ConfigError, load_config
from dualselect.training.validation import check_output_dir, config_warnings, pool_warnings
from dualselect.utils import load_yaml_config

# (method, YAML text, regex the one-line error must match): each probe of the list.
BAD_VALUES = [
    ("sft", "learning_rate: 0\n", r"learning_rate=0\.0: must be > 0"),
    ("sft", "learning_rate: -1e-3\n", r"learning_rate=-0\.001: must be > 0"),
    ("sft", "learning_rate: .nan\n", r"learning_rate=nan: must be a finite"),
    ("sft", "learning_rate: .inf\n", r"learning_rate=inf: must be a finite"),
    ("sft", "lora_alpha: -2\n", r"lora_alpha=-2: must be > 0"),
    ("sft", "lora_alpha: 0\n", r"lora_alpha=0: must be > 0"),
    ("sft", "lora_r: 0\n", r"lora_r=0: must be >= 1"),
    ("sft", "lora_dropout: 1.0\n", r"lora_dropout=1\.0: must be in \[0, 1\)"),
    ("sft", "max_length: 1\n", r"max_length=1: must be >= 2"),
    ("sft", "max_steps: 0\n", r"max_steps=0: must be >= 1 or == -1"),
    ("sft", "max_steps: -5\n", r"max_steps=-5: must be >= 1 or == -1"),
    ("sft", "num_train_epochs: 0\n", r"num_train_epochs=0\.0: must be > 0"),
    ("sft", "gradient_accumulation_steps: 0\n", r"gradient_accumulation_steps=0: must be >= 1"),
    ("sft", "per_device_train_batch_size: 0\n", r"per_device_train_batch_size=0: must be >= 1"),
    ("sft", "weight_decay: -0.1\n", r"weight_decay=-0\.1: must be >= 0"),
    ("sft", "max_grad_norm: -1\n", r"max_grad_norm=-1\.0: must be >= 0"),
    ("sft", "warmup_steps: -1\n", r"warmup_steps=-1(\.0)?: must be >= 0"),
    ("sft", "logging_steps: 0\n", r"logging_steps=0\.0: must be > 0"),
    ("dualselect", "eta: -0.5\n", r"eta=-0\.5: must be >= 0"),
    ("dualselect", "k_ref: 0\n", r"k_ref=0: must be >= 1"),
    ("dualselect", "k_task: 0\n", r"k_task=0: must be >= 1"),
    ("dualselect", "refresh_steps: 0\n", r"refresh_steps=0: must be >= 1"),
    ("dualselect", "score_batch_size: 0\n", r"score_batch_size=0: must be >= 1"),
    ("dualselect", "ref_pool_cap: 0\n", r"ref_pool_cap=0: must be >= 1"),
    ("dualselect", "selection_warmup_steps: 0\n", r"selection_warmup_steps=0: must be >= 1"),
    ("dualselect", "tau_ref: 0\n", r"tau_ref=0\.0: must be > 0"),
    ("dualselect", "nu: -1\n", r"nu=-1\.0: must be >= 0"),
    ("dualselect", "mu_task: -1\n", r"mu_task=-1\.0: must be >= 0"),
    ("dualselect", "refresh_angle: 0\n", r"refresh_angle=0\.0: must be in \(0, 180\]"),
    ("dualselect", "k_ref_fraction: 1.5\n", r"k_ref_fraction=1\.5: must be in \(0, 1\]"),
    ("dualselect", "task_token_fraction: 0\n", r"task_token_fraction=0\.0: must be in \(0, 1\]"),
    ("lisa", "finetune_steps: 0\n", r"finetune_steps=0: must be >= 1"),
    ("lisa", "rho: -1\n", r"rho=-1\.0: must be >= 0"),
    ("safeinstr", "safety_fraction: 0\n", r"safety_fraction=0\.0: must be in \(0, 1\]"),
    ("kl", "kl_lambda: -1\n", r"kl_lambda=-1\.0: must be >= 0"),
]

BAD_TYPES = [
    ("learning_rate: abc\n", r"learning_rate: expected a number, got 'abc'"),
    ("learning_rate: true\n", r"learning_rate: expected a number, got True"),
    ("lora_r: 2.5\n", r"lora_r: expected an integer, got 2\.5"),
    ("lora_r: '8'\n", r"lora_r: expected an integer, got '8'"),
    ("skip_invalid: 'yes please'\n", r"skip_invalid: expected true or false"),
    ("max_length: null\n", r"max_length: must not be empty"),
    ("lora_target_modules: {a: 1}\n", r"lora_target_modules: expected a list"),
    ("train_data: [a, b]\n", r"train_data: expected a string"),
]

BAD_YAML = [
    ("- a\n- b\n", r"top level must be a mapping.*not a list"),
    ("just a string\n", r"top level must be a mapping.*not a str"),
    ("42\n", r"top level must be a mapping.*not a int"),
    ("a: [1\n", r":2:1: invalid YAML: .*expected ',' or ']'"),
    ("a: b: c\n", r":1:5: invalid YAML: mapping values are not allowed"),
    ("x: !!python/object/apply:os.system ['echo pwned']\n", r":1:4: invalid YAML: .*python/object/apply"),
    ("x: !!python/name:os.system\n", r"invalid YAML: .*python/name"),
    ("learning_rate: 0.1\nlearning_rate: 0.2\n", r":2:1: invalid YAML: found duplicate key 'learning_rate'"),
    ("a:\n  b: 1\n  b: 2\n", r":3:3: invalid YAML: found duplicate key 'b'"),
    ("1: x\n", r"config keys must be strings"),
    ("learning_rat: 0.1\n", r"unknown key\(s\) \['learning_rat'\]"),
]


def _cli(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("method,text,pattern", BAD_VALUES, ids=[v[1].strip() for v in BAD_VALUES])
def test_bad_values_name_file_and_key(tmp_path, method, text, pattern):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"bad\.yaml: {pattern}"):
        load_config(method, str(p))


@pytest.mark.parametrize("method,text,pattern", BAD_VALUES[:6] + BAD_VALUES[18:24])
def test_bad_values_as_flags_name_the_flag(method, text, pattern):
    key, _, value = text.strip().partition(": ")
    value = {".nan": "nan", ".inf": "inf"}.get(value, value)
    with pytest.raises(ConfigError, match=rf"--{key}: {pattern}"):
        load_config(method, argv=[f"--{key}={value}"])


@pytest.mark.parametrize("method,text,pattern", BAD_VALUES[:3] + BAD_VALUES[18:21])
def test_python_configs_have_the_same_domains(method, text, pattern):
    """SFTConfig(...) built in Python is held to the same domains (the __post_init__ hook)."""
    import yaml

    from dualselect.training import METHODS

    key = text.partition(":")[0]
    with pytest.raises(ValueError, match=rf"invalid \w+Config: .*{key}=.*(must be|expected a number)"):
        METHODS[method][0](**yaml.safe_load(text))


@pytest.mark.parametrize("text,pattern", BAD_TYPES, ids=[t[0].strip() for t in BAD_TYPES])
def test_bad_types_named_as_file_key(tmp_path, text, pattern):
    p = tmp_path / "types.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"types\.yaml: {pattern}"):
        load_config("sft", str(p))


def test_yaml_1_1_exponent_floats_and_ints_are_numbers(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("learning_rate: 1e-3\nmax_grad_norm: 2\nlora_target_modules: q_proj\n")
    cfg = load_config("sft", str(p))
    assert cfg.learning_rate == 1e-3 and cfg.max_grad_norm == 2.0
    assert cfg.lora_target_modules == ["q_proj"]


@pytest.mark.parametrize("text,pattern", BAD_YAML, ids=[t[0].strip()[:30] for t in BAD_YAML])
def test_bad_yaml_files(tmp_path, capsys, text, pattern):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as e:
        load_config("sft", str(p))
    assert "\n" not in str(e.value) and str(p) in str(e.value)
    rc, err = _cli(capsys, ["train", "--config", str(p)])
    assert rc == 2 and err.count("\n") == 0 and "Traceback" not in err and str(p) in err


def test_python_tag_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "c.yaml"
    p.write_text(f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_config("sft", str(p))
    assert not marker.exists()


def test_empty_and_bom_yaml_are_empty_configs(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("")
    assert load_config("sft", str(p)).learning_rate == 2e-5
    p.write_bytes("\ufefflearning_rate: 0.5\n".encode())
    assert load_config("sft", str(p)).learning_rate == 0.5


def test_missing_config_file_and_unknown_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = _cli(capsys, ["train", "--config", str(tmp_path / "nope.yaml")])
    assert rc == 2 and "nope.yaml" in err and "\n" not in err
    rc, err = _cli(capsys, ["train", "--learning_rat", "0.1"])  # no silent prefix match
    assert rc == 2 and "unrecognized arguments: --learning_rat" in err and "\n" not in err
    rc, err = _cli(capsys, ["train", "--learning_rate", "abc"])
    assert rc == 2 and "--learning_rate" in err and "invalid float value: 'abc'" in err
    assert "\n" not in err and "usage" not in err


@pytest.mark.parametrize(
    "argv,pattern",
    [
        (
            ["--gradient_accumulation_steps", "0"],
            "--gradient_accumulation_steps: gradient_accumulation_steps=0",
        ),
        (["--max_steps", "0"], "--max_steps: max_steps=0"),
        (["--num_train_epochs", "0", "--max_steps", "-1"], "--num_train_epochs: num_train_epochs=0.0"),
        (["--method", "dualselect", "--k_task", "0"], "--k_task: k_task=0"),
        (["--method", "dualselect", "--k_ref", "0"], "--k_ref: k_ref=0"),
        (["--method", "nope"], "unknown method 'nope'"),
        (
            ["--model_name_or_path", "/nonexistent/model"],
            "model_name_or_path='/nonexistent/model': no such directory",
        ),
        (["--train_data", "missing.jsonl"], "train_data='missing.jsonl': no such file"),
    ],
)
def test_cli_config_errors_exit_2_in_one_line(capsys, monkeypatch, tmp_path, argv, pattern):
    monkeypatch.chdir(tmp_path)
    rc, err = _cli(capsys, ["train", *argv])
    assert rc == 2 and err.startswith("dualselect train: error:") and pattern in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_model_path_checks(tmp_path, monkeypatch):
    from dualselect.training.validation import check_model_path

    check_model_path("organism")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a model directory"):
        check_model_path(str(tmp_path / "empty"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        check_model_path(str(tmp_path / "f"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not in the local hub cache"):
        check_model_path("no-such-org/no-such-model-xyz")


def test_output_dir_not_writable_or_full(tmp_path, monkeypatch):
    import shutil
    import tempfile

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "afile" / "run")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", denied)
        with pytest.raises(ConfigError, match=r"cannot write in .*Permission denied"):
            check_output_dir(tmp_path / "run")

    real = shutil.disk_usage

    def full(path):
        return real(path)._replace(free=3 * 2**20)

    monkeypatch.setattr(shutil, "disk_usage", full)
    with pytest.raises(ConfigError, match=r"only 3 MB free"):
        check_output_dir(tmp_path / "run")
    check_output_dir(tmp_path / "run", min_free_mb=1)
    assert not (tmp_path / "run").exists()  # checking creates nothing


def test_read_only_output_dir_from_the_cli(tmp_path, capsys, organism_dir):
    """A file where the output directory should be: refused before the model loads."""
    (tmp_path / "ro").write_text("")
    rc, err = _cli(
        capsys,
        ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(tmp_path / "ro" / "run")],
    )
    assert rc == 2 and "is a file, not a directory" in err and "\n" not in err


def test_warnings_for_clipped_k_ref():
    assert config_warnings(load_config("dualselect")) == []  # release defaults
    cfg = load_config("dualselect", overrides={"ref_pool_cap": 10, "k_ref": 32})
    assert any("clipped to 10" in w for w in config_warnings(cfg))
    (w,) = pool_warnings(load_config("dualselect"), pool_size=20)
    assert "k_ref=32 > the 20 references" in w and "clipped to 20" in w
    assert pool_warnings(load_config("dualselect", overrides={"k_ref": 5}), pool_size=20) == []


def test_extends_base_config(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.yaml").write_text("learning_rate: 0.01\nlora_r: 4\nseed: 3\n")
    (tmp_path / "child.yaml").write_text("extends: base/common.yaml\nlora_r: 8\n")
    cfg = load_config("sft", str(tmp_path / "child.yaml"))
    assert (cfg.learning_rate, cfg.lora_r, cfg.seed) == (0.01, 8, 3)
    data, origin = load_yaml_config(tmp_path / "child.yaml")
    assert origin["learning_rate"].endswith("common.yaml") and origin["lora_r"].endswith("child.yaml")
    # errors name the file that set the key, even through extends
    (tmp_path / "base" / "common.yaml").write_text("learning_rate: 0\n")
    with pytest.raises(ConfigError, match=r"common\.yaml: learning_rate=0\.0"):
        load_config("sft", str(tmp_path / "child.yaml"))
    # nested mappings merge key by key; lists are replaced
    (tmp_path / "a.yaml").write_text("training: {max_steps: 5, seed: 1}\nmethods: [sft, dualselect]\n")
    (tmp_path / "b.yaml").write_text("extends: [a.yaml]\ntraining: {seed: 2}\nmethods: [sft]\n")
    data, _ = load_yaml_config(tmp_path / "b.yaml")
    assert data == {"training": {"max_steps": 5, "seed": 2}, "methods": ["sft"]}


def test_extends_cycles_and_missing_bases(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml_config(tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("extends: ./self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml_config(tmp_path / "self.yaml")
    (tmp_path / "c.yaml").write_text("extends: nope.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: extends: no such file"):
        load_yaml_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: {a: 1}\n")
    with pytest.raises(ConfigError, match="expected a file name"):
        load_yaml_config(tmp_path / "d.yaml")
    # a diamond is not a cycle
    (tmp_path / "root.yaml").write_text("seed: 1\n")
    (tmp_path / "l.yaml").write_text("extends: root.yaml\nlora_r: 2\n")
    (tmp_path / "r.yaml").write_text("extends: root.yaml\nlora_alpha: 4\n")
    (tmp_path / "top.yaml").write_text("extends: [l.yaml, r.yaml]\n")
    assert load_yaml_config(tmp_path / "top.yaml")[0] == {"seed": 1, "lora_r": 2, "lora_alpha": 4}


def test_every_numeric_field_declares_its_domain():
    """One config system: each method's numeric fields carry their domain in their metadata (or,
    inherited from TrainingArguments, in INHERITED_DOMAINS); a field added without one fails here."""
    import dataclasses
    import typing

    from dualselect.training import METHODS
    from dualselect.training.validation import domain_predicate, field_domains

    exempt = {
        "local_rank",
        "eval_steps",
        "logging_steps",
        "save_steps",
        "eval_delay",
        "torch_empty_cache_steps",
    }
    for method in ("sft", "dualselect", "lisa", "kl", "safeinstr", "l2_prev"):
        cls = METHODS[method][0]
        hints = typing.get_type_hints(cls)
        domains = field_domains(cls)
        own = [f for f in dataclasses.fields(cls) if f.name in getattr(cls, "__annotations__", {})]
        for f in own:
            args = {a for a in typing.get_args(hints[f.name]) if a is not type(None)} or {hints[f.name]}
            if args <= {int, float} and f.name not in exempt:
                assert f.name in domains and domains[f.name]["domain"], f"{cls.__name__}.{f.name}"
        for spec in domains.values():
            if spec["domain"]:
                domain_predicate(spec["domain"])  # every declared domain parses


def test_domain_strings_mean_what_they_say():
    from dualselect.training.validation import domain_predicate

    cases = {
        "> 0": {0: False, 1e-9: True},
        ">= 1": {0: False, 1: True},
        "in (0, 1]": {0: False, 0.5: True, 1: True, 1.01: False},
        "in [0, 1)": {0: True, 1: False},
        "in [0, 2**32)": {2**32 - 1: True, 2**32: False},
        ">= 1 or == -1": {-1: True, 0: False, 3: True},
        ">= 1 and <= 65536": {65536: True, 65537: False, 0: False},
    }
    for domain, probes in cases.items():
        ok = domain_predicate(domain)
        assert {v: ok(v) for v in probes} == probes, domain
    with pytest.raises(ValueError, match="malformed domain"):
        domain_predicate("positive")
