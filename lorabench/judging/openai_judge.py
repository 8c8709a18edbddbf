"""An LLM judge behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM,
llama.cpp, Ollama), concurrent, cached, retried and auditable.

- Pacing (`lorabench.judging.pacing.Pacer`, one per judge, so what it learnt carries over to
  the next batch): `AsyncOpenAI` on an asyncio loop, at most `concurrency` requests in flight,
  fewer after 429s (halved once per congestion episode, grown back by one per window of
  successes; the 429s are counted in `stats.rate_limited`);
  with `requests_per_minute` / `tokens_per_minute` a per-minute budget of each (a request's
  tokens are estimated before it starts, with `estimate`'s counter plus the expected reply, and
  corrected by the reply's `usage`); and whatever the replies' `x-ratelimit-remaining-*` /
  `x-ratelimit-reset-*` headers allow (read from every reply, 429s included, through the
  client's `with_raw_response`).
- Retries: the client's own retries are off (`max_retries=0`); this module retries 408, 409,
  429, 5xx, timeouts and connection errors with exponential backoff and equal jitter
  (`backoff_base * 2**n`, capped at `backoff_max`, times a random factor in [0.5, 1]), not
  holding a slot while it waits; retries go before first attempts. A `Retry-After` (or
  `retry-after-ms`) header is honoured by the request it answers: its retry waits at least that
  long. Other requests are not held by it (a global hold made 1,000 calls take 4 times as long
  as clean when 10% of first attempts were rate-limited); the halved concurrency and the
  headers' budget (no new request while the server says none remain) throttle them instead:
  the pacing module's docstring says exactly how. A server asking for more than
  `max_retry_after` seconds (a quota, not a burst) ends that item's retries. Other 4xx are not
  retried: the item gets an `error` judgement with the server's message.
- Cache: every reply (including ones with no readable score) is written to the sqlite cache as
  soon as it arrives, keyed by model, sampling settings and the full prompt; identical prompts
  within a batch are sent once. Errors are not cached, so a rerun retries exactly those.
- Served model: the `model` field of each reply (the dated snapshot behind an alias, e.g.
  `gpt-3.5-turbo-0125`) is cached with the reply and collected in `served_models`, cached
  replies included, so a fully cached rerun still says which model scored it.
- The API key is read from the environment variable named by `api_key_env` when a request is
  about to be made, handed to the client, and never stored on the judge, logged, cached or put
  in a judgement (error texts are scrubbed of it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
from tqdm.auto import tqdm

from lorabench.judging.base import CostEstimate, Judge, JudgeError, Judgement, JudgeRequest
from lorabench.judging.cache import CachedReply, JudgeCache, cache_key
from lorabench.judging.pacing import Outcome, Pacer, Slot
from lorabench.judging.parsing import ParsedScore, parse_score_detail
from lorabench.judging.prompts import PROJECT_PROMPTS, JudgePrompts

log = logging.getLogger(__name__)

DEFAULT_CACHE_PATH = Path(".cache/judge/openai.sqlite")
"""Where replies are cached unless told otherwise (git-ignored)."""

EXPECTED_REPLY_TOKENS = 100
"""Completion tokens assumed per call in estimates: a score and a sentence or two of reasons."""

UNKNOWN_SERVED_MODEL = "unknown"
"""In `served_models` for replies whose model is not known (cached before it was recorded, or a
server that names none)."""

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_SECRET_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*.]{3,}")
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Outcome:
    """What one prompt's calls ended with: a reply, or an error reason."""

    reply: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    status: int | None = None
    """The HTTP status of a non-retryable error response."""
    served_model: str | None = None
    """The reply's `model` field (None: not known)."""


@dataclass(frozen=True)
class _Retry:
    """Why one attempt failed in a way worth retrying."""

    failure: str
    retry_after: float | None = None
    """Seconds the server asked to wait (a `Retry-After` header), if it did."""
    status: int | None = None
    """The HTTP status of the failed attempt (None: no response, e.g. a timeout)."""


