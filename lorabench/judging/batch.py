"""Judging through the provider's Batch API: the same requests as synchronous judging, sent as
one batch (OpenAI: half the price, results within 24 hours), the replies put in the judge's
reply cache, from which `judge_all` then reads every judgement.

    from lorabench.judging.batch import preflight_batch, run_batch

    preflight_batch(judge)                           # before generating: is there a Batch API?
    result = run_batch(judge, requests, state_dir)   # submit (or resume), poll, cache the replies
    judgements = judge.judge_all(requests)           # 0 requests for what the batch answered

- Input: one line per uncached unique prompt (`custom_id` = its cache key), whose `body` is
  exactly what a synchronous call sends (model, messages, temperature, max_tokens), so a reply
  bought either way is the same cache entry. The lines are kept in `state_dir/batch-input.jsonl`.
- Restarts: the batch's id is written to `state_dir/batch.json` as soon as it exists, before any
  polling, so an interrupted evaluation resumes that batch instead of paying for a second one. A
  recorded batch that is still running but holds other prompts (the answers or the judge's
  settings changed) stops the run with a `JudgeError` that says so; one that has ended is read
  (its replies are cached under their own prompts) and the prompts it lacks go in a new batch.
- Results: every successful line is cached as a synchronous reply is (prompt, reply, tokens,
  served model). Lines that failed are listed (`BatchResult.failed`); `judge_all` sends those
  synchronously. A batch that ended `expired`, `cancelled` or `failed` keeps what it returned
  and raises `BatchIncomplete` naming it, its status and what is missing.
- Accounting: the lines answered count as judge calls and their tokens as tokens bought
  (`judge.stats`); `mark_bought` turns the judgements read back from the cache into paid ones.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import sleep, time
from typing import Any

import openai
from openai.types import Batch
from tqdm.auto import tqdm

from lorabench.judging.base import JudgeError, Judgement, JudgeRequest
from lorabench.judging.openai_judge import OpenAIJudge

log = logging.getLogger(__name__)

STATE_FILE = "batch.json"
"""In the caller's directory: the batch submitted for it (id, prompts' keys, whether read)."""
INPUT_FILE = "batch-input.jsonl"
"""In the caller's directory: the lines of the batch last submitted, as uploaded."""
ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""Statuses a batch does not leave."""
NOTHING_TO_SEND = "nothing_to_send"
"""`BatchResult.status` when every prompt was in the cache: no batch was involved."""


@dataclass(frozen=True)
class BatchResult:
    """What one batch gave."""

    batch_id: str | None
    """None: everything was cached, nothing was sent."""
    status: str
    """The batch's final status (`completed`, `expired`, …) or `NOTHING_TO_SEND`."""
    requests: int
    """Lines the batch held."""
    failed: dict[str, str]
    """Cache key (the line's `custom_id`) → why it has no reply: an error, or not answered."""
    bought: frozenset[str]
    """Keys whose replies this call read from the batch and cached."""

    @property
    def complete(self) -> bool:
        """True when the batch ran to its end (some lines may still have failed)."""
        return self.status in ("completed", NOTHING_TO_SEND)


