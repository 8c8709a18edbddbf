"""Generation through an OpenAI-compatible completions server (`eval.backend=server|vllm`), with
the real openai client over HTTP against `tests/helpers/completions_server.py` on 127.0.0.1
serving the tiny model and its LoRA adapter by name."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from lorabench.config import compose, validate
from lorabench.demo.pretraining import resolved_model
from lorabench.errors import ConfigError, GenerationError
from lorabench.evaluation import evaluate
from lorabench.evaluation.backends import served_name
from lorabench.evaluation.targets import evaluation_hash, generation_key, resolve_target
from lorabench.modeling.base import build_model, build_tokenizer
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.completions_server import CompletionsServer
from tests.helpers.models import untracked_adapter

ITEMS = ("eval.demo_per_class=1", "eval.decoding.max_new_tokens=8")
"""10 items (one per raw class), short answers."""
GREEDY = ("eval.decoding.do_sample=false",)
ADAPTER_NAME = "tiny-lora"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's tiny model and tokenizer saved as a model directory (what a server loads)."""
    root = tmp_path_factory.mktemp("base")
    # Pretraining the shared base (when this test is the first to need it) logs a run: into
    # this fixture's own store, never the checkout's.
    cfg = validate(
        compose(
            [
                "profile=demo",
                f"cache_dir={root}/cache",
                f"tracking.tracking_uri=sqlite:///{root}/mlflow.db",
                f"tracking.artifact_location={root}/artifacts",
            ]
        )
    )
    model_cfg = resolved_model(cfg)  # the pretrained tiny base
    tokenizer = build_tokenizer(model_cfg, cfg.cache_dir)
    model = build_model(model_cfg, tokenizer, seed=0)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model"


def on_base(base_dir: Path) -> list[str]:
    return ["model=causal-lm", "model.name=tiny-saved", f"model.pretrained={base_dir}"]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Path:
    """A LoRA adapter trained a few steps on the saved base (no tracking)."""
    return untracked_adapter(tmp_path_factory.mktemp("adapter"), *on_base(base_dir))


@pytest.fixture(scope="module")
def server(base_dir: Path):
    """One server for the module, serving the base under its path (as vLLM names it)."""
    with CompletionsServer(str(base_dir)) as running:
        yield running


@pytest.fixture
def served(server: CompletionsServer):
    """The module's server with its knobs and records reset for the test."""
    server.requests.clear()
    server.max_in_flight = 0
    yield server
    server.latency, server.malformed = 0.0, False


