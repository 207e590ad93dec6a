"""A small, real HTTP server that speaks enough OpenAI and Anthropic API for tests, benchmarks and
rehearsals (interpflow.rehearse answers a preset's API judges with it).

It binds 127.0.0.1 on a free port and serves, each request in its own thread:

* ``POST .../chat/completions`` — OpenAI Chat Completions, with ``logprobs.content[0]
  .top_logprobs`` in the real OpenAI shape when the request asks for ``logprobs``;
* ``POST .../messages`` — Anthropic Messages;
* ``POST .../embeddings`` — OpenAI Embeddings: one vector per input string from
  ``embedder(text)`` (default: deterministic, seeded by the text's sha256, dimension
  :data:`EMBED_DIM`), as float lists, or as base64 little-endian float32 when the request
  says ``"encoding_format": "base64"`` (what the OpenAI SDK sends unless told otherwise).

Routing is by path suffix, so ``url`` (``http://127.0.0.1:PORT/v1``, what the OpenAI SDK
wants) and ``root_url`` (what the Anthropic SDK wants; it appends ``/v1/messages``) both work.
``GET .../_stats`` returns ``{"n_requests": N}``; ``python -m interpflow.fakeapi`` serves in
the foreground (a separate process keeps the server off the client's GIL in benchmarks).

Per-call behaviour comes from ``plan``: a string for every call, a list consumed in arrival
order (``"ok"`` once exhausted), or a callable ``(call_index, request_json) -> str``:

==============  ================================================================================
``ok``          a normal reply whose text is ``responder(request_json)``
``500``         HTTP 500 with an API-shaped error body
``429``         HTTP 429 with ``retry-after: 0``
``401``         HTTP 401 as a wrong key gets: OpenAI's ``invalid_api_key`` body, whose message
                echoes the key it was sent (in full: the real API masks its middle, so a
                redaction test here can fail), or Anthropic's ``authentication_error``
``404``         HTTP 404 as an unknown model gets: OpenAI's ``model_not_found`` body or
                Anthropic's ``not_found_error``, both naming the requested model
``timeout``     sleeps ``timeout_sleep_s`` (set it above the client timeout), then answers ok
``malformed``   HTTP 200, ``application/json`` content type, body not JSON
``nochoices``   HTTP 200, valid JSON without ``choices`` (chat) / ``content`` (Anthropic) /
                ``data`` (embeddings)
``short``       HTTP 200, a valid body one item short: embeddings one vector fewer than inputs,
                chat an empty ``choices`` list, Anthropic an empty ``content`` list
==============  ================================================================================

Every POST to a known path counts in ``n_requests`` and takes the next behaviour, whatever the
endpoint.

The SDKs retry ``500``/``429`` (and connection errors, timeouts) but not ``401``/``404``.
Errors (``500``/``429``) also carry ``retry-after-ms`` (default 1): the OpenAI and Anthropic
SDKs treat ``retry-after: 0`` as "not given" and fall back to exponential backoff (0.5 s, 1 s,
...), but honour a positive ``retry-after-ms``, which keeps retry tests fast.

A behaviour name not in :data:`BEHAVIOURS` is rejected by the constructor (``plan`` a string
or list, also when ``plan`` is assigned later); one returned by a callable plan, like any other
exception in a request handler, closes that connection (the client sees a connection error)
and is recorded in ``errors``: :meth:`FakeAPIServer.close` (and so leaving the ``with`` block)
re-raises the first. A client that times out and closes the socket under a sleeping handler
(``BrokenPipeError``, ``ConnectionResetError``) is not an error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Plan = str | Sequence[str] | Callable[[int, dict[str, Any]], str] | None
BEHAVIOURS = ("ok", "500", "429", "401", "404", "timeout", "malformed", "nochoices", "short")

#: Dimension of the default embedder's vectors.
EMBED_DIM = 32


def _check_plan(plan: Plan) -> Plan:
    """``plan`` itself; a string or list naming an unknown behaviour raises ``ValueError``."""
    if plan is None or callable(plan):
        return plan
    for b in [plan] if isinstance(plan, str) else plan:
        if b not in BEHAVIOURS:
            raise ValueError(f"unknown fake-API behaviour {b!r}; choose one of {BEHAVIOURS}")
    return plan


def _default_responder(request_json: dict[str, Any]) -> str:
    return "5"


def default_embedder(text: str) -> list[float]:
    """A unit vector of :data:`EMBED_DIM` Gaussians seeded by the text's sha256 (deterministic
    across processes; unrelated to meaning)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    rng = random.Random(seed)
    v = [rng.gauss(0.0, 1.0) for _ in range(EMBED_DIM)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def _words(texts) -> int:
    """The fake servers' token count: whitespace-separated words of the strings in ``texts``."""
    return sum(len(t.split()) for t in texts if isinstance(t, str))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # listen backlog: many concurrent clients connect at once
    allow_reuse_address = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.errors: list[BaseException] = []
        self.errors_lock = threading.Lock()
        self.fake: FakeAPIServer  # set by FakeAPIServer, whose settings the handler reads

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Record the handler's exception (socketserver would print it and go on)."""
        exc = sys.exc_info()[1]
        # Clients that time out close the socket under a sleeping handler: not an error here.
        if exc is None or isinstance(exc, BrokenPipeError | ConnectionResetError):
            return
        with self.errors_lock:
            self.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    """One request to a :class:`FakeAPIServer` (``self.server.fake``)."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
    # algorithm meets the client's delayed ACK and adds ~40 ms to every response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silent; never echo headers (they carry the API key)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/_stats"):
            self._send(200, json.dumps({"n_requests": self.server.fake.n_requests}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found", "type": "not_found"}}')

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            req = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            req = {}
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/chat/completions"):
            endpoint = "chat"
        elif path.endswith("/embeddings"):
            endpoint = "embeddings"
        elif path.endswith("/messages"):
            endpoint = "messages"
        else:
            self._send(404, b'{"error": {"message": "not found", "type": "not_found"}}')
            return
        behaviour = self.server.fake._next_behaviour(req)
        if self.server.fake.delay_s:
            time.sleep(self.server.fake.delay_s)
        try:
            self._answer(behaviour, req, endpoint)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) and closed the socket

    def _client_error(self, status: str, req: dict[str, Any], is_openai: bool) -> bytes:
        """The body of a 401 (wrong key) or 404 (unknown model), as each API sends it."""
        model = req.get("model", "")
        if is_openai:
            if status == "401":
                key = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                code = "invalid_api_key"
                msg = (
                    f"Incorrect API key provided: {key}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                )
            else:
                code = "model_not_found"
                msg = f"The model `{model}` does not exist or you do not have access to it."
            err = {
                "message": msg,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
            return json.dumps({"error": err}).encode()
        if status == "401":
            kind, msg = "authentication_error", "invalid x-api-key"
        else:
            kind, msg = "not_found_error", f"model: {model}"
        return json.dumps({"type": "error", "error": {"type": kind, "message": msg}}).encode()

    def _answer(self, behaviour: str, req: dict[str, Any], endpoint: str) -> None:
        is_openai = endpoint != "messages"
        if behaviour in ("401", "404"):
            self._send(int(behaviour), self._client_error(behaviour, req, is_openai))
            return
        if behaviour in ("500", "429"):
            status = int(behaviour)
            kind = "rate_limit_error" if status == 429 else "api_error"
            if is_openai:
                err = {"error": {"message": f"fake {status}", "type": kind, "code": None}}
            else:
                err = {
                    "type": "error",
                    "error": {"type": kind, "message": f"fake {status}"},
                }
            headers: dict[str, str] = {}
            if status == 429:
                headers["retry-after"] = "0"
            if self.server.fake.retry_after_ms is not None:
                headers["retry-after-ms"] = str(self.server.fake.retry_after_ms)
            self._send(status, json.dumps(err).encode(), headers)
            return
        if behaviour == "malformed":
            self._send(200, b"<html>this is not json")
            return
        if behaviour == "timeout":
            time.sleep(self.server.fake.timeout_sleep_s)
        body: dict[str, Any]
        if behaviour == "nochoices":
            if endpoint == "chat":
                body = {"id": "x", "object": "chat.completion", "model": "fake"}
            elif endpoint == "embeddings":
                body = {"object": "list", "model": "fake"}
            else:
                body = {"id": "msg_x", "type": "message", "role": "assistant"}
        elif endpoint == "embeddings":
            body = self.server.fake._embeddings_body(req, short=behaviour == "short")
        else:
            text = self.server.fake.responder(req)
            if endpoint == "chat":
                body = self.server.fake._openai_body(req, text)
                if behaviour == "short":
                    body["choices"] = []
            else:
                body = self.server.fake._anthropic_body(req, text)
                if behaviour == "short":
                    body["content"] = []
        self._send(200, json.dumps(body).encode())


class FakeAPIServer:
    """Local OpenAI/Anthropic-compatible server. Use as a context manager or call :meth:`close`.

    ``responder(request_json) -> str`` gives the reply text. ``top_logprobs(request_json)``
    gives the first token's alternatives as ``{token: logprob}`` (or ``[(token, logprob)]``);
    without it, the reply text is the only alternative, with logprob 0. ``delay_s`` is slept
    before every answer. ``embedder(text) -> list[float]`` gives each input's embedding
    (it may return different lengths for different texts, to test clients' checks);
    ``reverse_embeddings`` lists the ``data`` items last-first (each keeps its ``index``), to
    test clients that must order by ``index``.
    """

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], str] = _default_responder,
        *,
        top_logprobs: Callable[[dict[str, Any]], Any] | None = None,
        delay_s: float = 0.0,
        plan: Plan = None,
        timeout_sleep_s: float = 2.0,
        retry_after_ms: int | None = 1,
        embedder: Callable[[str], Sequence[float]] = default_embedder,
        reverse_embeddings: bool = False,
    ) -> None:
        self.responder = responder
        self.embedder = embedder
        self.reverse_embeddings = reverse_embeddings
        self.top_logprobs = top_logprobs
        self.delay_s = delay_s
        self.plan = plan  # checked by the setter, before the port is bound
        self.timeout_sleep_s = timeout_sleep_s
        self.retry_after_ms = retry_after_ms
        self._lock = threading.Lock()
        self._n = 0
        self.requests: list[dict[str, Any]] = []
        self.behaviours: list[str] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root_url}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def plan(self) -> Plan:
        """Per-call behaviours (see the module docstring); assigning checks the names."""
        return self._plan

    @plan.setter
    def plan(self, plan: Plan) -> None:
        self._plan = _check_plan(plan)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised in request handlers so far (a copy), first first."""
        with self._httpd.errors_lock:
            return list(self._httpd.errors)

    @property
    def n_requests(self) -> int:
        """POST requests received so far (every attempt, retries included)."""
        with self._lock:
            return self._n

    def reset(self) -> None:
        with self._lock:
            self._n = 0
            self.requests.clear()
            self.behaviours.clear()

    def _next_behaviour(self, body: dict[str, Any]) -> str:
        with self._lock:
            i = self._n
            self._n += 1
            self.requests.append(body)
            plan = self.plan
            if plan is None:
                b = "ok"
            elif isinstance(plan, str):
                b = plan
            elif callable(plan):
                b = None  # called outside the lock below
            else:
                b = plan[i] if i < len(plan) else "ok"
        if b is None:
            b = plan(i, body)  # type: ignore[operator]
        if b not in BEHAVIOURS:
            raise ValueError(f"unknown fake-API behaviour {b!r}; choose one of {BEHAVIOURS}")
        with self._lock:
            self.behaviours.append(b)
        return b

    # -- response bodies -------------------------------------------------------------------

    def _openai_body(self, req: dict[str, Any], text: str) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if req.get("logprobs"):
            k = int(req.get("top_logprobs") or 0)
            alts = self.top_logprobs(req) if self.top_logprobs else {text: 0.0}
            items = list(alts.items()) if isinstance(alts, dict) else list(alts)
            items.sort(key=lambda kv: -kv[1])
            top = [
                {"token": t, "logprob": float(lp), "bytes": list(t.encode("utf-8"))}
                for t, lp in items[:k]
            ]
            first = items[0] if items else (text, 0.0)
            choice["logprobs"] = {
                "content": [
                    {
                        "token": first[0],
                        "logprob": float(first[1]),
                        "bytes": list(first[0].encode("utf-8")),
                        "top_logprobs": top,
                    }
                ],
                "refusal": None,
            }
        return {
            "id": f"chatcmpl-fake{self.port}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", "fake"),
            "choices": [choice],
            # "tokens" = whitespace-separated words, so a test knows what usage to expect
            "usage": {
                "prompt_tokens": _words(m.get("content") for m in req.get("messages", [])),
                "completion_tokens": _words([text]),
                "total_tokens": _words(m.get("content") for m in req.get("messages", []))
                + _words([text]),
            },
        }

    def _anthropic_body(self, req: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "id": f"msg_fake{self.port}",
            "type": "message",
            "role": "assistant",
            "model": req.get("model", "fake"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": _words(
                    [req.get("system")] + [m.get("content") for m in req.get("messages", [])]
                ),
                "output_tokens": _words([text]),
            },
        }

    def _embeddings_body(self, req: dict[str, Any], short: bool = False) -> dict[str, Any]:
        inputs = req.get("input", [])
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]  # one string, or one token array
        texts = [t if isinstance(t, str) else json.dumps(t) for t in inputs]
        as_b64 = req.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = [float(x) for x in self.embedder(text)]
            emb: Any = vec
            if as_b64:
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if short:
            data = data[:-1]
        if self.reverse_embeddings:
            data.reverse()
        n_tokens = sum(len(t.split()) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": req.get("model", "fake"),
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }

    def close(self) -> None:
        """Stop serving and release the port (handler threads are daemons); then re-raise the
        first exception of a request handler, if any (see ``errors``)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        errors = self.errors
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> None:
    """The fake OpenAI/Anthropic API server, in the foreground (e.g. in a separate process for
    benchmarks) until stdin closes.

    Prints the base URL (with ``/v1``) as the first line of stdout. ``GET /v1/_stats``
    returns ``{"n_requests": N}``.
    """
    import sys

    from interpflow.cli import parser as cli_parser

    ap = cli_parser(module="interpflow.fakeapi", doc=main.__doc__)
    ap.add_argument("--reply", default="5", help="reply text of every call")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds slept before each answer")
    args = ap.parse_args(argv)
    with FakeAPIServer(lambda _req: args.reply, delay_s=args.delay) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # returns when the parent closes our stdin or exits


if __name__ == "__main__":
    main()


__all__ = ["BEHAVIOURS", "EMBED_DIM", "FakeAPIServer", "default_embedder", "main"]