class BatchIncomplete(JudgeError):
    """A batch ended `expired`, `cancelled` or `failed`; `result` lists what is missing."""

    def __init__(self, message: str, result: BatchResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class _State:
    """`STATE_FILE`: the batch submitted for a directory and whether its results were read."""

    batch_id: str
    input_file_id: str
    base_url: str | None
    model: str
    keys: list[str]
    submitted: float
    status: str = "validating"
    harvested: bool = False


@dataclass(frozen=True)
class _Bought:
    reply: str
    prompt_tokens: int
    completion_tokens: int
    served_model: str | None


def batch_line(judge: OpenAIJudge, key: str, prompt: str) -> dict[str, Any]:
    """One line of a batch input: the chat request a synchronous call would send for `prompt`,
    under its cache key."""
    body: dict[str, Any] = {
        "model": judge.model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": judge.temperature,
    }
    if judge.max_tokens is not None:  # as a synchronous call: unset leaves it to the server
        body["max_tokens"] = judge.max_tokens
    return {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}


def preflight_batch(judge: OpenAIJudge) -> None:
    """Fail before any generation when the server has no Batch API (a `JudgeError` naming the
    server and `judge.batch=false`); lists one batch, which costs nothing."""
    api_key = judge._api_key()
    with _client(judge, api_key) as client, _api_errors(judge, api_key, "listing batches"):
        client.batches.list(limit=1)


def run_batch(
    judge: OpenAIJudge,
    requests: Sequence[JudgeRequest],
    state_dir: str | Path,
    *,
    poll_seconds: float = 60.0,
    progress: bool = True,
) -> BatchResult:
    """Judge the uncached prompts of `requests` through one batch and cache its replies.

    The batch recorded in `state_dir` is resumed when it covers every uncached prompt; else one
    is submitted (and recorded there before polling). Polls every `poll_seconds` (a progress bar
    with `progress`) until the batch ends. Raises `BatchIncomplete` when it ended without
    running to completion, `JudgeError` when the server has no Batch API or refuses the work.
    """
    _, prompts, cached = judge._plan(requests)
    todo = {k: p for k, p in prompts.items() if k not in cached}
    if not todo:
        return BatchResult(None, NOTHING_TO_SEND, 0, {}, frozenset())
    api_key = judge._api_key()
    with _client(judge, api_key) as client:
        runner = _Runner(judge, client, api_key, Path(state_dir), poll_seconds, progress)
        earlier = runner.resumable(todo)
        before: frozenset[str] = frozenset()
        if earlier is not None:
            result = runner.finish(earlier, prompts)
            if set(todo) <= set(earlier.keys):
                return runner.concluded(result)
            # A batch for other requests, ended: what it returned is cached; the rest goes anew.
            before = result.bought
            todo = {k: p for k, p in todo.items() if k not in before}
            if not todo:
                return BatchResult(None, NOTHING_TO_SEND, 0, {}, before)
        state = runner.submit(todo)
        result = runner.finish(state, todo)
        return runner.concluded(replace(result, bought=result.bought | before))


def mark_bought(
    judge: OpenAIJudge,
    requests: Sequence[JudgeRequest],
    judgements: Sequence[Judgement],
    bought: frozenset[str],
) -> list[Judgement]:
    """`judge_all`'s judgements with those whose reply a batch bought in this evaluation marked
    paid (`cached=False`, the first of each prompt, as synchronous judging marks them) and the
    judge's cache-hit count corrected: the batch's replies reached `judge_all` via the cache."""
    if not bought:
        return list(judgements)
    marked: list[Judgement] = []
    seen: set[str] = set()
    for request, judgement in zip(requests, judgements, strict=True):
        key = judge.key_for(judge.prompt_for(request), request.repeat)
        if key in bought and key not in seen and judgement.cached:
            seen.add(key)
            judge.stats.count_cached(judgement, -1)
            judgement = replace(judgement, cached=False)
        marked.append(judgement)
    return marked


class _Runner:
    """One `run_batch`: the judge, its client and the state directory."""

    def __init__(
        self,
        judge: OpenAIJudge,
        client: openai.OpenAI,
        api_key: str,
        state_dir: Path,
        poll_seconds: float,
        progress: bool,
    ) -> None:
        self.judge = judge
        self.client = client
        self.api_key = api_key
        self.dir = state_dir
        self.poll_seconds = poll_seconds
        self.progress = progress
        self.last_errors = ""
        """The last batch's own errors, for the message when it failed."""

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    def resumable(self, todo: dict[str, str]) -> _State | None:
        """The recorded batch whose results are still to be read, if it can be used."""
        state = _read_state(self.state_path)
        if state is None or state.harvested:
            return None
        judge = self.judge
        if (state.base_url, state.model) != (judge.base_url, judge.model):
            log.warning(
                "%s: batch %s was sent to %s for %s, not to %s for %s: not resumed",
                self.state_path,
                state.batch_id,
                state.base_url or "the OpenAI API",
                state.model,
                judge.base_url or "the OpenAI API",
                judge.model,
            )
            return None
        if set(todo) <= set(state.keys):
            log.info("resuming judge batch %s (recorded in %s)", state.batch_id, self.state_path)
            return state
        batch = self.retrieve(state.batch_id)
        new = len(set(todo) - set(state.keys))
        changed = (
            f"judge {judge.name}: batch {state.batch_id} ({batch.status}), recorded in "
            f"{self.state_path}, was submitted for other requests: {new} of the {len(todo)} "
            "prompts to judge now are not in it (the answers or the judge's settings changed)"
        )
        if batch.status not in TERMINAL:
            raise JudgeError(
                f"{changed}. Wait for it to end and run again (its replies are cached then and "
                "the rest goes in a new batch), or cancel it at the provider and delete "
                f"{self.state_path} to submit the current requests now."
            )
        log.warning("%s: caching what it returned, then submitting the rest", changed)
        return state

    def submit(self, todo: dict[str, str]) -> _State:
        """Upload the lines of `todo`, create the batch and record it before anything else."""
        lines = [batch_line(self.judge, key, prompt) for key, prompt in todo.items()]
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / INPUT_FILE).write_bytes(data)
        with _api_errors(self.judge, self.api_key, "uploading the batch input (POST /files)"):
            upload = self.client.files.create(
                file=(INPUT_FILE, data, "application/jsonl"), purpose="batch"
            )
        with _api_errors(self.judge, self.api_key, "creating the batch (POST /batches)"):
            batch = self.client.batches.create(
                input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h"
            )
        state = _State(
            batch.id, upload.id, self.judge.base_url, self.judge.model, list(todo), time()
        )
        _write_state(self.state_path, state)  # at once: a restart must find it, not resubmit
        log.info(
            "judge batch %s submitted (%d requests), recorded in %s: an interrupted evaluation "
            "resumes it",
            batch.id,
            len(lines),
            self.state_path,
        )
        return state

    def finish(self, state: _State, prompts: dict[str, str]) -> BatchResult:
        """Wait for the batch to end, cache its replies and record that they were read."""
        batch = self.poll(state.batch_id)
        sent = {**prompts, **_sent_prompts(self.dir / INPUT_FILE)}
        lines = self.read_lines(batch.output_file_id) + self.read_lines(batch.error_file_id)
        failed, bought = self.harvest(lines, state.keys, sent)
        for key in state.keys:
            if key not in bought and key not in failed:
                failed[key] = f"no reply: the batch ended {batch.status}"
        _write_state(self.state_path, replace(state, status=batch.status, harvested=True))
        self.last_errors = _batch_errors(batch)
        return BatchResult(batch.id, batch.status, len(state.keys), failed, frozenset(bought))

    def poll(self, batch_id: str) -> Batch:
        """Retrieve the batch every `poll_seconds` until it ends, showing its request counts."""
        bar = tqdm(desc=f"judge batch {batch_id}", unit="req", disable=not self.progress)
        try:
            while True:
                batch = self.retrieve(batch_id)
                counts = batch.request_counts
                if counts is not None:
                    bar.total = counts.total
                    bar.n = counts.completed + counts.failed
                    bar.set_postfix_str(f"{batch.status}, {counts.failed} failed", refresh=False)
                    bar.refresh()
                if batch.status in TERMINAL:
                    return batch
                sleep(self.poll_seconds)
        finally:
            bar.close()

    def retrieve(self, batch_id: str) -> Batch:
        """The batch as the server has it now."""
        unknown = (
            f"batch {batch_id} (recorded in {self.state_path}) is not known to the server; "
            "delete that file to submit the requests anew"
        )
        with _api_errors(self.judge, self.api_key, f"retrieving batch {batch_id}", unknown):
            return self.client.batches.retrieve(batch_id)

    def read_lines(self, file_id: str | None) -> list[dict[str, Any]]:
        """The JSON lines of a batch's output or error file (none without one)."""
        if not file_id:
            return []
        with _api_errors(self.judge, self.api_key, f"reading batch results (file {file_id})"):
            text = self.client.files.content(file_id).text
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                log.warning("batch results file %s: a line is not JSON: %.200s", file_id, line)
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def harvest(
        self, lines: list[dict[str, Any]], keys: list[str], prompts: dict[str, str]
    ) -> tuple[dict[str, str], set[str]]:
        """Cache every successful line of this batch; (failed key → reason, keys cached)."""
        wanted = set(keys)
        failed: dict[str, str] = {}
        bought: set[str] = set()
        stats = self.judge.stats
        for line in lines:
            key = line.get("custom_id")
            if key not in wanted or key in bought:
                continue
            reply, reason = _read_line(line)
            stats.calls += (line.get("response") or {}).get("status_code") is not None
            if reply is None or key not in prompts:
                failed[key] = _redact(reason or "the prompt sent is not known", self.api_key)
                continue
            self.judge.cache.put(key, model=self.judge.model, prompt=prompts[key], **asdict(reply))
            stats.prompt_tokens += reply.prompt_tokens
            stats.completion_tokens += reply.completion_tokens
            stats.batch_prompt_tokens += reply.prompt_tokens
            stats.batch_completion_tokens += reply.completion_tokens
            bought.add(key)
            failed.pop(key, None)
        return failed, bought

    def concluded(self, result: BatchResult) -> BatchResult:
        """`result`, or `BatchIncomplete` when its batch did not run to completion."""
        failed = len(result.failed)
        if result.complete:
            if failed:
                first = next(iter(result.failed.values()))
                log.warning(
                    "judge batch %s: %d of %d requests failed (e.g. %s); judging sends them "
                    "synchronously",
                    result.batch_id,
                    failed,
                    result.requests,
                    first,
                )
            return result
        raise BatchIncomplete(
            f"judge {self.judge.name}: batch {result.batch_id} ended {result.status}"
            f"{self.last_errors}: {failed} of its {result.requests} requests have no reply "
            f"(the {result.requests - failed} replies it returned are cached). Judge the rest "
            "synchronously with judge.batch=false (the cache reuses what the batch returned), "
            "or run again with judge.batch=true to send them in a new batch.",
            result,
        )


