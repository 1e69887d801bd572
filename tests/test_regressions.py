"""Nothing lost, nothing leaked: each case a user found is reproduced here and must hold.

The judge client: no piece of the key survives a cut error body, ``timeout`` bounds the whole call
and the reply size is capped, the cache is keyed by endpoint. Configs: YAML merge keys, alias
bombs, value domains checked before anything loads, compare configs checked up front, resuming
with another config, and a failed save reported in one line."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

from dualselect.evaluation.judges import JudgeItem
from dualselect.evaluation.judges.rubric_api import HexPhiRubricJudge

KEY_ENV = "DS_ROUND3_KEY"
SECRET = "sk-r3-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"  # 38 characters


def _ok(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


class _RawServer:
    """A one-thread-per-connection TCP server on 127.0.0.1 that answers every request with
    ``reply(conn)`` (full control of the bytes and their pace); counts connections."""

    def __init__(self, reply) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.reply, self.connections, self.stop = reply, 0, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.reply(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _judge(url, tmp_path, **kw):
    opts = dict(base_url=url, model="m", api_key_env=KEY_ENV, retries=0, backoff=0.0, progress=False)
    opts.update(kw)
    return HexPhiRubricJudge(**opts)


# ----------------------------------------------------------------------------- item 4: key pieces


def test_redact_removes_every_piece_of_the_key_of_8_or_more_characters():
    from dualselect.evaluation.judges.http_client import redact_key

    assert redact_key(f"a {SECRET} b", SECRET) == "a *** b"
    assert SECRET[:28] not in redact_key(f"x{SECRET[:28]}y", SECRET)
    assert redact_key(f"x{SECRET[5:13]}y", SECRET) == "x***y"  # 8 characters from the middle
    assert redact_key(f"x{SECRET[5:12]}y", SECRET) == f"x{SECRET[5:12]}y"  # 7: too short to tell
    assert redact_key("nothing here", SECRET) == "nothing here"


def test_http_error_body_is_redacted_before_it_is_cut(monkeypatch, tmp_path):
    """A 4xx body echoing the key at character 180: cut at 200 first, a 20-character prefix of the
    key would pass a whole-key redaction and reach the verdict file."""
    monkeypatch.setenv(KEY_ENV, SECRET)

    def reply(conn, stop):
        body = json.dumps({"error": "x" * 152 + f" invalid api key {SECRET} (check it)"}).encode()
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n")
        conn.sendall(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)

    srv = _RawServer(reply)
    try:
        (v,) = _judge(srv.url, tmp_path).judge([JudgeItem("p", "r")])
    finally:
        srv.close()
    assert v.error and "HTTP 401" in v.error and "xxxxxxxx" in v.error
    for i in range(len(SECRET) - 7):
        assert SECRET[i : i + 8] not in v.error, v.error
    assert len(v.error) < 300  # still cut


# ----------------------------------------------------------------------------- item 17: deadline


def test_timeout_bounds_the_whole_call_against_a_trickling_endpoint(monkeypatch, tmp_path):
    """Headers then a body sent one byte every 0.2 s: each read is fast, the call must not be."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    body = _ok("#thescore: 1")

    def reply(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body))
        for b in body:  # ~12 s for the whole body
            if stop.is_set():
                return
            conn.sendall(bytes([b]))
            time.sleep(0.2)

    srv = _RawServer(reply)
    try:
        t0 = time.monotonic()
        (v,) = _judge(srv.url, tmp_path, timeout=1.0).judge([JudgeItem("p", "r")])
        took = time.monotonic() - t0
    finally:
        srv.close()
    assert v.error is not None and "timeout=1.0" in v.error and v.score is None
    assert took < 3.0, took  # the deadline, not 60 reads of 0.2 s


def test_trickled_headers_are_bounded_too(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, SECRET)

    def reply(conn, stop):
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
            if stop.is_set():
                return
            conn.sendall(bytes([b]))
            time.sleep(0.1)

    srv = _RawServer(reply)
    try:
        t0 = time.monotonic()
        (v,) = _judge(srv.url, tmp_path, timeout=1.0, retries=1).judge([JudgeItem("p", "r")])
        took = time.monotonic() - t0
    finally:
        srv.close()
    assert v.error is not None and "gave up after 2 attempts" in v.error and took < 4.0, (took, v.error)
    assert srv.connections == 2  # a timeout is retried


