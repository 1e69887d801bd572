"""Outputs: no run directory or file a command did not create is replaced without
--overwrite; a failed save leaves no partial run; generations are reused only for the model that
wrote them; names from the command line stay inside --out; the API judge never follows a redirect."""

from __future__ import annotations

import errno
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from dualselect.cli.main import main
from dualselect.training.run import ConfigError, run_training
from dualselect.training.validation import prepare_run_dir
from dualselect.utils import is_within, safe_name, safe_path
from training_helpers import sft_cfg

# ------------------------------------------------------------------------------ run directories


def test_run_dir_holding_another_run_is_refused_then_overwritten(organism_dir, tmp_path):
    out = tmp_path / "run"
    run_training("sft", sft_cfg(organism_dir, out, save_strategy="steps", save_steps=1))
    assert (out / "checkpoint-2").exists()
    (out / "notes.txt").write_text("mine")  # a file no run wrote
    before = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"holds another run \(log\.json, adapter_model.*--overwrite"):
        run_training("sft", sft_cfg(organism_dir, out, seed=1))
    assert (out / "adapter_model.safetensors").read_bytes() == before  # untouched
    run_training("sft", sft_cfg(organism_dir, out, seed=1), overwrite=True)
    assert not list(out.glob("checkpoint-*"))  # the previous run's checkpoints are gone
    assert (out / "notes.txt").read_text() == "mine"  # what no run wrote is kept
    assert (out / "adapter_model.safetensors").read_bytes() != before


def test_prepare_run_dir_cases(tmp_path):
    prepare_run_dir(tmp_path / "new")  # does not exist: fine, nothing created
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    prepare_run_dir(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match=r"is not empty \(thesis\.tex\)"):
        prepare_run_dir(tmp_path / "other")
    prepare_run_dir(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "thesis.tex").exists()  # never deleted
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        prepare_run_dir(tmp_path / "f")
    (tmp_path / "ckpt" / "checkpoint-5").mkdir(parents=True)
    prepare_run_dir(tmp_path / "ckpt", resume=True)  # resuming keeps the checkpoints
    assert (tmp_path / "ckpt" / "checkpoint-5").exists()


def test_cli_refuses_and_overwrites(organism_dir, tmp_path, capsys):
    argv = ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(tmp_path / "r")]
    argv += ["--max_steps", "1", "--max_length", "128"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "holds another run" in err and "--overwrite" in err and "\n" not in err
    assert main([*argv, "--overwrite"]) == 0


def test_failed_save_leaves_no_partial_run(organism_dir, tmp_path, monkeypatch, capsys):
    """Disk full while saving: one-line error, exit 2, no half-written adapter or tokenizer."""
    from dualselect.training.sft import SFTTrainer

    def full(self, output_dir=None, **kw):
        Path(output_dir, "tokenizer.json").write_text("")  # what a partial save leaves behind
        raise OSError(
            errno.ENOSPC, "No space left on device", str(Path(output_dir, "adapter_model.safetensors"))
        )

    monkeypatch.setattr(SFTTrainer, "save_model", full)
    out = tmp_path / "run"
    rc = main(
        ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(out), "--max_steps", "1"]
    )
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error:" in line]
    assert rc == 2 and len(err) == 1 and "No space left on device" in err[0] and "free some space" in err[0]
    assert not (out / "tokenizer.json").exists() and not (out / "adapter_model.safetensors").exists()
    assert not list(out.glob(".save-*"))


def test_demo_refuses_a_previous_demo_before_any_work(tmp_path, monkeypatch):
    from dualselect.cli import demo_cmd

    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "config.yaml").write_text("method: sft\n")

    def boom(*a, **k):
        raise AssertionError("no work may start")

    monkeypatch.setattr("dualselect.organism.train.build_organism", boom)
    with pytest.raises(ConfigError, match="holds another run"):
        demo_cmd.run_demo(tmp_path, ("sft",))
    with pytest.raises(ValueError, match="unknown method 'dualselct'"):
        demo_cmd.run_demo(tmp_path / "x", ("sft", "dualselct"))