def _read_line(line: dict[str, Any]) -> tuple[_Bought | None, str]:
    """A result line's reply, or None and why there is none."""
    response = line.get("response") or {}
    status = response.get("status_code")
    body = response.get("body")
    if status == 200 and isinstance(body, dict):
        choices = body.get("choices") or []
        if not choices:
            return None, "the server returned no choices"
        usage = body.get("usage") or {}
        served = body.get("model")
        return _Bought(
            (choices[0].get("message") or {}).get("content") or "",
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            served if isinstance(served, str) and served else None,
        ), ""
    if status is not None:
        return None, f"HTTP {status}: {_error_message(body)}"
    error = line.get("error") or {}
    return None, f"{error.get('code') or 'error'}: {error.get('message') or 'no reason given'}"


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(body)[:300]


def _batch_errors(batch: Batch) -> str:
    """A failed batch's own errors (e.g. its input refused), for the message; '' without."""
    data = batch.errors.data if batch.errors is not None else None
    if not data:
        return ""
    shown = "; ".join(f"{e.code or 'error'}: {e.message or ''}".strip() for e in data[:3])
    more = f" (+{len(data) - 3} more)" if len(data) > 3 else ""
    return f" ({shown}{more})"


def _sent_prompts(path: Path) -> dict[str, str]:
    """The prompts of the batch last submitted, by key, from its kept input (a batch recorded
    by an earlier run may hold prompts the current requests no longer have)."""
    if not path.is_file():
        return {}
    prompts = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                prompts[row["custom_id"]] = row["body"]["messages"][0]["content"]
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                continue  # not a line this module wrote: its prompt is simply not known
    return prompts


