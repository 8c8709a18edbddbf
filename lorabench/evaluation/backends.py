"""Where answers are generated (`eval.backend`): transformers in this process, a running
OpenAI-compatible server, or a vLLM server started for the evaluation.

Each backend is opened as a context (`opened_backend`) that yields a function from questions to
answers (`lorabench.evaluation.generation.Answer`, in any order), so the pipeline keeps each
answer as it arrives whichever generated it.

A QLoRA adapter is evaluated by transformers only: a server applies an adapter to the base it
loads, the full-precision one, not the 4-bit base the adapter was trained on (vLLM can quantise a
base with bitsandbytes itself, but nothing here checks that its 4-bit weights are training's), so
the server backends refuse it before anything is generated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lorabench import contract
from lorabench.config.schema import Config
from lorabench.errors import ConfigError
from lorabench.evaluation.generation import Answer, generate_answers
from lorabench.evaluation.server_generation import ServerGenerator
from lorabench.evaluation.targets import Target, slug
from lorabench.evaluation.vllm_launcher import launched_vllm, serve_arguments, vllm_executable

log = logging.getLogger(__name__)

Generate = Callable[[Sequence[str]], Iterator[Answer]]


def served_name(cfg: Config, target: Target) -> str:
    """The name the server serves the target under (`eval.server.model`, documented there)."""
    if cfg.eval.server.model:
        return cfg.eval.server.model
    if target.spec.saved is None and target.spec.base.pretrained:
        return target.spec.base.pretrained
    return slug(target.name)


def check_backend(cfg: Config, target: Target) -> None:
    """Before any compute: a running server serves the model; vLLM can be started for it."""
    backend = cfg.eval.backend
    _check_served_as_trained(cfg, target)
    if backend == "server":
        assert cfg.eval.server.url is not None  # the schema requires it
        _server_generator(cfg, target, cfg.eval.server.url).preflight()
    elif backend == "vllm":
        vllm_executable(cfg.eval.vllm)
        serve_arguments(target, served_name(cfg, target))


@contextmanager
def opened_backend(cfg: Config, target: Target) -> Iterator[Generate]:
    """The configured backend, ready to generate for `target` (a vLLM server stopped after)."""
    backend = cfg.eval.backend
    _check_served_as_trained(cfg, target)
    if backend == "hf":
        yield _hf_generate(cfg, target)
    elif backend == "server":
        assert cfg.eval.server.url is not None
        yield _served(cfg, target, cfg.eval.server.url)
    else:
        vllm_log = target.eval_dir / contract.VLLM_LOG_FILE
        log.info("starting vllm serve for %s (log: %s)", target.spec.describe(), vllm_log)
        with launched_vllm(cfg.eval.vllm, target, served_name(cfg, target), vllm_log) as url:
            yield _served(cfg, target, url)


def _check_served_as_trained(cfg: Config, target: Target) -> None:
    """ConfigError for a QLoRA adapter on a server backend (see the module docstring)."""
    method = target.spec.method
    if cfg.eval.backend == "hf" or method is None or not method.quantised:
        return
    raise ConfigError(
        f"eval.backend={cfg.eval.backend}: {target.spec.saved} is a QLoRA adapter, trained on a "
        "4-bit base; a server would apply it to the full-precision base, and score another "
        "model than the one trained; use eval.backend=hf, which evaluates it on its 4-bit base"
    )


def loaded_model(cfg: Config, target: Target) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The target's model as transformers evaluates it: on the GPU in bf16 when there is one,
    else on the CPU in fp32 (what generation and the benchmark stage both score)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model, tokenizer = target.spec.load(cfg.cache_dir, dtype)
    return model.to(device), tokenizer


def _hf_generate(cfg: Config, target: Target) -> Generate:
    log.info("generating with %s", target.spec.describe())
    model, tokenizer = loaded_model(cfg, target)

    def generate(questions: Sequence[str]) -> Iterator[Answer]:
        return generate_answers(
            model,
            tokenizer,
            questions,
            cfg.eval.decoding,
            batch_size=cfg.eval.batch_size,
            seed=cfg.eval.seed,
            progress=cfg.training.progress_bar,
            desc=f"{target.name} generating",
        )

    return generate


def _server_generator(cfg: Config, target: Target, url: str) -> ServerGenerator:
    return ServerGenerator(
        cfg.eval.server,
        url,
        served_name(cfg, target),
        target.spec.tokenizer(cfg.cache_dir),
        cfg.eval.decoding,
        cfg.eval.seed,
    )


def _served(cfg: Config, target: Target, url: str) -> Generate:
    generator = _server_generator(cfg, target, url)
    generator.preflight()
    log.info("generating with %s (%s)", generator.describe(), target.spec.describe())
    return generator.generate