def test_compare_refuses_an_out_dir_with_another_config(tmp_path):
    from dualselect.experiments.compare import run_compare
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.utils import write_json

    write_json(tmp_path / "compare_config.json", {"methods": ["sft"], "seeds": [7]})
    with pytest.raises(FileExistsError, match="another config"):
        run_compare(CompareConfig(model_name_or_path=str(tmp_path), methods=["sft"], seeds=[0]), tmp_path)


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["sft", "ds_eta_0.05", "dualselect@3", "a-b+c=d", "X1"])
def test_safe_names_are_kept(name):
    assert safe_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../../x",
        "/etc/passwd",
        "a/b",
        "..",
        ".",
        ".hidden",
        "a..b",
        "-rf",
        "a b",
        "x\x00y",
        "C:\\x",
        "~",
        "a" * 200,
    ],
)
def test_unsafe_names_are_sanitised_inside_the_root(tmp_path, name):
    s = safe_name(name)
    assert s != name and "/" not in s and "\\" not in s and not s.startswith(".") and len(s) <= 70
    assert is_within(safe_path(tmp_path, name, ".jsonl"), tmp_path)


def test_sanitised_names_do_not_collide():
    assert safe_name("a/b") != safe_name("a_b") and safe_name("a/b") != safe_name("a\\b")


@pytest.mark.parametrize(
    "spec,pattern",
    [
        ("../../x=ADAPTER", "not a plain file name"),
        ("/tmp/abs=ADAPTER", "not a plain file name"),
        (".hidden=ADAPTER", "not a plain file name"),
        ("a/b=ADAPTER", "not a plain file name"),
        ("base=ADAPTER", "'base' is the --base model's row"),
        ("x@1=ADAPTER", "no '@' in NAME"),
        ("noequals", "expected NAME=PATH"),
        ("sft=/nonexistent/adapter", "no such directory"),
    ],
)
def test_eval_model_names_checked_before_loading(tmp_path, capsys, spec, pattern):
    rc = main(["eval", "--model", spec, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and pattern in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.parent.glob("x.jsonl"))


def test_eval_variant_given_twice_is_an_error(organism_dir):
    from dualselect.cli.eval_cmd import parse_variants

    with pytest.raises(ValueError, match="given twice"):
        parse_variants([f"a={organism_dir}", f"a={organism_dir}"])
    assert parse_variants([f"a={organism_dir},{organism_dir}"]) == {
        "a@0": str(organism_dir),
        "a@1": str(organism_dir),
    }


# ------------------------------------------------------------------------------ provenance


@pytest.fixture(scope="module")
def organism_model(organism_dir):
    from dualselect.training.model import load_model_and_tokenizer

    return load_model_and_tokenizer(str(organism_dir))


def _evaluate(models, organism_dir, out, monkeypatch, calls):
    from dualselect.evaluation import harness
    from dualselect.evaluation.generation import generate as real
    from dualselect.evaluation.judges import build_judge
    from dualselect.evaluation.suites import organism_suites

    def counting(model, tok, prompts, **kw):
        calls.append(len(prompts))
        return real(model, tok, prompts, **kw)

    monkeypatch.setattr(harness, "generate", counting)
    suites = {k: v[:2] for k, v in organism_suites(organism_dir).items()}
    return harness.evaluate(
        models, suites, [build_judge("keyword")], out, base=None, sft=None, max_new_tokens=6, batch_size=8
    )


def test_generations_are_reused_only_for_the_same_model(
    organism_dir, organism_model, tmp_path, monkeypatch, caplog
):
    import copy

    model, tok = organism_model
    out = tmp_path / "eval"
    calls: list[int] = []
    res = _evaluate({"v": (model, tok)}, organism_dir, out, monkeypatch, calls)
    n_suites = len(calls)
    assert n_suites == 5 and res["provenance"]["v"]["model_fingerprint"]
    rows = [json.loads(x) for x in (out / "generations" / "v.jsonl").read_text().splitlines()]
    assert {r["model_fingerprint"] for r in rows} == {res["provenance"]["v"]["model_fingerprint"]}
    calls.clear()
    _evaluate({"v": (model, tok)}, organism_dir, out, monkeypatch, calls)
    assert calls == []  # the same model: its own answers are reused
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)  # another model under the same variant name
    calls.clear()
    with caplog.at_level("INFO", logger="dualselect"):  # notes are INFO records of that logger
        res2 = _evaluate({"v": (other, tok)}, organism_dir, out, monkeypatch, calls)
    assert len(calls) == n_suites  # regenerated, not reused
    assert "written by another model" in caplog.text  # a logged note (stderr on the CLI)
    assert res2["provenance"]["v"]["model_fingerprint"] != res["provenance"]["v"]["model_fingerprint"]
    # an old generations file without a fingerprint is not trusted either
    path = out / "generations" / "v.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "model_fingerprint"}) + "\n" for r in rows)
    )
    calls.clear()
    _evaluate({"v": (other, tok)}, organism_dir, out, monkeypatch, calls)
    assert len(calls) == n_suites