class OpenAIJudge(Judge):
    """Scores answers with a chat model over the OpenAI API (see the module docstring).

    The settings are taken as given: the `judge` config section that `build_judge` makes a
    judge from has been checked by the schema (`lorabench.config.schema.JudgeConfig`), and one
    built by hand takes its values in the same ranges. What only the run can tell (the key in
    the environment, the server's answers) is checked when judging, or by `preflight`.

    Args:
        model: the judge model's name as the server knows it (the paper: gpt-3.5-turbo).
        base_url: an OpenAI-compatible server, e.g. `http://localhost:8000/v1` (vLLM); None for
            the client's default (OpenAI, or `OPENAI_BASE_URL`).
        api_key_env: the environment variable holding the API key; None for a local server
            that needs none (a placeholder key is sent).
        concurrency: requests in flight at once.
        max_retries: retries per item after the first attempt, on retryable failures.
        timeout: seconds per request before it counts as timed out (and is retried).
        temperature: sampling temperature (0, as in BELLE's judge).
        max_tokens: cap on reply tokens; None leaves it to the server.
        cache_path: sqlite file of replies; None keeps the cache in memory only.
        prompts: per-class instructions and layout (`PROJECT_PROMPTS` or
            `load_belle_prompts(path)`).
        backoff_base: first retry's wait in seconds (doubles per retry).
        backoff_max: cap on a single backoff wait.
        max_retry_after: a `Retry-After` longer than this ends the item's retries.
        recheck_parse_failures: ask again for cached replies that held no valid score (useful
            with temperature > 0; by default a paid reply is reused as it is).
        requests_per_minute: the most requests to start per minute (a continuously refilled
            budget); None: no budget of our own (the server's rate-limit headers still pace).
        tokens_per_minute: the most tokens (prompt plus expected reply, estimated before the
            request and corrected by its usage) per minute; None: no budget of our own.
    """

    def __init__(
        self,
        model: str = "gpt-3.5-turbo",
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 16,
        max_retries: int = 6,
        timeout: float = 60.0,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        cache_path: str | Path | None = DEFAULT_CACHE_PATH,
        prompts: JudgePrompts = PROJECT_PROMPTS,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 120.0,
        recheck_parse_failures: bool = False,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
    ) -> None:
        """Keep the settings (the class docstring describes them) and open the reply cache."""
        super().__init__()
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.prompts = prompts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.recheck_parse_failures = recheck_parse_failures
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.cache = JudgeCache(":memory:" if cache_path is None else cache_path)
        self.pacer = Pacer(
            concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            max_header_wait=max_retry_after,  # longer is a quota: the items end, not wait
        )
        """When each request may start; it lives as long as the judge, since the server's
        limits do not reset between batches."""
        self._served: set[str] = set()
        self._rng = random.Random()
        self._count_tokens: Callable[[str], int] | None = None

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def billed_model(self) -> str:
        """`model`: prices are looked up under the name the judge asks for."""
        return self.model

    def params(self) -> dict[str, object]:
        """Settings that define the judge's scores, for run parameters (no secrets)."""
        return {
            "name": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "prompts": self.prompts.source,
            "prompt_layout": self.prompts.layout.name,
        }

    @property
    def served_models(self) -> tuple[str, ...]:
        """The model names the replies judged so far carried (cached ones included), sorted;
        `UNKNOWN_SERVED_MODEL` stands for replies whose model is not known. Empty before
        anything was judged."""
        return tuple(sorted(self._served))

    def __repr__(self) -> str:
        return (
            f"OpenAIJudge(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency}, "
            f"cache={self.cache.path!r}, prompts={self.prompts.source!r}, "
            f"layout={self.prompts.layout.name!r})"
        )

    def close(self) -> None:
        """Close the cache file."""
        self.cache.close()

    def __enter__(self) -> OpenAIJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- planning: prompts, keys, what the cache already has --------------------------------

    def prompt_for(self, request: JudgeRequest) -> str:
        """The exact user message sent for `request`."""
        return self.prompts.build(request.item, request.answer)

    def parse_reply(self, reply: str) -> ParsedScore:
        """The score in a reply, or None with the reason (a parse failure).

        The one place replies are read, both when judging and when `recheck_parse_failures`
        decides which cached replies to ask again for, so a subclass that asks for something
        else (a pairwise verdict) overrides this and the prompt (`prompt_for`) only.
        """
        return parse_score_detail(reply)

    def key_for(self, prompt: str, repeat: int = 0) -> str:
        """The cache key of a prompt under this judge's model and settings (and, for a repeat,
        its number: a repeat is its own call, kept apart from the first reply)."""
        settings: dict[str, object] = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if repeat:
            settings["repeat"] = repeat
        return cache_key(self.model, prompt, **settings)

    def _plan(
        self, requests: Sequence[JudgeRequest]
    ) -> tuple[list[str], dict[str, str], dict[str, CachedReply]]:
        """Per request its key; the unique prompts by key; the usable cached replies."""
        keys: list[str] = []
        prompts: dict[str, str] = {}
        for request in requests:
            prompt = self.prompt_for(request)
            key = self.key_for(prompt, request.repeat)
            keys.append(key)
            prompts.setdefault(key, prompt)
        cached = self.cache.get_many(list(prompts))
        if self.recheck_parse_failures:
            cached = {
                k: c for k, c in cached.items() if self.parse_reply(c.reply).score is not None
            }
        return keys, prompts, cached

    def estimate(self, requests: Sequence[JudgeRequest]) -> CostEstimate:
        """Calls `judge_all(requests)` would make now and their rough token count.

        Cache hits and duplicate prompts cost nothing and are not counted. Tokens are counted
        with tiktoken when it is installed and has the model's encoding, otherwise estimated
        (one token per CJK character, one per four other characters); each call adds
        `EXPECTED_REPLY_TOKENS` (or `max_tokens` if lower) for the reply.
        """
        _, prompts, cached = self._plan(requests)
        to_call = [p for k, p in prompts.items() if k not in cached]
        reply = self.expected_reply_tokens
        count = _token_counter(self.model)
        return CostEstimate(len(to_call), sum(count(p) + 8 + reply for p in to_call))

    @property
    def expected_reply_tokens(self) -> int:
        """Completion tokens an estimate assumes per call: `EXPECTED_REPLY_TOKENS`, or
        `max_tokens` if lower."""
        return min(EXPECTED_REPLY_TOKENS, self.max_tokens or EXPECTED_REPLY_TOKENS)

    # ---- judging -----------------------------------------------------------------------------

    def _judge_all(self, requests: Sequence[JudgeRequest], progress: bool) -> list[Judgement]:
        keys, prompts, cached = self._plan(requests)
        to_call = {k: p for k, p in prompts.items() if k not in cached}
        per_key = {k: n for k, n in Counter(keys).items() if k in to_call}
        bar = tqdm(
            total=len(requests), desc=f"judging ({self.name})", unit="item", disable=not progress
        )
        bar.update(len(requests) - sum(per_key.values()))
        outcomes: dict[str, _Outcome] = {}
        try:
            if to_call:
                api_key = self._api_key()
                outcomes = _run(
                    self._call_all(api_key, to_call, lambda key: bar.update(per_key[key]))
                )
        finally:
            bar.close()

        judgements: list[Judgement] = []
        paid: set[str] = set()
        for request, key in zip(requests, keys, strict=True):
            if key in cached:
                hit = cached[key]
                outcome = _Outcome(
                    hit.reply,
                    hit.prompt_tokens,
                    hit.completion_tokens,
                    served_model=hit.served_model,
                )
                from_cache = True
            else:
                outcome = outcomes[key]
                from_cache = key in paid  # a duplicate of a prompt already sent in this batch
                paid.add(key)
            if outcome.reply is not None:
                self._served.add(outcome.served_model or UNKNOWN_SERVED_MODEL)
            judgements.append(self._judgement(request, outcome, from_cache))
        return judgements

    def _judgement(self, request: JudgeRequest, outcome: _Outcome, cached: bool) -> Judgement:
        common = {"item": request.item, "answer": request.answer, "judge": self.name}
        if outcome.reply is None:
            return Judgement(**common, score=None, status="error", reason=outcome.error)
        parsed = self.parse_reply(outcome.reply)
        return Judgement(
            **common,
            score=parsed.score,
            status="ok" if parsed.score is not None else "parse_failure",
            reason=parsed.reason,
            reply=outcome.reply,
            cached=cached,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            served_model=outcome.served_model or "",
        )

    async def _call_all(
        self, api_key: str, prompts: dict[str, str], on_done: Callable[[str], None]
    ) -> dict[str, _Outcome]:
        async with self._client(api_key) as client:

            async def one(key: str, prompt: str) -> tuple[str, _Outcome]:
                # No semaphore here: the pacer admits each attempt, so a request waiting to
                # retry holds no slot.
                outcome = await self._call(client, prompt, api_key)
                if outcome.reply is not None:
                    # Written as it arrives: an interrupted run keeps what it paid for.
                    self.cache.put(
                        key,
                        model=self.model,
                        prompt=prompt,
                        reply=outcome.reply,
                        prompt_tokens=outcome.prompt_tokens,
                        completion_tokens=outcome.completion_tokens,
                        served_model=outcome.served_model,
                    )
                else:
                    log.warning("judge request failed: %s", outcome.error)
                on_done(key)
                return key, outcome

            results = await asyncio.gather(*(one(k, p) for k, p in prompts.items()))
        return dict(results)

    async def _call(
        self, client: openai.AsyncOpenAI, prompt: str, api_key: str, preflight: bool = False
    ) -> _Outcome:
        """One prompt, with retries, each attempt admitted by the pacer; never raises for HTTP
        trouble (see `_Outcome.error`)."""
        extra: dict[str, Any] = {}
        if preflight:
            extra["max_tokens"] = 1
        elif self.max_tokens is not None:
            extra["max_tokens"] = self.max_tokens
        retry = _Retry("")
        for attempt in range(self.max_retries + 1):
            slot = await self.pacer.acquire(self._tokens_of(prompt, extra), retry=attempt > 0)
            if preflight:
                self.stats.preflight_calls += 1
            else:
                self.stats.calls += 1
                self.stats.retries += attempt > 0
            result = await self._attempt(client, prompt, api_key, extra, slot)
            if isinstance(result, _Outcome):
                if not preflight:
                    self.stats.prompt_tokens += result.prompt_tokens
                    self.stats.completion_tokens += result.completion_tokens
                return result
            retry = result
            self.stats.rate_limited += retry.status == 429 and not preflight
            if attempt == self.max_retries:
                break
            if retry.retry_after is not None and retry.retry_after > self.max_retry_after:
                return _Outcome(
                    None,
                    error=f"{retry.failure} (server asked to retry after {retry.retry_after:g}s, "
                    f"more than max_retry_after={self.max_retry_after:g}s)",
                )
            await self._wait_to_retry(attempt, retry)
        attempts = self.max_retries + 1
        return _Outcome(None, error=f"gave up after {attempts} attempts; last: {retry.failure}")

    def _tokens_of(self, prompt: str, extra: dict[str, Any]) -> int:
        """The tokens a request is expected to cost (prompt plus expected reply), for the
        pacer's token budgets; 0 while none is in force (counting would be wasted)."""
        if not self.pacer.counts_tokens:
            return 0
        if self._count_tokens is None:
            self._count_tokens = _token_counter(self.model)
        expected = min(EXPECTED_REPLY_TOKENS, extra.get("max_tokens") or EXPECTED_REPLY_TOKENS)
        return self._count_tokens(prompt) + 8 + expected

    async def _attempt(
        self,
        client: openai.AsyncOpenAI,
        prompt: str,
        api_key: str,
        extra: dict[str, Any],
        slot: Slot,
    ) -> _Outcome | _Retry:
        """One request, started on `slot` (released here, with what the reply said about the
        rate): its outcome (a reply, or an error not worth retrying), or why to retry."""
        headers: Any = None
        result: _Outcome | _Retry | None = None
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature,
                **extra,
            )
            headers = raw.headers
            result = _reply_of(raw.parse())
        except openai.APIStatusError as err:
            headers = err.response.headers
            failure = _redact(f"HTTP {err.status_code}: {_message(err)}", api_key)
            if not _retryable(err.status_code):
                result = _Outcome(None, error=failure, status=err.status_code)
            else:
                result = _Retry(failure, _retry_after(headers), err.status_code)
        except openai.APITimeoutError:
            result = _Retry(f"timed out after {self.timeout:g}s")
        except openai.APIConnectionError as err:
            result = _Retry(_redact(f"connection error: {err.__cause__ or err}", api_key))
        except openai.APIError as err:  # e.g. a 200 whose body is not a chat completion
            result = _Outcome(None, error=_redact(f"invalid response: {err}", api_key))
        finally:  # also when cancelled or on a surprise: the slot must not stay taken
            self._release(slot, result, headers)
        assert result is not None  # every branch that does not raise sets it
        return result

    def _release(self, slot: Slot, result: _Outcome | _Retry | None, headers: Any) -> None:
        """Hand the slot back to the pacer with what the attempt says about the rate: a reply
        (and the tokens it used), a 429 (and its Retry-After), or another failure."""
        outcome: Outcome = "failed"
        used: int | None = None
        retry_after: float | None = None
        if isinstance(result, _Outcome) and result.reply is not None:
            outcome = "ok"
            used = result.prompt_tokens + result.completion_tokens or None
        elif isinstance(result, _Retry) and result.status == 429:
            outcome, retry_after = "rate_limited", result.retry_after
            if retry_after is not None:  # a quota's hours would end the halving for hours
                retry_after = min(retry_after, self.max_retry_after)
        self.pacer.release(
            slot, outcome, headers=headers, used_tokens=used, retry_after=retry_after
        )

    async def _wait_to_retry(self, attempt: int, retry: _Retry) -> None:
        """Sleep before retry number `attempt + 1`, holding no slot. A Retry-After delays this
        request only; the pacer throttles the others (the pacing module's docstring)."""
        wait = self._backoff(attempt, retry.retry_after)
        log.info(
            "judge request failed (%s); retry %d/%d in %.2fs",
            retry.failure,
            attempt + 1,
            self.max_retries,
            wait,
        )
        await asyncio.sleep(wait)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt + 1`: jittered exponential, ≥ Retry-After."""
        wait = min(self.backoff_max, self.backoff_base * 2**attempt)
        wait *= self._rng.uniform(0.5, 1.0)
        return wait if retry_after is None else max(wait, retry_after)

    def _client(self, api_key: str) -> openai.AsyncOpenAI:
        kwargs: dict[str, Any] = {"api_key": api_key, "max_retries": 0, "timeout": self.timeout}
        if self.base_url is not None:
            kwargs["base_url"] = self.base_url
        return openai.AsyncOpenAI(**kwargs)

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return "no-key"  # a local server that checks none; the client insists on one
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise JudgeError(
                f"judge {self.name}: the environment variable {self.api_key_env} holding the "
                "API key is not set (or empty). Export it, or for a local server that needs no "
                "key set judge.api_key_env=null."
            )
        return key

    # ---- preflight ---------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail fast, before any generation, when judging cannot work.

        Checks that the key is in the environment, then sends one chat completion of at most
        one token with the configured model: it exercises exactly what judging uses (URL,
        authentication, model name, chat endpoint) and costs a few tokens. The models endpoint
        is not used because vLLM and llama.cpp serve only the list (`GET /v1/models`), not
        `GET /v1/models/{id}`, and llama.cpp accepts any model name in chat requests anyway.
        Transient failures are retried as in judging. Callers may skip this when
        `estimate(requests).calls == 0` (everything cached: nothing will be sent).
        """
        api_key = self._api_key()
        where = self.base_url or "the OpenAI API"

        async def check() -> _Outcome:
            async with self._client(api_key) as client:
                return await self._call(client, "得分:", api_key, preflight=True)

        outcome = _run(check())
        if outcome.reply is not None:
            return
        if outcome.status in (401, 403):
            raise JudgeError(
                f"judge {self.name}: {where} rejected the API key from ${self.api_key_env} "
                f"({outcome.error})"
            )
        if outcome.status == 404:
            raise JudgeError(
                f"judge {self.name}: {where} does not serve model {self.model!r} "
                f"({outcome.error}); set judge.model to a model it serves (and judge.base_url "
                "to the right server)"
            )
        raise JudgeError(f"judge {self.name}: preflight request to {where} failed: {outcome.error}")


def _reply_of(response: Any) -> _Outcome:
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    choices = getattr(response, "choices", None) or []
    if not choices:
        return _Outcome(None, error="the server returned no choices")
    content = choices[0].message.content
    served = getattr(response, "model", None)
    served = served if isinstance(served, str) and served else None
    return _Outcome(content or "", prompt_tokens, completion_tokens, served_model=served)


def _retryable(status: int) -> bool:
    return status in _RETRYABLE_STATUS or status >= 500


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `Retry-After` seconds or date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return err.message


def _redact(text: str, api_key: str) -> str:
    """Remove the key, and anything shaped like an OpenAI key, from a message."""
    if api_key and len(api_key) >= 4:
        text = text.replace(api_key, "***")
    return _SECRET_LIKE.sub("sk-***", text)


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from synchronous code, even inside a running loop
    (a notebook): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _token_counter(model: str) -> Callable[[str], int]:
    try:
        import tiktoken

        encoding = tiktoken.encoding_for_model(model)
        return lambda text: len(encoding.encode(text))
    except Exception:  # not installed, unknown model, or no network for the BPE file
        return estimate_tokens


def estimate_tokens(text: str) -> int:
    """Rough token count: one per CJK character, one per four other characters."""
    cjk = sum(1 for ch in text if _is_cjk(ch))
    return cjk + (len(text) - cjk + 3) // 4


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x3000 <= code <= 0x303F
        or 0xFF00 <= code <= 0xFFEF
        or 0x20000 <= code <= 0x2FFFF
    )
