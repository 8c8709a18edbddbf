"""A real HTTP server on 127.0.0.1 with OpenAI's Files and Batch APIs, besides the chat endpoint
of `FakeOpenAIServer` (which it extends: scripting, API key check, recorded requests).

    with FakeBatchServer(api_key=key, polls_in_progress=2) as server:
        run_batch(OpenAIJudge(base_url=server.base_url, ...), requests, state_dir)
        assert server.batch_creations == 1 and server.chat_calls == 0

Endpoints added: `POST /v1/files` (multipart upload, purpose `batch`), `GET /v1/files/{id}` and
`GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches` (list),
`GET /v1/batches/{id}` and `POST /v1/batches/{id}/cancel`.

A batch "runs" when it is retrieved: the first `polls_in_progress` retrieves see it
`in_progress`, the next one sees it ended with status `ends`. Each input line is then answered
with a chat completion whose content is `batch_reply(body)` (default: the server's default
reply, `得分：0.8 …`), except that lines listed in `failures` (line index → HTTP status) get that
error (in the error file, or with `failures_in_output` in the output file with a non-200
`status_code`), and a batch that ends `expired` or `cancelled` answers only its first
`answered` lines (an expired batch lists the rest in its error file as `batch_expired`; a
cancelled one in no file). `ends="failed"` refuses the whole input (no files, `errors` set).
The knobs are read when a batch ends, so a test may change them between two batches.
`batch_api=False` serves no Files or Batch API (404, as vLLM or llama.cpp do).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.fake_openai_server import FakeOpenAIServer, _error_body, _Handler

EXPIRED_ERROR = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}


@dataclass
class FakeBatch:
    """One batch as the server keeps it."""

    id: str
    input_file_id: str
    lines: list[dict[str, Any]]
    """The input lines, parsed."""
    created_at: int
    status: str = "validating"
    retrieves: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    errors: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The batch object the API returns."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "created_at": self.created_at,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "errors": self.errors,
            "request_counts": {
                "total": len(self.lines),
                "completed": self.completed,
                "failed": self.failed,
            },
        }


@dataclass
class FakeBatchServer(FakeOpenAIServer):
    """`FakeOpenAIServer` with the Files and Batch APIs (see the module docstring)."""

    polls_in_progress: int = 0
    ends: str = "completed"
    answered: int | None = None
    """Lines an `expired` or `cancelled` batch answered before it ended (None: none)."""
    failures: Mapping[int, int] = field(default_factory=dict)
    failures_in_output: bool = False
    batch_api: bool = True
    batch_reply: Callable[[dict[str, Any]], str | None] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.files: dict[str, tuple[str, bytes]] = {}
        """File id → (purpose, content)."""
        self.batches: dict[str, FakeBatch] = {}
        self.batch_creations = 0
        self.uploads = 0
        self._ids = 0

    def start(self) -> FakeBatchServer:
        super().start()
        # The parent's server, answering with this module's handler (no request can have
        # arrived yet: nobody knows the port).
        assert self._httpd is not None
        self._httpd.RequestHandlerClass = type("Handler", (_BatchHandler,), {"server_state": self})
        return self

    def __enter__(self) -> FakeBatchServer:
        return self.start()

    @property
    def batch_lines(self) -> list[dict[str, Any]]:
        """Every input line of every batch created, in order."""
        with self._lock:
            return [line for b in self.batches.values() for line in b.lines]

    # ---- behaviour (called by the handler, under no lock) ------------------------------------

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}-fake-{self._ids}"

    def _add_file(self, purpose: str, content: bytes) -> str:
        file_id = self._new_id("file")
        with self._lock:
            self.files[file_id] = (purpose, content)
        return file_id

    def _create(self, input_file_id: str) -> FakeBatch | str:
        """A new batch, or why the input is refused."""
        with self._lock:
            found = self.files.get(input_file_id)
        if found is None:
            return f"no file {input_file_id}"
        lines = [json.loads(line) for line in found[1].decode("utf-8").splitlines() if line]
        for line in lines:
            if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                return f"line {line.get('custom_id')}: not a POST to /v1/chat/completions"
        batch = FakeBatch(self._new_id("batch"), input_file_id, lines, int(time.time()))
        with self._lock:
            self.batches[batch.id] = batch
            self.batch_creations += 1
        return batch

    def _retrieve(self, batch: FakeBatch) -> None:
        """One look at the batch: it advances, and ends after `polls_in_progress` looks."""
        batch.retrieves += 1
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return
        if batch.retrieves <= self.polls_in_progress:
            batch.status = "in_progress"
            batch.completed = len(batch.lines) * batch.retrieves // (self.polls_in_progress + 1)
            return
        self._end(batch, self.ends)

    def _end(self, batch: FakeBatch, status: str) -> None:
        batch.status = status
        if status == "failed":
            batch.completed = batch.failed = 0
            batch.errors = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "scripted refusal", "line": 1}],
            }
            return
        answered = len(batch.lines) if status == "completed" else (self.answered or 0)
        outputs, errors = [], []
        for i, line in enumerate(batch.lines):
            if i >= answered:
                if status == "expired":
                    errors.append(_result(line, None, EXPIRED_ERROR))
                continue
            code = self.failures.get(i)
            if code is None:
                outputs.append(_result(line, self._completion(line["body"])))
                continue
            failure = _result(
                line, {"status_code": code, "body": _error_body("scripted", None, "x")}
            )
            (outputs if self.failures_in_output else errors).append(failure)
        batch.failed = sum(
            1
            for r in outputs + errors
            if r["response"] is None or r["response"]["status_code"] != 200
        )
        batch.completed = len(outputs) + len(errors) - batch.failed
        if outputs:
            batch.output_file_id = self._add_file("batch_output", _jsonl(outputs))
        if errors:
            batch.error_file_id = self._add_file("batch_output", _jsonl(errors))

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        content = self.batch_reply(body) if self.batch_reply else self.default.content
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        completion = len(content or "")
        return {
            "status_code": 200,
            "request_id": self._new_id("req"),
            "body": {
                "id": self._new_id("chatcmpl"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.served_model or body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_chars,
                    "completion_tokens": completion,
                    "total_tokens": prompt_chars + completion,
                },
            },
        }


def _result(
    line: dict[str, Any], response: dict[str, Any] | None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": f"batch_req_{line['custom_id'][:12]}",
        "custom_id": line["custom_id"],
        "response": response,
        "error": error,
    }


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = part.get_payload(decode=True) or b""
    return fields


def _file_json(file_id: str, purpose: str, size: int) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": f"{file_id}.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


class _BatchHandler(_Handler):
    server_state: FakeBatchServer

    def _ours(self) -> bool:
        path = self.path
        return self.server_state.batch_api and path.startswith(("/v1/files", "/v1/batches"))

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if not self._ours():
            super().do_GET()
            return
        state = self.server_state
        state._record(self._recorded(None))
        if not self._authorised():
            return
        parts = self.path.split("?")[0].strip("/").split("/")  # v1, files|batches, id, ...
        if parts[1] == "files" and len(parts) >= 3 and parts[2] in state.files:
            purpose, content = state.files[parts[2]]
            if len(parts) == 4 and parts[3] == "content":
                self._send_bytes(content)
            else:
                self._send(200, _file_json(parts[2], purpose, len(content)))
        elif parts[1] == "batches" and len(parts) == 2:
            data = [b.as_json() for b in reversed(state.batches.values())]
            self._send(200, {"object": "list", "data": data[:1], "has_more": len(data) > 1})
        elif parts[1] == "batches" and len(parts) == 3 and parts[2] in state.batches:
            with state._lock:
                batch = state.batches[parts[2]]
            state._retrieve(batch)
            self._send(200, batch.as_json())
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if not self._ours():
            super().do_POST()
            return
        state = self.server_state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        is_json = self.headers.get("Content-Type", "").startswith("application/json")
        state._record(self._recorded(json.loads(raw or b"{}") if is_json else None, raw))
        if not self._authorised():
            return
        parts = self.path.strip("/").split("/")
        if parts == ["v1", "files"]:
            self._upload(raw)
        elif parts == ["v1", "batches"]:
            found = state._create(json.loads(raw).get("input_file_id", ""))
            if isinstance(found, str):
                self._send(400, _error_body(found, None, "invalid_request_error"))
            else:
                self._send(200, found.as_json())
        elif len(parts) == 4 and parts[3] == "cancel" and parts[2] in state.batches:
            batch = state.batches[parts[2]]
            if batch.status not in ("completed", "failed", "expired", "cancelled"):
                state._end(batch, "cancelled")
            self._send(200, batch.as_json())
        else:
            self._not_found()

    def _upload(self, raw: bytes) -> None:
        state = self.server_state
        fields = _multipart(self.headers.get("Content-Type", ""), raw)
        purpose = fields.get("purpose", b"").decode()
        if purpose != "batch" or "file" not in fields:
            self._send(400, _error_body(f"bad upload ({purpose!r})", None, "invalid_request"))
            return
        with state._lock:
            state.uploads += 1
        file_id = state._add_file(purpose, fields["file"])
        self._send(200, _file_json(file_id, purpose, len(fields["file"])))

    def _not_found(self) -> None:
        self._send(404, _error_body(f"no route {self.path}", None, "invalid_request_error"))

    def _send_bytes(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