def test_a_socket_that_connects_after_the_deadline_is_shut_down_at_once():
    """Connecting is bounded by the socket timeout alone: a connection that completes after the
    watchdog fired must not then read without a deadline."""
    from dualselect.evaluation.judges.http_client import _Deadline

    a, b = socket.socketpair()
    try:
        deadline = _Deadline()
        deadline.expire()
        deadline.add(a)
        a.settimeout(2)
        t0 = time.monotonic()
        assert a.recv(16) == b""  # shut down: end of stream at once, not a 2 s wait
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(OSError):
            b.sendall(b"x")  # the peer sees the connection closed
    finally:
        a.close()
        b.close()


def test_reply_size_is_capped(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, SECRET)
    sent = {"n": 0}

    def reply(conn, stop):  # a 64 MB reply without Content-Length, streamed until the client stops
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        chunk = b'{"choices": [' + b" " * 65523
        for _ in range(1024):
            conn.sendall(chunk)
            sent["n"] += len(chunk)

    srv = _RawServer(reply)
    try:
        (v,) = _judge(srv.url, tmp_path, max_reply_bytes=1 << 20).judge([JudgeItem("p", "r")])
    finally:
        srv.close()
    assert v.error is not None and "larger than max_reply_bytes=1048576" in v.error
    time.sleep(0.2)
    assert sent["n"] < 16 << 20  # the client stopped reading long before the end

    declared = _ok("#thescore: 1")

    def big_declared(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n" + declared)

    srv = _RawServer(big_declared)
    try:
        (v,) = _judge(srv.url, tmp_path, max_reply_bytes=1 << 20).judge([JudgeItem("p", "r")])
    finally:
        srv.close()
    assert v.error is not None and "reply of 999999999 bytes" in v.error


# ----------------------------------------------------------------------------- judge cache


def test_judge_cache_is_keyed_by_endpoint(monkeypatch, tmp_path):
    """Two endpoints serving a model of the same name are two judges: the second one's verdict is
    never the first one's cached reply; the same endpoint is a cache hit."""
    monkeypatch.setenv(KEY_ENV, SECRET)

    def answer(score):
        def reply(conn, stop):
            body = _ok(f"#thescore: {score}")
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
            )

        return reply

    a, b = _RawServer(answer(1)), _RawServer(answer(5))
    cache = tmp_path / "cache.sqlite"
    try:
        (va,) = _judge(a.url, tmp_path, cache_path=cache).judge([JudgeItem("p", "r")])
        (vb,) = _judge(b.url, tmp_path, cache_path=cache).judge([JudgeItem("p", "r")])
        (va2,) = _judge(a.url + "/", tmp_path, cache_path=cache).judge([JudgeItem("p", "r")])
    finally:
        a.close()
        b.close()
    assert (va.score, vb.score, va2.score) == (1.0, 5.0, 1.0)
    assert (a.connections, b.connections) == (1, 1)  # the third call was a hit


# ----------------------------------------------------------------------------- YAML (items 14, 18)


def test_yaml_merge_key_override_is_legal_real_duplicates_are_not(tmp_path):
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.utils import ConfigError, read_yaml

    p = tmp_path / "c.yaml"
    p.write_text(
        "methods: [sft, dualselect]\n"
        "method_overrides:\n"
        "  sft: &common {learning_rate: 0.001, max_steps: 5}\n"
        "  dualselect:\n"
        "    <<: *common\n"
        "    max_steps: 7\n"
    )
    cfg = CompareConfig.from_yaml(str(p))
    assert cfg.method_overrides["dualselect"] == {"learning_rate": 0.001, "max_steps": 7}  # ours wins
    assert cfg.method_overrides["sft"] == {"learning_rate": 0.001, "max_steps": 5}
    for text, line in (
        ("a: &a {x: 1}\nb:\n  <<: *a\n  y: 2\n  y: 3\n", 4),  # two explicit keys beside a merge
        ("x: 1\nx: 2\n", 1),
        ("a: &a {x: 1}\nb:\n  <<: *a\n  <<: *a\n", 3),  # the merge key itself twice
    ):
        p.write_text(text)
        with pytest.raises(ConfigError, match=rf"found duplicate key .*first defined on line {line}\)"):
            read_yaml(p)