def _read_state(path: Path) -> _State | None:
    if not path.is_file():
        return None
    try:
        return _State(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as err:
        # Not guessed around: ignoring it could pay for a batch that is still running.
        raise JudgeError(
            f"{path} does not record a judge batch ({err}); if no batch of it is running at "
            "the provider, delete the file and run again"
        ) from None


def _write_state(path: Path, state: _State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
    os.replace(tmp, path)  # never a half-written record, even when killed while writing


def _client(judge: OpenAIJudge, api_key: str) -> openai.OpenAI:
    """A synchronous client on the judge's server; its own retries (with backoff) cover the
    few, cheap calls a batch makes."""
    kwargs: dict[str, Any] = {
        "api_key": api_key,
        "timeout": judge.timeout,
        "max_retries": judge.max_retries,
    }
    if judge.base_url is not None:
        kwargs["base_url"] = judge.base_url
    return openai.OpenAI(**kwargs)


@contextmanager
def _api_errors(
    judge: OpenAIJudge, api_key: str, what: str, not_found: str | None = None
) -> Iterator[None]:
    """Turn the client's errors into a `JudgeError` that says what to do (never the key)."""
    where = judge.base_url or "the OpenAI API"
    try:
        yield
    except openai.NotFoundError as err:
        reason = not_found or (
            f"{where} does not serve the Batch API (/v1/files, /v1/batches); judge with "
            "synchronous requests instead: judge.batch=false"
        )
        detail = _redact(_error_message(err.body), api_key)
        raise JudgeError(f"judge {judge.name}: {what}: HTTP 404 ({detail}): {reason}") from None
    except openai.APIStatusError as err:
        detail = _redact(_error_message(err.body), api_key)
        raise JudgeError(
            f"judge {judge.name}: {what} at {where} failed: HTTP {err.status_code}: {detail}"
        ) from None
    except openai.APIConnectionError as err:
        detail = _redact(str(err.__cause__ or err), api_key)
        raise JudgeError(f"judge {judge.name}: {what}: cannot reach {where}: {detail}") from None


def _redact(text: str, api_key: str) -> str:
    if api_key and len(api_key) >= 4:
        text = text.replace(api_key, "***")
    return text
