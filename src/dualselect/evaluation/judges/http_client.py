"""The stdlib HTTP client the API judges share (rubric, XSTest, pairwise, coherence judges).

:class:`ApiClient` posts ``{base_url}/chat/completions`` with temperature 0, retries
with exponential backoff on timeouts, connection errors, HTTP 429/5xx and malformed replies
(replies that are not JSON, carry no message, or fail the caller's parser), and caches parsed-OK
replies in a sqlite file keyed by sha256(endpoint, judge name, model, prompt, response), so re-runs
do not call the API again (another endpoint serving a model of the same name is a miss). The API key
is read from the environment variable whose *name* is configured (default ``OPENAI_API_KEY``); its
value is sent in the Authorization header and nowhere else: never logged, cached, put in an error
message or a repr (any echo of it in a reply, or of any 8+ character piece of it, is redacted
before anything is cut or stored). ``timeout`` bounds the whole call (connect, headers and body),
not each socket read, and a reply larger than ``max_reply_bytes`` is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BASE_URL_ENV = "DUALSELECT_JUDGE_BASE_URL"


class MalformedReply(ValueError):
    """The judge model answered, but not in the expected format (retried, then reported)."""


class RedirectRefused(urllib.error.HTTPError):
    """The endpoint answered with a redirect. Never followed: following would send the request
    (and its ``Authorization`` key) to wherever the reply points, and a redirected reply is not a
    verdict. A 4xx-like failure: not retried."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib API
        raise RedirectRefused(
            req.full_url, code, f"redirect to {newurl!r} refused (the key is never sent on)", headers, fp
        )


# Shared opener: the default handlers (proxies, HTTPS, errors) with redirects refused.
_OPENER = urllib.request.build_opener(_NoRedirect)


class ApiError(RuntimeError):
    """A call that failed for good: an HTTP 4xx other than 429, or every attempt failed.
    ``raw`` is the last reply text received (redacted), if any."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


_TRANSIENT = (
    urllib.error.URLError,  # connection refused/reset, DNS, timeouts wrapped by urllib
    TimeoutError,
    ConnectionError,
    http.client.HTTPException,  # RemoteDisconnected, IncompleteRead, ...
    OSError,
    MalformedReply,
)


class ReplyTooLarge(MalformedReply):
    """The reply is larger than ``max_reply_bytes``: not read further."""


class _CallTimedOut(TimeoutError):
    """The whole call (connect, headers, body) took longer than ``timeout``."""


class _Deadline:
    """The sockets of one call, shut down when the call's time is up (at once for a socket that
    connects after that: connecting is bounded by the socket timeout alone)."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.expired = threading.Event()
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self.socks.append(sock)
            if self.expired.is_set():
                _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired.set()
            for sock in self.socks:
                _shutdown(sock)  # wakes a blocked read with end-of-stream

    def close(self) -> None:
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _TrackedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection that registers its socket (urllib drops the connection's reference once
    the headers are read; the response keeps reading from it), so a watchdog can shut it down."""

    deadline: _Deadline

    def connect(self) -> None:
        super().connect()
        self.deadline.add(self.sock)


class _TrackedHTTPSConnection(http.client.HTTPSConnection):
    deadline: _Deadline

    def connect(self) -> None:
        super().connect()  # the TLS socket, wrapped
        self.deadline.add(self.sock)


def _tracked_opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener like ``_OPENER`` (redirects refused) whose sockets ``deadline`` can shut down."""

    def conn_class(base: type) -> type:
        return type(base.__name__, (base,), {"deadline": deadline})

    http_cls, https_cls = conn_class(_TrackedHTTPConnection), conn_class(_TrackedHTTPSConnection)

    class _Http(urllib.request.HTTPHandler):
        def http_open(self, req):  # noqa: ANN001 - urllib API
            return self.do_open(http_cls, req)

    class _Https(urllib.request.HTTPSHandler):
        def https_open(self, req):  # noqa: ANN001 - urllib API
            return self.do_open(https_cls, req, context=self._context)

    return urllib.request.build_opener(_NoRedirect, _Http, _Https)


