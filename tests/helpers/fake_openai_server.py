"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI API to test judges against.

    with FakeOpenAIServer(latency=0.2) as server:
        judge = OpenAIJudge(base_url=server.base_url, ...)

Endpoints: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`. Behaviour is
scriptable per request: `server.push(rate_limited(1), server_error(), reply("得分: 1"))` makes
the next three chat requests answer 429 (with Retry-After), 500 and a normal reply; once the
script is used up, `responder(request_json)` (if given) or `default` answers. Every request is
recorded (path, headers, JSON body and its raw bytes, arrival time), so tests can count calls,
compare the messages received byte for byte and check where the API key was sent. Replies name
the requested model unless `served_model` is set (e.g. `gpt-3.5-turbo-0125`, the dated
snapshot OpenAI's replies carry for the alias `gpt-3.5-turbo`).

Faults and limits, for pacing tests and the benchmark's fault line: `FaultMix()` is a responder
that answers by a hash of the prompt (`fault_of`), so the same prompts misbehave on every run:
the FIRST attempt of 10% of prompts gets 429 with `Retry-After: 1`, the first attempt of 5% a
500, 8% of prompts always get a reply with no score; a retry of a prompt gets a normal reply.
`RateLimit(requests=…, tokens=…, window=…)` makes the server keep OpenAI-style budgets per fixed
window: every chat reply (429s included) carries `x-ratelimit-limit-*`, `x-ratelimit-remaining-*`
and `x-ratelimit-reset-*` (durations as OpenAI writes them, `6m0s`, `1.5s`, `20ms`), and a request
over the budget gets 429 with `Retry-After` (the window's end) before the script or responder is
asked.

It lives under tests/ because it is test infrastructure, not part of the installed package;
the tests import it (`tests.helpers.fake_openai_server`) and `bench/judge_throughput.py` runs it
as a separate process: `python tests/helpers/fake_openai_server.py --latency 0.2` prints
`port=N` (`--faults` answers with `FaultMix()`; `--limit-requests N --limit-window S` adds a
`RateLimit`).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JUDGE_KEY_ENV = "LORABENCH_TEST_JUDGE_KEY"
"""The environment variable tests hand this server's API key in (`judge.api_key_env`; the
`api_key` fixture of tests/conftest.py sets it)."""

DEFAULT_REPLY = "得分：0.8 理由：回答基本正确，但不够完整。"


@dataclass(frozen=True)
class Action:
    """How the server answers one chat request."""

    status: int = 200
    content: str | None = DEFAULT_REPLY
    """The assistant message (status 200); None sends `"content": null`."""
    delay: float = 0.0
    """Seconds to wait before answering, on top of the server's latency (for timeouts)."""
    headers: tuple[tuple[str, str], ...] = ()
    error: str = ""
    """Error message for non-200 answers."""
    code: str | None = None
    """OpenAI error code for non-200 answers (e.g. `model_not_found`)."""


def reply(content: str | None = DEFAULT_REPLY, delay: float = 0.0) -> Action:
    """A normal 200 reply with this assistant message."""
    return Action(content=content, delay=delay)


def rate_limited(retry_after: float | None = 1.0) -> Action:
    """429 Too Many Requests, with a `Retry-After` header (seconds) unless None."""
    headers = () if retry_after is None else (("Retry-After", f"{retry_after:g}"),)
    return Action(status=429, headers=headers, error="Rate limit reached", code="rate_limit")


def server_error(status: int = 500) -> Action:
    """A 5xx answer."""
    return Action(status=status, error="The server had an error", code=None)


def slow(seconds: float, content: str = DEFAULT_REPLY) -> Action:
    """A reply that only comes after `seconds` (a client with a shorter timeout gives up)."""
    return Action(content=content, delay=seconds)


def bad_request(message: str = "bad request") -> Action:
    """400, which a client must not retry."""
    return Action(status=400, error=message, code="invalid_request_error")


FAULT_RATES = {"rate_limited": 0.10, "server_error": 0.05, "unscorable": 0.08}
"""Shares of prompts in `FaultMix`'s fault classes (the rest are answered normally)."""

UNSCORABLE_REPLY = "模型回答得不错，但我无法给出分数。"
"""`FaultMix`'s reply with no readable score (a parse failure)."""


def fault_of(prompt: str) -> str:
    """The fault class of a prompt in `FaultMix`: `rate_limited`, `server_error`, `unscorable`
    or `ok`, by a hash of its text (the same on every run and in every process)."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    for kind, rate in FAULT_RATES.items():
        if share < rate:
            return kind
        share -= rate
    return "ok"


class FaultMix:
    """A responder answering by the prompt's fault class (`fault_of`): a 429 with
    `Retry-After: retry_after` or a 500 on the prompt's first attempt only, `UNSCORABLE_REPLY`
    on every attempt of an unscorable prompt, `content` otherwise."""

    def __init__(self, retry_after: float = 1.0, content: str = DEFAULT_REPLY) -> None:
        """Count attempts per prompt from now on."""
        self.retry_after = retry_after
        self.content = content
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Action:
        """The answer to one chat request (the server calls this from its threads)."""
        prompt = str(body["messages"][-1].get("content", ""))
        with self._lock:
            attempt = self.attempts[prompt]
            self.attempts[prompt] += 1
        kind = fault_of(prompt)
        if kind == "rate_limited" and attempt == 0:
            return rate_limited(self.retry_after)
        if kind == "server_error" and attempt == 0:
            return server_error(500)
        return reply(UNSCORABLE_REPLY if kind == "unscorable" else self.content)


@dataclass
class RateLimit:
    """OpenAI-style budgets the server keeps per fixed window of `window` seconds (None: that
    budget is unlimited and its headers are not sent). Tokens are counted as the server's usage
    counts them (characters), the prompt's when the request arrives."""

    requests: int | None = None
    tokens: int | None = None
    window: float = 60.0
    _start: float = field(default=-math.inf, init=False)
    _used: dict[str, int] = field(default_factory=lambda: {"requests": 0, "tokens": 0}, init=False)

    def admit(self, prompt_tokens: int, now: float) -> tuple[bool, list[tuple[str, str]]]:
        """Whether a request of `prompt_tokens` fits (if so it is counted), and the headers its
        answer carries (call under the server's lock)."""
        if now - self._start >= self.window:
            self._start, self._used = now, {"requests": 0, "tokens": 0}
        wanted = {"requests": 1, "tokens": prompt_tokens}
        limits = {"requests": self.requests, "tokens": self.tokens}
        fits = all(lim is None or self._used[k] + wanted[k] <= lim for k, lim in limits.items())
        if fits:
            for kind in wanted:
                self._used[kind] += wanted[kind]
        reset = go_duration(self._start + self.window - now)
        headers = []
        for kind, lim in limits.items():
            if lim is not None:
                headers += [
                    (f"x-ratelimit-limit-{kind}", str(lim)),
                    (f"x-ratelimit-remaining-{kind}", str(max(0, lim - self._used[kind]))),
                    (f"x-ratelimit-reset-{kind}", reset),
                ]
        if not fits:
            headers.append(("Retry-After", f"{self._start + self.window - now:.3f}"))
        return fits, headers


def go_duration(seconds: float) -> str:
    """A duration as OpenAI's rate-limit headers write it: `6m0s`, `1.5s`, `20ms`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any
    time: float
    """`time.monotonic()` on arrival."""
    raw: bytes = b""
    """The request body exactly as received (empty for GET)."""
    in_flight: int = 0
    """Chat requests being answered when this one arrived, itself included (0 for others)."""


@dataclass
class FakeOpenAIServer:
    """An OpenAI-compatible server in a background thread (see the module docstring)."""

    latency: float = 0.0
    """Seconds every chat reply takes (the benchmark uses 0.2)."""
    models: Iterable[str] = ("gpt-3.5-turbo",)
    """Model names the server accepts; others get 404 `model_not_found`."""
    api_key: str | None = None
    """When set, requests without `Authorization: Bearer <api_key>` get 401."""
    default: Action = field(default_factory=reply)
    responder: Callable[[dict[str, Any]], Action] | None = None
    """Decides the answer from the request JSON once the script is used up."""
    served_model: str | None = None
    """The `model` named in chat replies; None: the requested model."""
    rate_limit: RateLimit | None = None
    """Budgets enforced and announced in headers (see `RateLimit`); None: neither."""
    requests: list[RecordedRequest] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.models = frozenset(self.models)
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._in_flight = 0
        self.max_in_flight = 0
        """Most chat requests being answered at the same time so far."""
        self._thread: threading.Thread | None = None

    # ---- control -----------------------------------------------------------------------------

    def push(self, *actions: Action) -> None:
        """Queue answers for the next chat requests, in order."""
        with self._lock:
            self._script.extend(actions)

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # don't wait for handlers still sleeping on a slow reply
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- inspection --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The `base_url` to give an OpenAI client."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The chat-completion requests received so far."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def chat_calls(self) -> int:
        return len(self.chat_requests)

    def reset(self) -> None:
        """Forget recorded requests and any unused script."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.max_in_flight = 0

    # ---- behaviour ---------------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_action(self, body: dict[str, Any]) -> Action:
        with self._lock:
            if self._script:
                return self._script.popleft()
        if self.responder is not None:
            return self.responder(body)
        return self.default


class _Server(http.server.ThreadingHTTPServer):
    # The stdlib's listen backlog of 5 drops connections when a client opens 16 at once
    # (the kernel then retries the SYN a second later): real servers queue far more.
    request_queue_size = 1024


def fast_judge_settings(server: FakeOpenAIServer, cache_path: Path) -> dict[str, Any]:
    """An OpenAI judge's settings for tests against `server`: short backoffs and timeout, four
    requests in flight, its reply cache at `cache_path`."""
    return {
        "base_url": server.base_url,
        "cache_path": cache_path,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "timeout": 5.0,
        "concurrency": 4,
    }


def _error_body(message: str, code: str | None, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK (~40 ms on Linux). Real servers set TCP_NODELAY too.
    disable_nagle_algorithm = True
    server_state: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the tests capture logs and look for secrets in them

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, ConnectionError):
            pass  # the client gave up (timeout) before a slow reply was sent

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        state = self.server_state
        state._record(self._recorded(None))
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            data = [_model(name) for name in sorted(state.models)]
            self._send(200, {"object": "list", "data": data})
        elif self.path.startswith("/v1/models/"):
            name = self.path[len("/v1/models/") :]
            if name in state.models:
                self._send(200, _model(name))
            else:
                self._model_not_found(name)
        else:
            self._send(404, _error_body(f"no route {self.path}", None, "invalid_request_error"))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        chat = self.path == "/v1/chat/completions"
        with state._lock:
            # Counted from arrival until the answer is written (`_send`), whatever it is.
            self._counted = chat
            state._in_flight += chat
            state.max_in_flight = max(state.max_in_flight, state._in_flight)
            in_flight = state._in_flight if chat else 0
        try:
            state._record(self._recorded(body, raw, in_flight))
            self._answer_post(body)
        finally:
            self._leave()

    def _answer_post(self, body: Any) -> None:
        state = self.server_state
        if not self._authorised():
            return
        if self.path != "/v1/chat/completions" or not isinstance(body, dict):
            self._send(404, _error_body(f"no route {self.path}", None, "invalid_request_error"))
            return
        if body.get("model") not in state.models:
            self._model_not_found(str(body.get("model")))
            return
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        limit_headers: list[tuple[str, str]] = []
        if state.rate_limit is not None:
            with state._lock:
                fits, limit_headers = state.rate_limit.admit(prompt_chars, time.monotonic())
            if not fits:
                error = _error_body("Rate limit reached", "rate_limit_exceeded", "requests")
                self._send(429, error, limit_headers)
                return
        action = state._next_action(body)
        time.sleep(state.latency + action.delay)
        headers = [*action.headers, *limit_headers]
        if action.status != 200:
            kind = "rate_limit_error" if action.status == 429 else "server_error"
            if 400 <= action.status < 429:
                kind = "invalid_request_error"
            self._send(action.status, _error_body(action.error, action.code, kind), headers)
            return
        completion = len(action.content or "")
        self._send(
            200,
            {
                "id": f"chatcmpl-fake-{time.monotonic_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": state.served_model or body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": action.content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_chars,
                    "completion_tokens": completion,
                    "total_tokens": prompt_chars + completion,
                },
            },
            headers,
        )

    def _leave(self) -> None:
        """The answer is about to go out: this request no longer counts as in flight."""
        if getattr(self, "_counted", False):
            self._counted = False
            with self.server_state._lock:
                self.server_state._in_flight -= 1

    def _recorded(self, body: Any, raw: bytes = b"", in_flight: int = 0) -> RecordedRequest:
        return RecordedRequest(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            time.monotonic(),
            raw,
            in_flight,
        )

    def _authorised(self) -> bool:
        key = self.server_state.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._send(401, _error_body("Incorrect API key provided", "invalid_api_key", "auth"))
        return False

    def _model_not_found(self, name: str) -> None:
        message = f"The model `{name}` does not exist or you do not have access to it."
        self._send(404, _error_body(message, "model_not_found", "invalid_request_error"))

    def _send(
        self, status: int, payload: dict[str, Any], headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self._leave()
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "fake"}


def main() -> None:
    """Serve until killed; prints `port=N` once listening (used by the benchmark)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--reply", default=DEFAULT_REPLY, help="every chat reply's content")
    parser.add_argument("--faults", action="store_true", help="answer by FaultMix()")
    parser.add_argument("--limit-requests", type=int, default=None, help="a RateLimit's requests")
    parser.add_argument("--limit-tokens", type=int, default=None, help="a RateLimit's tokens")
    parser.add_argument("--limit-window", type=float, default=60.0, help="a RateLimit's window")
    args = parser.parse_args()
    limited = args.limit_requests is not None or args.limit_tokens is not None
    server = FakeOpenAIServer(
        latency=args.latency,
        models=args.model or ("gpt-3.5-turbo",),
        default=reply(args.reply),
        responder=FaultMix(content=args.reply) if args.faults else None,
        rate_limit=RateLimit(args.limit_requests, args.limit_tokens, args.limit_window)
        if limited
        else None,
    )
    server.start()
    print(f"port={server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