def _bomb(levels: int, indent: str = "") -> str:
    lines = [f'{indent}a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{indent}{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.utils import ConfigError, read_yaml

    p = tmp_path / "bomb.yaml"
    p.write_text("methods: [sft]\ntraining:\n" + _bomb(7, "  "))  # 9**7 = 4.8 million strings
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"bomb\.yaml:\d+:\d+: invalid YAML: aliases expand this document"):
        CompareConfig.from_yaml(str(p))
    assert time.monotonic() - t0 < 2.0
    p.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        read_yaml(p)
    # aliases that stay small are fine
    p.write_text("x: &x {learning_rate: 0.001}\ny: *x\nz: [*x, *x]\n")
    assert read_yaml(p)["z"] == [{"learning_rate": 0.001}] * 2


# ----------------------------------------------------------------------------- compare (10, 14)


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("seeds: [0, 0]\n", r"seeds: \[0\] listed more than once"),
        ("methods: [sft, dualselect, sft]\n", r"methods: \['sft'\] listed more than once"),
        ("organism_seeds: [1, 1]\n", r"organism_seeds: \[1\] listed more than once"),
        ("seeds: [-1]\n", r"seeds: expected integers in \[0, 2\*\*32\)"),
        ("eval_batch_size: 0\n", r"eval_batch_size: expected a positive integer( or null)?, got 0"),
        ("suite_limits: {harmful: -1}\n", r"suite_limits: expected suite -> a count >= 1"),
    ],
)
def test_compare_refuses_repeated_runs(tmp_path, text, pattern):
    from dualselect.experiments.compare_config import CompareConfig

    p = tmp_path / "c.yaml"
    p.write_text("methods: [sft, dualselect]\n" + text if not text.startswith("methods") else text)
    with pytest.raises(ValueError, match=pattern):
        CompareConfig.from_yaml(str(p))


