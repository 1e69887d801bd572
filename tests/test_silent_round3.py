"""Nothing lost, nothing leaked (round 3): each case a user found is reproduced here and must hold.

The judge client: no piece of the key survives a cut error body, ``timeout`` bounds the whole call
and the reply size is capped, the cache is keyed by endpoint. Configs: YAML merge keys, alias
bombs, value domains checked before anything loads, compare configs checked up front, resuming
with another config, and a failed save reported in one line."""

from __future__ import annotations

import json
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
    from dualselect.evaluation.judges.rubric_api import redact_key

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
