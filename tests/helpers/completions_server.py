"""A small OpenAI-compatible completions server on 127.0.0.1 that generates with a real HF model.

It stands in for vLLM in tests: it serves a model directory and LoRA adapters by name (the
adapter merged into its own copy of the base), takes token-id prompts only (a text prompt is
refused, so a test proves the client sends ids), and decodes with transformers' `generate` using
the request's sampling parameters (`top_k`, `repetition_penalty` as vLLM's extra parameters).

    with CompletionsServer("path/to/model", loras={"my-adapter": "path/to/adapter"}) as server:
        server.base_url  # http://127.0.0.1:PORT/v1

Knobs for bad servers: `latency` (seconds before each answer), `die_after` (after that many
answers the server stops listening and drops the requests in flight), `malformed` (answers 200
with no usable choice). Requests are recorded, and `max_in_flight` is the concurrency seen.

Run as a program it takes `vllm serve`'s arguments (after `serve`), so a stand-in `vllm`
executable is one line: `exec python tests/helpers/completions_server.py "$@"`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


@dataclass
class CompletionsServer:
    """The server; `start()`/`stop()` or a `with` block."""

    model: str
    served_name: str | None = None
    """The base model's served name; None: `model` itself, as vLLM does."""
    loras: dict[str, str] = field(default_factory=dict)
    tokenizer: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 0.0
    die_after: int | None = None
    malformed: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._in_flight = 0
        self._answered = 0
        self.dead = False
        self._tok = AutoTokenizer.from_pretrained(self.tokenizer or self.model)
        self._models = {self.served_name or self.model: _load(self.model)}
        for name, path in self.loras.items():
            self._models[name] = PeftModel.from_pretrained(
                _load(self.model), path
            ).merge_and_unload()
        self._httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        return f"http://{self.host}:{self._httpd.server_address[1]}/v1"

    def start(self) -> CompletionsServer:
        self._httpd = http.server.ThreadingHTTPServer((self.host, self.port), _handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None and not self.dead:
            self.dead = True
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> CompletionsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def served(self) -> list[str]:
        return list(self._models)

    def complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON reply to one completions request."""
        prompt = body.get("prompt")
        if not (isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt)):
            return 400, _error("this server takes token-id prompts only", "BadRequestError")
        model = self._models.get(body.get("model"))
        if model is None:
            return 404, _error(f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        if self.malformed:
            return 200, {"id": "cmpl-x", "object": "text_completion", "choices": []}
        max_tokens = int(body.get("max_tokens") or 16)
        temperature = float(body.get("temperature", 1.0))
        sampling = (
            {
                "do_sample": True,
                "temperature": temperature,
                "top_p": body.get("top_p", 1.0),
                "top_k": body.get("top_k", 0),
            }
            if temperature > 0
            else {"do_sample": False}
        )
        with self._generate_lock, torch.no_grad():
            if "seed" in body:
                torch.manual_seed(int(body["seed"]))
            output = model.generate(
                input_ids=torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=max_tokens,
                repetition_penalty=body.get("repetition_penalty", 1.0),
                eos_token_id=self._tok.eos_token_id,
                pad_token_id=self._tok.pad_token_id or self._tok.eos_token_id,
                **sampling,
            )
        generated = output[0, len(prompt) :].tolist()
        stopped = self._tok.eos_token_id in generated
        text = self._tok.decode(generated, skip_special_tokens=True)
        choice = {"index": 0, "text": text, "logprobs": None}
        choice["finish_reason"] = "stop" if stopped or len(generated) < max_tokens else "length"
        usage = {"prompt_tokens": len(prompt), "completion_tokens": len(generated)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        reply = {"id": "cmpl-test", "object": "text_completion", "created": int(time.time())}
        return 200, {**reply, "model": body["model"], "choices": [choice], "usage": usage}

    def _enter(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> bool:
        """Count an answer; False when the server has died and must not answer."""
        with self._lock:
            self._in_flight -= 1
            if self.dead:
                return False
            self._answered += 1
            if self.die_after is not None and self._answered > self.die_after:
                threading.Thread(target=self.stop, daemon=True).start()
                return False
            return True


def _load(path: str) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None}}


def _handler(server: CompletionsServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, _error(f"no route {self.path}", "NotFoundError"))
                return
            models = [
                {"id": name, "object": "model", "owned_by": "test"} for name in server.served()
            ]
            self._send(200, {"object": "list", "data": models})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.path.rstrip("/") != "/v1/completions":
                self._send(404, _error(f"no route {self.path}", "NotFoundError"))
                return
            server._enter(body)
            if server.latency:
                time.sleep(server.latency)
            status, reply = server.complete(body)
            if server._leave():
                self._send(status, reply)
            else:  # died: drop the connection without an answer
                self.close_connection = True

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def main(argv: list[str] | None = None) -> None:
    """`vllm serve`'s arguments (those the project passes) plus this server's knobs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--served-model-name")
    parser.add_argument("--tokenizer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--enable-lora", action="store_true")
    parser.add_argument("--lora-modules", nargs="*", default=[])
    parser.add_argument("--max-lora-rank", type=int)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    loras = dict(module.split("=", 1) for module in args.lora_modules)
    for path in loras.values():
        assert Path(path).is_dir(), f"no adapter directory {path}"
    server = CompletionsServer(
        args.model,
        args.served_model_name,
        loras,
        args.tokenizer,
        args.host,
        args.port,
        args.latency,
    ).start()
    print(f"serving {', '.join(server.served())} at {server.base_url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