@pytest.mark.parametrize(
    "body,pattern",
    [
        ("training: {learning_rat: 0.1}\n", r"method sft: .*unknown key\(s\) \['learning_rat'\]"),
        ("training: {learning_rate: .nan}\n", r"method sft: .*learning_rate=nan: must be a finite"),
        ("method_overrides: {sft: {eta: 0.1}}\n", r"method sft: .*unknown key\(s\) \['eta'\]"),
        (
            "method_overrides: {dualselect: {k_ref: 0}}\n",
            r"method dualselect: .*k_ref=0: must be >= 1",
        ),
        (
            "training: {lora_r: 1.0e+20}\n",
            r"method sft: .*lora_r=100000000000000000000: must be >= 1 and <= 65536",
        ),
    ],
)
def test_compare_checks_every_runs_config_before_anything_is_built(
    tmp_path, capsys, monkeypatch, body, pattern
):
    from dualselect.cli.main import main

    def boom(*a, **k):
        raise AssertionError("nothing may be built or trained before every run's config is checked")

    monkeypatch.setattr("dualselect.experiments.compare_runs.organism_path", boom)
    monkeypatch.setattr("dualselect.experiments.compare.organism_path", boom)
    p = tmp_path / "c.yaml"
    p.write_text("methods: [sft, dualselect]\nseeds: [0]\norganism_seeds: [0]\n" + body)
    out = tmp_path / "out"
    rc = main(["compare", str(p), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert re.search(pattern, err), err
    assert not out.exists()  # nothing written


# ----------------------------------------------------------------------------- eval (11, 12, 16)


@pytest.mark.parametrize(
    "extra,pattern",
    [
        (["--limit", "-1"], "--limit -1: must be >= 1"),
        (["--limit", "0"], "--limit 0: must be >= 1"),
        (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens 0: must be >= 1"),
        (["--seed", "-1"], r"--seed -1: must be in [0, 2**32)"),
        (
            ["--model", "sft.verdicts=organism"],
            "a '.verdicts' part would write over the files of variant 'sft'",
        ),
        (["--model", "x.pairwise.keyword=organism"], "a '.pairwise' part"),
        (["--max-perplexity", "nan"], "--max-perplexity 'nan': expected a number > 0"),
        (["--max-perplexity", "auto:-1"], "--max-perplexity 'auto:-1': expected a number > 0"),
        (["--max-perplexity", "automatic"], "--max-perplexity 'automatic': expected a number > 0"),
    ],
)
def test_eval_numbers_and_names_refused_before_any_model_loads(tmp_path, capsys, monkeypatch, extra, pattern):
    from dualselect.cli.main import main

    def boom(*a, **k):
        raise AssertionError("no model may load, nor be resolved")

    monkeypatch.setattr("dualselect.training.model.load_model_and_tokenizer", boom)
    monkeypatch.setattr("dualselect.training.model.resolve_model_path", boom)
    rc = main(["eval", "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and pattern in err and "\n" not in err, err


def test_harness_refuses_a_name_that_writes_over_another_variants_files(tmp_path):
    from dualselect.evaluation.harness import evaluate

    with pytest.raises(ValueError, match=r"variant name 'sft\.verdicts'"):
        evaluate({"sft": (None, None), "sft.verdicts": (None, None)}, {}, [], tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- train (9, 16)


@pytest.mark.parametrize(
    "extra,yaml_text,pattern",
    [
        (
            ["--neftune_noise_alpha", "-3"],
            None,
            "--neftune_noise_alpha: neftune_noise_alpha=-3.0: must be >= 0",
        ),
        (["--seed", "-1"], None, r"--seed: seed=-1: must be in [0, 2**32)"),
        ([], "lora_r: 1.0e+20\n", "c.yaml: lora_r=100000000000000000000: must be >= 1 and <= 65536"),
        (["--label_smoothing_factor", "1.5"], None, "label_smoothing_factor=1.5: must be in [0, 1)"),
    ],
)
def test_train_values_refused_in_one_line_before_loading(
    tmp_path, capsys, monkeypatch, extra, yaml_text, pattern
):
    from dualselect.cli.main import main

    def boom(*a, **k):
        raise AssertionError("no model may load")

    monkeypatch.setattr("dualselect.training.sft.load_model_and_tokenizer", boom)
    argv = ["train", "--output_dir", str(tmp_path / "run"), *extra]
    if yaml_text:
        (tmp_path / "c.yaml").write_text(yaml_text)
        argv += ["--config", str(tmp_path / "c.yaml")]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and pattern in err and "\n" not in err, err


@pytest.mark.parametrize("engine_name", ["fast", "oracle"])
def test_label_smoothed_selection_losses_and_gradient_equal_hfs(engine_name):
    """DualSelect's selection steps honour label_smoothing_factor: per-sample losses equal HF's
    LabelSmoother on each sample, and the uniform mix of the per-sample gradients equals the
    gradient of HF's label-smoothed loss on the batch (equal target counts: token mean = sample mean)."""
    import torch
    from transformers.trainer_pt_utils import LabelSmoother

    from dualselect.gradients import make_engine
    from dualselect.gradients.flat import trainable_parameters
    from tiny_models import collate, make_examples, tiny_lora_model

    torch.set_num_threads(1)
    model = tiny_lora_model("llama", seed=5, dropout=0.0).eval()
    batch = collate(make_examples([(3, 6), (5, 6), (2, 6)], seed=1))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    eps = 0.1
    engine = make_engine(engine_name)
    cap = engine.capture(model, batch, label_smoothing=eps)
    smoother = LabelSmoother(epsilon=eps)
    with torch.no_grad():
        for k in range(3):
            out = model(**{n: v[k : k + 1] for n, v in inputs.items()})
            hf = smoother({"logits": out.logits}, batch["labels"][k : k + 1], shift_labels=True)
            assert float(cap.losses[k]) == pytest.approx(float(hf), rel=1e-5)
    params = trainable_parameters(model)
    loss = smoother({"logits": model(**inputs).logits}, batch["labels"], shift_labels=True)
    want = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    got = cap.weighted_sum(torch.full((3,), 1 / 3))
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
    plain = engine.capture(model, batch)  # eps = 0: plain cross-entropy, a different loss
    assert float((plain.losses - cap.losses).abs().max()) > 1e-3


def test_dualselect_trainer_passes_label_smoothing_to_its_selection_steps(
    organism_dir, tmp_path, monkeypatch
):
    from dualselect.gradients.engine import FastEngine
    from dualselect.training.run import load_config, run_training

    seen = []
    capture = FastEngine.capture

    def spy(self, model, batch, **kw):
        seen.append(kw.get("label_smoothing", 0.0))
        return capture(self, model, batch, **kw)

    monkeypatch.setattr(FastEngine, "capture", spy)
    cfg = load_config(
        "dualselect",
        overrides={
            "model_name_or_path": str(organism_dir),
            "output_dir": str(tmp_path / "run"),
            "max_steps": 3,
            "selection_warmup_steps": 1,
            "max_length": 128,
            "k_ref": 4,
            "ref_pool_cap": 16,
            "label_smoothing_factor": 0.1,
            "disable_tqdm": True,
        },
    )
    run_training("dualselect", cfg)
    assert 0.1 in seen  # the task captures of the selection steps (reference scoring stays plain)


@pytest.mark.parametrize("value", ["nan", "-5", "lots", "inf"])
def test_min_free_mb_variable_is_checked(tmp_path, capsys, monkeypatch, value):
    from dualselect.cli.main import main

    monkeypatch.setenv("DUALSELECT_MIN_FREE_MB", value)
    rc = main(["train", "--output_dir", str(tmp_path / "run"), "--max_steps", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"DUALSELECT_MIN_FREE_MB={value!r}: expected a number" in err and "\n" not in err, err
    rc = main(["eval", "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "DUALSELECT_MIN_FREE_MB" in err, err
    monkeypatch.setenv("DUALSELECT_MIN_FREE_MB", "1e12")  # a real number is still applied
    from dualselect.training.validation import ConfigError, check_output_dir

    with pytest.raises(ConfigError, match="need at least"):
        check_output_dir(tmp_path / "run")


# ----------------------------------------------------------------------------- save (15)


def test_tokenizer_disk_full_is_one_line_naming_the_path(organism_dir, tmp_path, monkeypatch, capsys):
    """tokenizers reports a failed write as a bare Exception: it must not become a traceback."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    from dualselect.cli.main import main

    def full(self, save_directory, *a, **k):
        raise Exception("No space left on device (os error 28)")  # what tokenizers raises

    monkeypatch.setattr(TokenizersBackend, "_save_pretrained", full)
    out = tmp_path / "run"
    argv = ["train", "--model_name_or_path", str(organism_dir), "--output_dir", str(out)]
    rc = main([*argv, "--max_steps", "1", "--max_length", "128"])
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error:" in line]
    assert rc == 2 and len(err) == 1, err
    assert "No space left on device" in err[0] and str(out) in err[0] and "free some space" in err[0]
    assert not (out / "adapter_model.safetensors").exists()


# ----------------------------------------------------------------------------- resume (13)


def test_resume_compares_the_checkpoints_config(organism_dir, tmp_path, capsys):
    import yaml

    from dualselect.cli.main import main

    out = tmp_path / "run"
    argv = [
        "train",
        "--model_name_or_path",
        str(organism_dir),
        "--output_dir",
        str(out),
        "--max_length",
        "128",
    ]
    argv += ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1"]
    assert main([*argv, "--learning_rate", "1e-3"]) == 0
    resume = ["--resume_from_checkpoint", str(out / "checkpoint-1")]
    capsys.readouterr()
    # another learning rate: refused, naming the key and both values
    assert main([*argv, "--learning_rate", "2e-3", *resume]) == 2
    err = capsys.readouterr().err.strip()
    assert "learning_rate: 0.001 -> 0.002" in err and "--resume-with-changes" in err and "\n" not in err
    # another method: refused in one line (it was a KeyError deep in the trainer)
    assert main([*argv, "--method", "dualselect", "--learning_rate", "1e-3", *resume]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained with method 'sft', not 'dualselect'" in err and "\n" not in err, err
    # the same config resumes; logging and saving settings may change
    assert main([*argv, "--learning_rate", "1e-3", "--logging_steps", "1", *resume]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["resumed"][-1]["changed"] == {}
    # with the flag the change is allowed and both values are recorded
    assert main([*argv, "--learning_rate", "2e-3", *resume, "--resume-with-changes"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["learning_rate"] == 0.002
    assert cfg["resumed"][-1]["changed"] == {"learning_rate": {"before": 0.001, "after": 0.002}}
    assert cfg["resumed"][-1]["checkpoint"] == str(out / "checkpoint-1") and len(cfg["resumed"]) == 2


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_lmeval_limit_refused(capsys, value):
    from dualselect.cli.main import main

    rc = main(["lmeval", "organism", "--limit", value])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"--limit {float(value)}: must be a count >= 1 or a fraction in (0, 1)" in err, err