def _read_capped(resp: Any, cap: int) -> bytes:
    """The body of ``resp``, refusing more than ``cap`` bytes (declared or received)."""
    declared = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
    if declared and declared.strip().isdigit() and int(declared) > cap:
        raise ReplyTooLarge(f"reply of {int(declared)} bytes is larger than max_reply_bytes={cap}")
    chunks, size = [], 0
    while True:
        chunk = resp.read(min(65536, cap + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise ReplyTooLarge(f"reply is larger than max_reply_bytes={cap}")


class _Cache:
    """sqlite cache: sha256(endpoint, judge, model, prompt, response) -> raw reply. Holds no key or header.
    Safe to share between the client's worker threads."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, raw TEXT NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT raw FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, raw: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, raw))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


def cache_key(*parts: str) -> str:
    """sha256 over the JSON list of ``parts`` (endpoint, judge name, model, prompt, response)."""
    return hashlib.sha256(json.dumps(list(parts), ensure_ascii=False).encode("utf-8")).hexdigest()


class ApiClient:
    """Minimal OpenAI-compatible chat client (stdlib only) with retries, backoff and a cache.

    ``retries`` is the number of attempts after the first (``retries=3`` -> at most 4 calls);
    the wait before retry ``k`` (0-based) is ``min(max_backoff, backoff * 2**k)`` seconds.
    ``timeout`` bounds each attempt as a whole (connect, headers, body: an endpoint that trickles
    bytes is cut off at the deadline), and a reply over ``max_reply_bytes`` is refused unread.
    ``require_key=False`` for endpoints that need none (a local vLLM server).
    """

    def __init__(
        self,
        base_url: str | None,
        model: str = "gpt-4o",
        api_key_env: str = "OPENAI_API_KEY",
        require_key: bool = True,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_tokens: int = 1024,
        cache_path: str | os.PathLike | None = None,
        max_reply_bytes: int = 4 * 2**20,
    ) -> None:
        if retries < 0 or not timeout > 0 or not max_reply_bytes >= 1:
            raise ValueError("retries must be >= 0, timeout > 0 and max_reply_bytes >= 1")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.model = model
        self.api_key_env = api_key_env
        self.require_key = require_key
        self.timeout, self.retries = timeout, retries
        self.backoff, self.max_backoff, self.max_tokens = backoff, max_backoff, max_tokens
        self.max_reply_bytes = int(max_reply_bytes)
        self.cache = _Cache(cache_path) if cache_path else None
        self.calls = 0  # HTTP requests sent (cache hits excluded)
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # names the env variable, never its value
        return (
            f"ApiClient(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, cache={str(self.cache.path) if self.cache else None!r})"
        )

    def available(self) -> tuple[bool, str]:
        """(False, reason) without a base_url, or without the key when one is required."""
        if not self.base_url:
            return (
                False,
                f"no base_url configured for the judge endpoint (pass base_url or set {BASE_URL_ENV})",
            )
        if self.require_key and not os.environ.get(self.api_key_env):
            return False, (
                f"environment variable {self.api_key_env} is not set "
                "(or pass require_key=False for an endpoint without a key)"
            )
        return True, ""

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def redact(self, text: str) -> str:
        """``text`` with the API key's value (if any), and every piece of it of 8 or more
        characters, replaced by ``***``: a cut-off echo of the key never survives."""
        return redact_key(text, self._key())

    def chat(self, messages: Sequence[dict[str, str]]) -> str:
        """One request; the reply's ``choices[0].message.content``. Raises on any failure."""
        if not self.base_url:
            raise ApiError("no base_url configured")
        body = json.dumps(
            {"model": self.model, "messages": list(messages), "temperature": 0, "max_tokens": self.max_tokens}
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if key := self._key():
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
        with self._lock:
            self.calls += 1
        # A watchdog shuts the connection's socket down at the deadline: the socket timeout alone
        # bounds each read, and an endpoint sending a byte a second would never trip it.
        deadline = _Deadline()
        watchdog = threading.Timer(self.timeout, deadline.expire)
        watchdog.daemon = True
        watchdog.start()
        late = f"no complete reply within timeout={self.timeout}s"
        try:
            with _tracked_opener(deadline).open(req, timeout=self.timeout) as resp:  # no redirects
                payload = _read_capped(resp, self.max_reply_bytes)
        except urllib.error.HTTPError as e:
            if deadline.expired.is_set():
                raise _CallTimedOut(late) from None
            e.body_text = _http_error_text(e, self.max_reply_bytes)  # read before the deadline
            raise
        except Exception:
            if deadline.expired.is_set():
                raise _CallTimedOut(late) from None
            raise
        finally:
            watchdog.cancel()
            deadline.close()
        if deadline.expired.is_set():  # the body may have ended early because the socket was shut down
            raise _CallTimedOut(late)
        try:
            data = json.loads(payload.decode("utf-8"))
            content = data["choices"][0]["message"]["content"]
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MalformedReply("reply is not JSON") from e
        except (KeyError, IndexError, TypeError) as e:
            raise MalformedReply("reply has no choices[0].message.content") from e
        if not isinstance(content, str):
            raise MalformedReply("reply content is not a string")
        return content

    def ask(
        self,
        key_parts: Sequence[str],
        messages: Sequence[dict[str, str]],
        parse: Callable[[str], Any],
    ) -> tuple[Any, str]:
        """Cached, retried call; returns ``(parse(raw), raw)``. ``key_parts`` (judge name, prompt,
        response) plus the endpoint and the model name key the cache; only replies that parse are cached. Raises
        :class:`ApiError` (message and ``raw`` redacted) on a 4xx or when every attempt failed."""
        key = cache_key(self.base_url or "", key_parts[0], self.model, *key_parts[1:])
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            try:
                return parse(hit), hit
            except MalformedReply:
                pass  # an entry the current parser rejects: ask again
        last, last_raw = "no attempt made", ""
        for attempt in range(self.retries + 1):
            try:
                raw = self.redact(self.chat(messages))
                last_raw = raw
                parsed = parse(raw)
                if self.cache is not None:
                    self.cache.put(key, raw)
                return parsed, raw
            except urllib.error.HTTPError as e:
                # redacted first, then cut: a cut could leave a piece of the key unrecognised
                detail = _cut(self.redact(getattr(e, "body_text", None) or _http_error_text(e)))
                if e.code != 429 and e.code < 500:
                    raise ApiError(detail) from None
                last = detail
            except _TRANSIENT as e:
                last = self.redact(f"{type(e).__name__}: {e}")
            if attempt < self.retries:
                wait = min(self.max_backoff, self.backoff * 2**attempt)
                log.warning(
                    "judge API attempt %d/%d failed (%s); retrying in %.2fs",
                    attempt + 1,
                    self.retries + 1,
                    last,
                    wait,
                )
                time.sleep(wait)
        raise ApiError(f"gave up after {self.retries + 1} attempts; last error: {last}", raw=last_raw)


def redact_key(text: str, key: str | None, min_piece: int = 8) -> str:
    """``text`` with ``key`` and every substring of ``key`` of ``min_piece``+ characters replaced
    by ``***`` (a key of fewer characters than ``min_piece`` is replaced whole, if 4+ long)."""
    if not key or len(key) < 4 or not text:
        return text
    text = text.replace(key, "***")
    if len(key) < min_piece:
        return text
    # Every window of min_piece characters of the key (a longer echoed piece contains one), found
    # by one regex; each hit is widened to the longest run of text still a substring of the key.
    windows = {key[i : i + min_piece] for i in range(len(key) - min_piece + 1)}
    pattern = re.compile("|".join(re.escape(w) for w in sorted(windows)))
    out, pos = [], 0
    while (m := pattern.search(text, pos)) is not None:
        i, j = m.start(), m.start() + min_piece
        while j < len(text) and text[i : j + 1] in key:
            j += 1
        out += [text[pos:i], "***"]
        pos = j
    out.append(text[pos:])
    return "".join(out)


def _http_error_text(e: urllib.error.HTTPError, cap: int = 4 * 2**20) -> str:
    """``HTTP <code> <reason>: <body>``: the body read (at most ``cap`` bytes), to be redacted
    by the caller before it is cut to 200 characters (:func:`_cut`)."""
    try:
        body = (e.read(cap) or b"").decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the body is only for the message
        body = ""
    return f"HTTP {e.code} {e.reason}" + (f": {body}" if body else "")


def _cut(text: str, n: int = 200) -> str:
    """At most ``n`` characters of an already redacted error message."""
    return text if len(text) <= n else text[:n] + " ..."
