"""The aligned real base's recipe: the shipped file, validation, the cache key (full config + input
bytes), the CLI, and the name `smollm2-135m-safe` resolving to a built base without ever building."""

from __future__ import annotations

import ast
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path

import pytest

from dualselect.cache import canonical_json, mark_done
from dualselect.realbase.data import FILES, SplitConfig
from dualselect.realbase.recipe import (
    RealBaseConfig,
    default_recipe,
    input_files,
    load_recipe,
    realbase_dir,
)
from dualselect.utils import ConfigError, read_yaml

SRC = Path(__file__).resolve().parents[1] / "src" / "dualselect"


@pytest.fixture
def data_copy(shared_data, tmp_path):
    """A private copy of the benchmark files the key reads (their bytes may be changed)."""
    for rel in FILES.values():
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / rel, tmp_path / "data" / rel)
    return tmp_path / "data"


@pytest.fixture
def local_base(tmp_path):
    """A local 'checkpoint' directory (the key hashes every file of a local base)."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text('{"a": 1}')
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    return d


def test_the_shipped_recipe_sets_every_field_and_equals_the_defaults():
    path = default_recipe("smollm2-135m")
    raw = read_yaml(path)
    assert set(raw) == {f.name for f in fields(RealBaseConfig)}
    assert set(raw["splits"]) == {f.name for f in fields(SplitConfig)}
    cfg = load_recipe(path)
    assert cfg.to_dict() == RealBaseConfig().to_dict()
    # the file as read is the full config, types included: the name lookup (models/registry.py,
    # which hashes the file's mapping) and the build compute the same key
    assert canonical_json(raw) == canonical_json(cfg.to_dict())
    with pytest.raises(ConfigError, match="no shipped recipe for 'gpt-x'"):
        default_recipe("gpt-x")


def test_the_key_is_stable_for_equal_configs_and_changes_with_every_field(data_copy, local_base, tmp_path):
    cfg = RealBaseConfig(base=str(local_base))
    key = cfg.cache_key(data_copy)
    # equal configs: another object, a recipe file in another key order with ints for floats
    assert RealBaseConfig(base=str(local_base)).cache_key(data_copy) == key
    r = tmp_path / "r.yaml"
    r.write_text(
        f"calib_min_refusal: 0.9\nlearning_rate: 0.0002\nsplits: {{task_test: 100, seed: 0}}\n"
        f"delta_scales: [1, 0.9, 0.8, 0.7, 0.6, 0.5]\nbase: {local_base}\n"
    )
    assert load_recipe(r).cache_key(data_copy) == key
    # every field, top level and splits, changes it
    changed = {
        "answer_tokens": 65,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_target_modules": ["q_proj"],
        "learning_rate": 1e-4,
        "max_steps": 151,
        "batch_size": 4,
        "max_length": 128,
        "unlikelihood_weight": 0.5,
        "unlikelihood_prompts": "benign",
        "unlikelihood_prompts_per_step": 2,
        "contrast_repeat": 2,
        "align_seed": 0,
        "delta_scales": [1.0],
        "calib_max_over_refusal": 0.2,
        "calib_min_refusal": 0.8,
        "calib_tokens": 48,
        "align_attempts": 1,
        "align_select": "first",
        "calib_task_rows": 0,
        "calib_max_task_drop": 0.1,
    }
    assert set(changed) | {"base", "splits"} == {f.name for f in fields(RealBaseConfig)}
    keys = {key}
    for k, v in changed.items():
        keys.add(load_recipe(r, **{k: v}).cache_key(data_copy))
    for f in fields(SplitConfig):
        v = getattr(SplitConfig(), f.name)
        keys.add(
            load_recipe(r, splits={f.name: (not v) if isinstance(v, bool) else v + 1}).cache_key(data_copy)
        )
    assert len(keys) == 1 + len(changed) + len(fields(SplitConfig))  # all distinct
    other = tmp_path / "other"
    shutil.copytree(local_base, other)
    assert RealBaseConfig(base=str(other)).cache_key(data_copy) != key  # the base's name


@pytest.mark.parametrize("which", ["data", "prompts", "base"])
def test_the_key_changes_with_one_byte_of_any_input(which, data_copy, local_base, tmp_path, monkeypatch):
    import dualselect.realbase.recipe as recipe_mod

    prompts = tmp_path / "prompts.yaml"
    shutil.copyfile(recipe_mod.PROMPTS_FILE, prompts)
    monkeypatch.setattr(recipe_mod, "PROMPTS_FILE", prompts)
    cfg = RealBaseConfig(base=str(local_base))
    key = cfg.cache_key(data_copy)
    assert set(input_files(cfg, data_copy)) == {
        *(f"data/{k}" for k in FILES),
        "prompts.yaml",
        "base_model/config.json",
        "base_model/model.safetensors",
    }
    target = {
        "data": data_copy / FILES["xstest"],
        "prompts": prompts,
        "base": local_base / "model.safetensors",
    }[which]
    b = bytearray(target.read_bytes())
    b[len(b) // 2] ^= 1
    target.write_bytes(bytes(b))
    assert cfg.cache_key(data_copy) != key
    b[len(b) // 2] ^= 1
    target.write_bytes(bytes(b))
    assert cfg.cache_key(data_copy) == key


@pytest.mark.parametrize(
    "text, match",
    [
        ("lora_rank: 8\n", "unknown key 'lora_rank'"),
        ("splits: {seeds: 1}\n", "unknown key 'splits.seeds'"),
        ("max_steps: 1.5\n", "max_steps: expected int, not 1.5"),
        ("contrast_benign: 1\n", "unknown key 'contrast_benign'"),
        ("splits: {contrast_benign: 1}\n", "splits.contrast_benign: expected bool"),
        ("delta_scales: [1, a]\n", "delta_scales: expected"),
        ("delta_scales: [3]\n", r"delta_scales: a non-empty list of scales in \(0, 2\]"),
        ("align_select: last\n", "align_select: one of"),
        ("calib_min_refusal: 1.5\n", r"calib_min_refusal: a rate in \[0, 1\]"),
        ("align_attempts: 0\n", "align_attempts: at least 1"),
        ("unlikelihood_weight: -1\n", "unlikelihood_weight: 0 .off. or more"),
        ("calib_tokens: 16\n", "calib_tokens: at least 32"),
        ("- a\n", "top level must be a mapping"),
    ],
)
def test_a_bad_recipe_is_one_line_naming_the_file_and_key(text, match, tmp_path):
    r = tmp_path / "bad.yaml"
    r.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_recipe(r)
    assert str(e.value).startswith(str(r)) and "\n" not in str(e.value)


def test_base_build_cli_reads_a_recipe_and_keeps_only_its_overrides(tmp_path, capsys):
    from dualselect.cli.base_cmd import _cfg
    from dualselect.cli.main import build_parser, main

    parse = build_parser().parse_args
    assert _cfg(parse(["base", "build"])).to_dict() == RealBaseConfig().to_dict()
    assert _cfg(parse(["base", "build", "smollm2-135m"])).to_dict() == RealBaseConfig().to_dict()
    r = tmp_path / "mine.yaml"
    r.write_text("base: some-org/chat-model\nmax_steps: 20\nalign_attempts: 1\ndelta_scales: [1.0]\n")
    mine = _cfg(parse(["base", "build", "--recipe", str(r), "--seed", "3"]))
    assert (mine.base, mine.max_steps, mine.splits.seed, mine.first_align_seed) == (
        "some-org/chat-model",
        20,
        3,
        3,
    )
    assert not mine.calibrating and mine.lora_r == 512  # the rest: the SmolLM2 recipe's values
    # the past experiments' knobs are recipe fields only
    for flag in ("--align-select", "--unlikelihood-weight", "--contrast-repeat", "--steps", "--lora-r"):
        with pytest.raises(SystemExit):
            parse(["base", "build", flag, "1"])
    capsys.readouterr()
    r.write_text("max_step: 20\n")
    assert main(["base", "build", "--recipe", str(r), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dualselect base: error: {r}: unknown key 'max_step' (known: " + err.split("(known: ")[1]
    assert main(["base", "build", "smollm2-135m", "--recipe", str(r)]) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        parse(["base", "build", "--help"])
    assert "--recipe PATH" in (out := capsys.readouterr().out) and "calib_task_rows" in out


def test_resolving_the_safe_name_never_builds(tmp_path, monkeypatch):
    """An empty cache: a fast one-line error naming the command, and nothing written."""
    from dualselect.cli.main import main
    from dualselect.models.registry import NotBuiltError, resolve_named_model
    from dualselect.training.model import resolve_model_path

    monkeypatch.setenv("DUALSELECT_CACHE", str(tmp_path / "cache"))
    t0 = time.time()
    for resolve in (resolve_named_model, resolve_model_path):
        with pytest.raises(
            NotBuiltError, match=r"smollm2-135m-safe not built: run `dualselect base build` \(about"
        ):
            resolve("smollm2-135m-safe")
    assert time.time() - t0 < 5
    assert main(["base", "stats", "--out", str(tmp_path / "stats")]) == 2  # no DIR: the same error
    assert not (tmp_path / "cache").exists() and not (tmp_path / "stats").exists()


def test_the_safe_name_resolves_to_the_base_built_from_its_recipe(data_copy, tmp_path, monkeypatch):
    from dualselect.models.registry import NotBuiltError, available, built_safe_base, resolve_named_model

    ok, why = available("smollm2-135m")
    if not ok:
        pytest.skip(why)
    monkeypatch.setenv("DUALSELECT_CACHE", str(tmp_path / "cache"))

    def fake_build(cfg: RealBaseConfig) -> Path:  # what build_real_base writes last
        inputs = input_files(cfg, data_copy)
        out = realbase_dir(cfg, data_copy)
        out.mkdir(parents=True)
        info = {"config": cfg.to_dict(), "cache_key": cfg.cache_key(data_copy), "inputs": inputs}
        mark_done(out, {**info, "inputs": {k: str(v) for k, v in inputs.items()}}, marker="realbase.json")
        return out

    other = fake_build(RealBaseConfig(max_steps=20))  # another recipe: never the name's base
    with pytest.raises(NotBuiltError):
        built_safe_base("smollm2-135m-safe")
    built = fake_build(load_recipe(default_recipe()))
    assert built != other and built.name.startswith("smollm2-135m-")
    assert resolve_named_model("smollm2-135m-safe") == str(built / "model")
    # an input byte changed since the build: the recipe's key differs, the base is stale
    p = data_copy / FILES["strongreject"]
    p.write_bytes(p.read_bytes() + b"\n")
    with pytest.raises(NotBuiltError):
        built_safe_base("smollm2-135m-safe")
    with pytest.raises(ValueError, match="shipped recipe"):
        built_safe_base("organism-safe")
    assert resolve_named_model("unregistered-safe") == "unregistered-safe"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_the_lower_layers_import_nothing_above_them():
    """models/ reads the recipe as a file, never imports realbase (at module level or inside a
    function); cache.py imports only dualselect.utils from the package."""
    for p in sorted((SRC / "models").glob("*.py")):
        bad = {m for m in _imports(p) if m.startswith(("dualselect.realbase", "dualselect.experiments"))}
        assert not bad, (p.name, bad)
    own = {m for m in _imports(SRC / "cache.py") if m.startswith("dualselect")}
    assert own == {"dualselect.utils"}


def test_no_lineage_left_in_the_recipe_code():
    text = "".join(p.read_text() for p in (SRC / "realbase").glob("*.py"))
    for word in ("_ADDED_AFTER_V4", "_CALIBRATION_FIELDS", "_TASK_GATE_FIELDS", "REALBASE_VERSION"):
        assert word not in text
    assert json.dumps(RealBaseConfig().to_dict())  # plain JSON: the key's input
