"""Answer generation through an OpenAI-compatible completions server (vLLM, SGLang, TGI).

- Prompts are sent as token ids (`lorabench.data.prompts.encode_prompt`, BOS included), so the
  server's own tokenisation of the template cannot differ from training's.
- The paper's decoding: `temperature` and `top_p` as the API defines them, `top_k` and
  `repetition_penalty` as the servers' extra sampling parameters (`extra_body`); greedy
  (`do_sample=false`) is temperature 0.
- Concurrency: at most `concurrency` requests in flight (threads over the synchronous client, which
  is thread-safe); answers are yielded as they arrive, so the caller keeps each at once.
- Retries: the openai client's own (exponential backoff on connection errors, 408, 409, 429, 5xx).
- An item whose request still fails, or whose completion is malformed, is counted as failed and
  never yielded as an answer: after the other answers, `GenerationError` names how many failed.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from lorabench.config.schema import DecodingConfig, ServerConfig
from lorabench.data.prompts import encode_prompt
from lorabench.errors import ConfigError, GenerationError
from lorabench.evaluation.generation import Answer

FINISH_REASONS = {"stop": False, "length": True}
"""The finish reasons of a complete answer, and whether each means `max_tokens` cut it."""
PREFLIGHT_TIMEOUT = 30.0
"""Seconds for `GET /models` before generation: a served model answers it at once."""
API_KEY_PLACEHOLDER = "unused"
"""The openai client insists on a key; servers started without `--api-key` ignore it."""


class MalformedCompletion(ValueError):
    """A 200 reply that is not a completion this module can use."""


@dataclass(frozen=True)
class Failure:
    """An item the server did not answer."""

    index: int
    reason: str


def decoding_params(decoding: DecodingConfig, seed: int) -> dict[str, Any]:
    """The completions request's sampling arguments for the paper's decoding settings."""
    return {
        "max_tokens": decoding.max_new_tokens,
        "temperature": decoding.temperature if decoding.do_sample else 0.0,
        "top_p": decoding.top_p,
        "seed": seed,
        # Not in OpenAI's API; vLLM, SGLang and TGI's OpenAI routes take them as extra params.
        "extra_body": {"top_k": decoding.top_k, "repetition_penalty": decoding.repetition_penalty},
    }


def parse_completion(completion: Any) -> tuple[str, bool]:
    """(text, truncated) of a completion; MalformedCompletion if it holds no usable answer."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or len(choices) != 1:
        raise MalformedCompletion(f"expected one choice, got {choices!r:.200}")
    text = getattr(choices[0], "text", None)
    reason = getattr(choices[0], "finish_reason", None)
    if not isinstance(text, str):
        raise MalformedCompletion(f"the choice has no text (text={text!r:.100})")
    if reason not in FINISH_REASONS:
        raise MalformedCompletion(f"finish_reason={reason!r}, not one of {sorted(FINISH_REASONS)}")
    return text.strip(), FINISH_REASONS[reason]


class ServerGenerator:
    """Generates answers with one served model (or adapter) of one server."""

    def __init__(
        self,
        server: ServerConfig,
        url: str,
        model: str,
        tokenizer: PreTrainedTokenizerBase,
        decoding: DecodingConfig,
        seed: int,
    ) -> None:
        self.url, self.model = url, model
        self.tokenizer, self.concurrency = tokenizer, server.concurrency
        self.params = decoding_params(decoding, seed)
        self.client = openai.OpenAI(
            base_url=url,
            api_key=_api_key(server),
            max_retries=server.max_retries,
            timeout=server.timeout,
        )

    def describe(self) -> str:
        return f"model {self.model!r} at {self.url}"

    def preflight(self) -> None:
        """Check the server answers and serves `model`, before anything is generated."""
        quick = self.client.with_options(max_retries=0, timeout=PREFLIGHT_TIMEOUT)
        try:
            served = [m.id for m in quick.models.list()]
        except openai.APIConnectionError as err:
            raise GenerationError(
                f"cannot reach the inference server at {self.url} to generate with model "
                f"{self.model!r} ({err}); start it, or fix eval.server.url"
            ) from err
        except openai.APIStatusError as err:
            raise GenerationError(
                f"the inference server at {self.url} answered GET /models with "
                f"{err.status_code} ({err.message}); model {self.model!r} cannot be checked"
            ) from err
        if self.model not in served:
            raise GenerationError(
                f"the inference server at {self.url} does not serve model {self.model!r} (it "
                f"serves {', '.join(map(repr, served)) or 'nothing'}); set eval.server.model to "
                f"the served name, or serve an adapter by that name: vllm serve BASE "
                f"--enable-lora --lora-modules {self.model}=ADAPTER_DIR"
            )

    def generate(self, questions: Sequence[str], *, progress: bool = True) -> Iterator[Answer]:
        """Yield each answer as it arrives; then raise GenerationError if any item failed."""
        failures: list[Failure] = []
        bar = tqdm(total=len(questions), desc="generating", unit="answer", disable=not progress)
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._one, i, q) for i, q in enumerate(questions)]
            try:
                for future in concurrent.futures.as_completed(futures):
                    result = future.result()
                    bar.update(1)
                    if isinstance(result, Failure):
                        failures.append(result)
                    else:
                        yield result
            finally:  # the caller stopped early (an error, Ctrl-C): send nothing more
                for future in futures:
                    future.cancel()
                bar.close()
        if failures:
            first = min(failures, key=lambda f: f.index)
            raise GenerationError(
                f"{len(failures)} of {len(questions)} answers could not be generated with "
                f"{self.describe()} (first, item {first.index}: {first.reason}); the others are "
                "kept, and running the evaluation again generates only the missing ones"
            )

    def _one(self, index: int, question: str) -> Answer | Failure:
        prompt = encode_prompt(self.tokenizer, question)
        try:
            completion = self.client.completions.create(
                model=self.model, prompt=prompt, **self.params
            )
            text, truncated = parse_completion(completion)
        except (openai.OpenAIError, MalformedCompletion) as err:
            return Failure(index, f"{type(err).__name__}: {err}")
        return Answer(index, text, truncated)


def _api_key(server: ServerConfig) -> str:
    if server.api_key_env is None:
        return API_KEY_PLACEHOLDER
    key = os.environ.get(server.api_key_env)
    if not key:
        raise ConfigError(
            f"eval.server.api_key_env={server.api_key_env!r}: that environment variable is not "
            "set; export the server's key in it, or set eval.server.api_key_env=null"
        )
    return key