def test_fingerprint_covers_weights_tokenizer_and_settings(organism_model):
    import copy

    from dualselect.evaluation.provenance import model_fingerprint

    model, tok = organism_model
    a = model_fingerprint(model, tok, max_new_tokens=8)
    assert a == model_fingerprint(model, tok, max_new_tokens=8)
    assert a != model_fingerprint(model, tok, max_new_tokens=16)
    assert a != model_fingerprint(model, None, max_new_tokens=8)
    other = copy.deepcopy(model)
    with torch.no_grad():
        list(other.parameters())[-1][0].fill_(float("nan"))
    assert a != model_fingerprint(other, tok, max_new_tokens=8)


def test_python_api_names_stay_inside_out(organism_dir, organism_model, tmp_path, monkeypatch):
    out = tmp_path / "a" / "b" / "eval"
    _evaluate({"../../x": organism_model}, organism_dir, out, monkeypatch, [])
    written = [p for p in tmp_path.rglob("*.jsonl")]
    assert written and all(is_within(p, out) for p in written)
    assert not (tmp_path / "a" / "x.jsonl").exists()


# ------------------------------------------------------------------------------ judge redirects


class _Recorder:
    def __init__(self, status: int, location: str | None = None):
        self.requests: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers)})
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                body = json.dumps({"choices": [{"message": {"content": "#thescore: 1"}}]}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_judge_never_follows_a_redirect_nor_sends_the_key_on(monkeypatch, status):
    from dualselect.evaluation.judges import JudgeItem
    from dualselect.evaluation.judges.rubric_api import HexPhiRubricJudge

    secret = "sk-rdr-Qx7Vb2Lm9Pz4Wt6Kc8Hn3"  # no English word: any 8-character piece is redacted
    monkeypatch.setenv("DS_REDIRECT_KEY", secret)
    evil = _Recorder(200)
    # another origin: "localhost" vs 127.0.0.1, another port
    endpoint = _Recorder(status, location=f"http://localhost:{evil.port}/v1/chat/completions")
    try:
        judge = HexPhiRubricJudge(
            base_url=f"http://127.0.0.1:{endpoint.port}/v1",
            model="m",
            api_key_env="DS_REDIRECT_KEY",
            retries=2,
            backoff=0.0,
            progress=False,
        )
        (v,) = judge.judge([JudgeItem("p", "r")])
    finally:
        endpoint.close()
        evil.close()
    assert v.error is not None and "redirect" in v.error and v.score is None and v.refused is None
    assert secret not in v.error
    assert evil.requests == []  # the other host got nothing (and so never the key)
    assert len(endpoint.requests) == 1  # a redirect is a failure, not retried


def test_judge_same_origin_redirect_is_a_failure_too(monkeypatch):
    from dualselect.evaluation.judges import JudgeItem
    from dualselect.evaluation.judges.rubric_api import HexPhiRubricJudge

    endpoint = _Recorder(302, location="/v1/other")
    try:
        judge = HexPhiRubricJudge(
            base_url=f"http://127.0.0.1:{endpoint.port}/v1", model="m", require_key=False, progress=False
        )
        (v,) = judge.judge([JudgeItem("p", "r")])
    finally:
        endpoint.close()
    assert v.error is not None and "HTTP 302" in v.error and v.score is None


def test_eval_out_must_be_new_empty_or_an_evaluation(tmp_path):
    from dualselect.cli.eval_cmd import check_eval_out

    check_eval_out(str(tmp_path / "new"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.md").write_text("my own report")
    with pytest.raises(ValueError, match=r"holds no evaluation \(report\.md\)"):
        check_eval_out(str(tmp_path / "mine"))
    check_eval_out(str(tmp_path / "mine"), overwrite=True)
    (tmp_path / "prev").mkdir()
    (tmp_path / "prev" / "results.json").write_text("{}")
    check_eval_out(str(tmp_path / "prev"))  # a previous evaluation: updated in place


def test_compare_yaml_rejects_duplicates_and_extends_a_base(tmp_path):
    from dualselect.experiments.compare_config import CompareConfig

    (tmp_path / "base.yaml").write_text("methods: [sft, dualselect]\nseeds: [0, 1]\n")
    (tmp_path / "c.yaml").write_text("extends: base.yaml\nseeds: [3]\n")
    cfg = CompareConfig.from_yaml(str(tmp_path / "c.yaml"))
    assert cfg.methods == ["sft", "dualselect"] and cfg.seeds == [3]
    (tmp_path / "d.yaml").write_text("seeds: [0]\nseeds: [1]\n")
    with pytest.raises(ConfigError, match="duplicate key 'seeds'"):
        CompareConfig.from_yaml(str(tmp_path / "d.yaml"))


def test_overwrite_never_removes_user_files_that_share_a_run_files_name(tmp_path):
    d = tmp_path / "project"
    d.mkdir()
    (d / "README.md").write_text("my project")
    (d / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"is not empty \(README\.md, tokenizer\.json\)"):
        prepare_run_dir(d)
    # holds no run: nothing is removed, and nothing may be written over those files
    with pytest.raises(ConfigError, match=r"holds README\.md, tokenizer\.json, which no run wrote"):
        prepare_run_dir(d, overwrite=True)
    assert (d / "README.md").read_text() == "my project" and (d / "tokenizer.json").exists()
    (d / "log.json").write_text("{}")  # a run without a manifest: its files cannot be told apart
    (d / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="holds another run"):
        prepare_run_dir(d)
    with pytest.raises(ConfigError, match="without run_manifest.json"):
        prepare_run_dir(d, overwrite=True)
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "log.json", "notes.txt", "tokenizer.json"]


@pytest.mark.parametrize(
    "extra,pattern",
    [
        (["--judge", "{not json"], "--judge '{not json': not valid JSON"),
        (["--judge", "nosuchjudge"], "unknown judge 'nosuchjudge'"),
        (["--judge", '{"name": "keyword", "bogus": 1}'], "judge options: bad options for judge 'keyword'"),
        (["--coherence-judge", "keyword"], "--coherence-judge 'keyword': expected a JSON object"),
        (["--base", "/nonexistent/base"], "--base='/nonexistent/base': no such directory"),
        (
            ["--benchmark", "gsm8k=/nonexistent/test.jsonl"],
            "--benchmark gsm8k='/nonexistent/test.jsonl': no such file",
        ),
    ],
)
def test_eval_argument_errors_before_any_model_loads(tmp_path, capsys, monkeypatch, extra, pattern):
    def boom(*a, **k):
        raise AssertionError("no model may load, nor be resolved (resolving may build one)")

    monkeypatch.setattr("dualselect.training.model.load_model_and_tokenizer", boom)
    monkeypatch.setattr("dualselect.training.model.resolve_model_path", boom)
    rc = main(["eval", "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and pattern in err and "\n" not in err, err


def test_fingerprint_of_scalar_buffers_and_bf16():
    from dualselect.evaluation.provenance import model_fingerprint

    m = torch.nn.Linear(2, 2).to(torch.bfloat16)
    m.register_buffer("step", torch.tensor(3))
    a = model_fingerprint(m)
    m.step.fill_(4)
    assert model_fingerprint(m) != a


def test_demo_end_to_end_records_organism_and_machine(organism_dir, tmp_path, capsys):
    """`dualselect demo` with one method, end to end on the shipped organism: the table, and the
    provenance that makes its numbers comparable (organism fingerprint, machine)."""
    import json

    import torch

    from dualselect.cli.main import main
    from dualselect.organism.artifact import OrganismConfig

    torch.set_num_threads(1)
    assert main(["demo", "--methods", "sft", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "d" / "results.json").read_text())
    assert res["organism_key"] == OrganismConfig().cache_key() and res["organism_source"] == "shipped"
    assert res["machine"]["cpus"] >= 1 and res["machine"]["torch"] == torch.__version__
    assert set(res["methods"]) == {"base", "sft"}
    # the shipped base refuses the template probes; SFT on the attack task learns the task
    assert res["methods"]["base"]["harmful_refusal_hh"] >= 0.95
    assert res["methods"]["sft"]["task_exact_match"] > res["methods"]["base"]["task_exact_match"]
    assert f"organism {res['organism_key']} (shipped)" in out and "machine:" in out
    assert (tmp_path / "d" / "eval" / "report.md").exists()
