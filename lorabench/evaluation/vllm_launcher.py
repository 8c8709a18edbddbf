"""`eval.backend=vllm`: start `vllm serve` for one evaluation, wait until it serves, stop it.

The served model is the evaluated one, unmerged: the base itself, a fully fine-tuned model
directory, or the base with the LoRA adapter under its served name (`--enable-lora
--lora-modules NAME=DIR`; never a QLoRA adapter, which `backends` refuses). The server's
output goes to `vllm.log` in the evaluation directory, and the server runs in its own process
group, so stopping it stops its workers too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai

from lorabench.config.schema import VllmConfig
from lorabench.errors import ConfigError, GenerationError
from lorabench.evaluation.server_generation import API_KEY_PLACEHOLDER
from lorabench.evaluation.targets import Target
from lorabench.methods import ADAPTER_CONFIG_FILE

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for `--max-lora-rank` (its default, 16, refuses larger adapters)."""
POLL_SECONDS = 1.0
"""How often readiness is asked for while the server loads."""
STOP_GRACE_SECONDS = 30.0
"""How long a stopped server may take to exit before it is killed."""
LOG_TAIL_CHARS = 2000
"""How much of the server's log an error quotes."""
INSTALL_HINT = (
    "install vLLM (`pip install vllm` on a machine with a CUDA GPU, in an environment of its own "
    "if its torch version clashes with this project's) or point eval.vllm.executable at it; or "
    "start an OpenAI-compatible server yourself and use eval.backend=server "
    "eval.server.url=http://HOST:PORT/v1"
)


def vllm_executable(cfg: VllmConfig) -> str:
    """The path of the vLLM command; ConfigError saying how to get one when there is none."""
    found = shutil.which(cfg.executable)
    if found is None:
        raise ConfigError(f"eval.backend=vllm: no {cfg.executable!r} command found; {INSTALL_HINT}")
    return found


def serve_arguments(target: Target, served_name: str) -> list[str]:
    """`vllm serve` arguments that serve the target, unmerged, as `served_name`."""
    spec = target.spec
    base = spec.base.pretrained
    method = spec.method
    if method is not None and not method.needs_base:  # a complete model directory
        return [str(spec.saved), "--served-model-name", served_name]
    if base is None:
        raise ConfigError(
            f"eval.backend=vllm: model {spec.base.name!r} is built from model.architecture, not "
            "loaded from model.pretrained, so no server can load it; use eval.backend=hf"
        )
    args = [base]
    if spec.base.tokenizer.name_or_path:
        args += ["--tokenizer", spec.base.tokenizer.name_or_path]
    if spec.saved is None:
        return [*args, "--served-model-name", served_name]
    adapter = json.loads((spec.saved / ADAPTER_CONFIG_FILE).read_text())
    if adapter.get("use_dora"):
        raise ConfigError(
            f"eval.backend=vllm: {spec.saved} is a DoRA adapter, which vLLM's LoRA support does "
            "not serve; use eval.backend=hf"
        )
    rank = next((r for r in LORA_RANKS if r >= int(adapter["r"])), None)
    if rank is None:
        raise ConfigError(f"eval.backend=vllm: adapter rank {adapter['r']} exceeds vLLM's maximum")
    return [
        *args,
        "--served-model-name",
        base,
        "--enable-lora",
        "--lora-modules",
        f"{served_name}={spec.saved}",
        "--max-lora-rank",
        str(rank),
    ]


@contextmanager
def launched_vllm(cfg: VllmConfig, target: Target, served_name: str, log: Path) -> Iterator[str]:
    """Start `vllm serve` for `target`; yield its API's base URL once it serves; stop it."""
    executable = vllm_executable(cfg)
    port = cfg.port or _free_port(cfg.host)
    url = f"http://{cfg.host}:{port}/v1"
    command = [
        executable,
        "serve",
        *serve_arguments(target, served_name),
        "--host",
        cfg.host,
        "--port",
        str(port),
        *cfg.extra_args,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        out.write(" ".join(command) + "\n")
        out.flush()
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(process, url, cfg.startup_timeout, log)
        yield url
    finally:
        _stop(process)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_ready(process: subprocess.Popen, url: str, timeout: float, log: Path) -> None:
    client = openai.OpenAI(
        base_url=url, api_key=API_KEY_PLACEHOLDER, max_retries=0, timeout=POLL_SECONDS
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GenerationError(
                f"vllm serve exited with status {process.returncode} before serving at {url}; "
                f"its log ({log}) ends:\n{_tail(log)}"
            )
        try:
            client.models.list()
            return
        except (openai.APIConnectionError, openai.APIStatusError):
            pass  # not listening yet, or still loading
        time.sleep(POLL_SECONDS)
    raise GenerationError(
        f"vllm serve did not answer {url}/models within eval.vllm.startup_timeout={timeout} s; "
        f"its log ({log}) ends:\n{_tail(log)}"
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