def generations(path: Path) -> dict[int, str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {row["index"]: row["answer"] for row in rows}


def via_server(url: str, *extra: str) -> list[str]:
    return ["eval.backend=server", f"eval.server.url={url}", *extra]


@pytest.mark.slow
def test_server_answers_equal_the_hf_backend_greedy(demo_config, base_dir, adapter) -> None:
    """Token-id prompts (BOS included) and the decoding parameters reach the server intact:
    greedy answers are the HF backend's, for the base and for the adapter served by name."""
    cases = [((), ()), ((f"model_path={adapter}",), (f"eval.server.model={ADAPTER_NAME}",))]
    with CompletionsServer(str(base_dir), loras={ADAPTER_NAME: str(adapter)}) as server:
        for target, name in cases:
            common = [*on_base(base_dir), *ITEMS, *GREEDY, *target]
            hf = generations(evaluate(demo_config(*common, "eval.batch_size=1")).generations_path)
            overrides = [
                *common,
                *via_server(server.base_url, *name),
                "eval.output_dir=${cache_dir}/s",
            ]
            assert generations(evaluate(demo_config(*overrides)).generations_path) == hf
            assert sum(bool(answer) for answer in hf.values()) >= len(hf) // 2  # not all empty

    tokenizer = build_tokenizer(demo_config(*on_base(base_dir)).model, "")
    request = server.requests[-1]
    assert request["prompt"][0] == tokenizer.bos_token_id
    assert request["model"] == ADAPTER_NAME
    assert (request["top_k"], request["repetition_penalty"], request["temperature"]) == (30, 1.2, 0)


def test_requests_run_concurrently_on_a_slow_server(demo_config, base_dir, served) -> None:
    served.latency = 0.5
    cfg = demo_config(
        *on_base(base_dir), *ITEMS, *via_server(served.base_url, "eval.server.concurrency=5")
    )
    result = evaluate(cfg)
    assert len(generations(result.generations_path)) == 10
    assert served.max_in_flight == 5
    assert {r["temperature"] for r in served.requests} == {0.001}  # the paper's sampling


def test_a_request_slower_than_the_timeout_fails_its_item(demo_config, base_dir, served) -> None:
    served.latency = 2.0
    extra = ("eval.server.timeout=0.5", "eval.server.max_retries=0", "eval.server.concurrency=10")
    cfg = demo_config(*on_base(base_dir), *ITEMS, *via_server(served.base_url, *extra))
    with pytest.raises(GenerationError, match=r"10 of 10 answers could not be generated.*Timeout"):
        evaluate(cfg)
    path = resolve_target(cfg).eval_dir / "generations.jsonl"
    assert generations(path) == {}  # nothing stands in for the answers


def test_malformed_completions_are_failed_items_not_empty_answers(demo_config, base_dir, served):
    served.malformed = True
    cfg = demo_config(*on_base(base_dir), *ITEMS, *via_server(served.base_url))
    with pytest.raises(GenerationError, match=f"10 of 10 .*{served.base_url}.*expected one choice"):
        evaluate(cfg)
    assert generations(resolve_target(cfg).eval_dir / "generations.jsonl") == {}


def test_answers_kept_before_the_server_died_are_not_generated_again(
    demo_config, base_dir, served
) -> None:
    with CompletionsServer(str(base_dir), die_after=4) as dying:
        args = (
            *on_base(base_dir),
            *ITEMS,
            "eval.server.max_retries=0",
            "eval.server.concurrency=2",
        )
        with pytest.raises(GenerationError, match=r"6 of 10 answers could not be generated"):
            evaluate(demo_config(*args, *via_server(dying.base_url)))
    cfg = demo_config(*args, *via_server(served.base_url))
    kept = generations(resolve_target(cfg).eval_dir / "generations.jsonl")
    assert len(kept) == 4

    result = evaluate(cfg)

    assert len(served.requests) == 6
    final = generations(result.generations_path)
    assert len(final) == 10 and all(final[i] == kept[i] for i in kept)


def test_unreachable_server_stops_before_generating(demo_config, base_dir) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nobody listens there
    cfg = demo_config(*on_base(base_dir), *ITEMS, *via_server(url))
    with pytest.raises(GenerationError, match=f"cannot reach .*{url}.*{base_dir}"):
        evaluate(cfg)
    assert not (resolve_target(cfg).eval_dir / "generations.jsonl").exists()


def test_a_model_the_server_does_not_serve_stops_before_generating(
    demo_config, base_dir, served
) -> None:
    extra = "eval.server.model=an-adapter"
    cfg = demo_config(*on_base(base_dir), *ITEMS, *via_server(served.base_url, extra))
    with pytest.raises(
        GenerationError, match=rf"{served.base_url} does not serve model 'an-adapter'"
    ):
        evaluate(cfg)
    assert served.requests == []


def test_the_engine_is_part_of_the_generation_key_and_the_url_is_not(demo_config, base_dir):
    def key(*overrides: str) -> str:
        cfg = demo_config(*on_base(base_dir), *overrides)
        return generation_key(cfg, resolve_target(cfg))

    hf = key()
    assert key("eval.server.url=http://a/v1") == hf  # unused by the hf backend
    served_a = key(*via_server("http://a/v1"))
    assert served_a != hf
    assert key(*via_server("http://b/v1", "eval.server.concurrency=3")) == served_a
    assert key("eval.backend=vllm") == served_a  # the same engine, started for the run


def test_how_the_judges_calls_are_sent_is_not_part_of_the_evaluation_hash(demo_config, base_dir):
    def key(*overrides: str) -> str:
        cfg = demo_config(*on_base(base_dir), "judge=openai", *overrides)
        return evaluation_hash(cfg, resolve_target(cfg))

    synchronous = key()
    assert key("judge.batch=true", "judge.batch_poll_seconds=5") == synchronous
    assert key("judge.model=gpt-4o") != synchronous  # who judges is what is judged


def test_vllm_backend_without_vllm_says_how_to_get_it(demo_config, base_dir) -> None:
    cfg = demo_config(
        *on_base(base_dir), *ITEMS, "eval.backend=vllm", "eval.vllm.executable=no-vllm"
    )
    with pytest.raises(ConfigError, match=r"pip install vllm.*eval.backend=server"):
        evaluate(cfg)


def stand_in_vllm(folder: Path) -> Path:
    """An executable named `vllm` whose `serve` starts the test server with vLLM's arguments."""
    script = folder / "vllm"
    server = REPO_ROOT / "tests" / "helpers" / "completions_server.py"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = serve ] || exit 2\nshift\nexec {sys.executable} {server} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.slow
def test_vllm_backend_serves_the_adapter_unmerged_and_stops_the_server(
    demo_config, base_dir, adapter, tmp_path, monkeypatch
) -> None:
    stand_in_vllm(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    common = (*on_base(base_dir), *ITEMS, *GREEDY, f"model_path={adapter}")
    result = evaluate(demo_config(*common, "eval.backend=vllm", "eval.vllm.startup_timeout=120"))
    hf = evaluate(demo_config(*common, "eval.output_dir=${cache_dir}/hf", "eval.batch_size=1"))

    assert generations(result.generations_path) == generations(hf.generations_path)
    log = (result.generations_path.parent / "vllm.log").read_text()
    command = log.splitlines()[0]
    cfg = demo_config(*common)
    assert f"--enable-lora --lora-modules {served_name(cfg, resolve_target(cfg))}=" in command
    port = int(command.split("--port ")[1].split()[0])
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))  # stopped afterwards
