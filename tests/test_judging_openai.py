"""The OpenAI judge against a real OpenAI-compatible HTTP server on 127.0.0.1: replies, retries
(429 with Retry-After, 5xx, timeouts), explicit failures, the cache, preflight, and the API key
kept out of everything but the Authorization header."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lorabench.evaluation.eval_set import EvalItem, category_of
from lorabench.judging import JudgeError, JudgeRequest, OpenAIJudge
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import (
    FakeOpenAIServer,
    bad_request,
    fast_judge_settings,
    rate_limited,
    reply,
    server_error,
    slow,
)


@pytest.fixture
def server(api_key: str) -> Iterator[FakeOpenAIServer]:
    """A server that requires the test key and echoes the score hidden in each answer."""
    with FakeOpenAIServer(api_key=api_key, responder=_echo_score) as srv:
        yield srv


def _echo_score(body: dict[str, Any]) -> Any:
    # Answers look like "ANSWER score=0.3"; the reply gives that score back, so tests can check
    # that every judgement lands on its own request.
    found = re.search(r"score=([0-9.]+)", body["messages"][0]["content"])
    return reply(f"得分：{found.group(1)} 理由：测试。" if found else "得分：0.5")


def _judge(server: FakeOpenAIServer, tmp_path: Path, **kwargs: Any) -> OpenAIJudge:
    settings = {**fast_judge_settings(server, tmp_path / "judge.sqlite"), "api_key_env": KEY_ENV}
    return OpenAIJudge(**{**settings, **kwargs})


def _requests(n: int, tag: str = "") -> list[JudgeRequest]:
    classes = ["math", "code", "closed qa", "generation", "rewrite"]
    requests = []
    for i in range(n):
        raw = classes[i % len(classes)]
        gold = "" if raw == "generation" else f"gold {i}"
        item = EvalItem(f"问题{i}{tag}", gold, raw, category_of(raw))
        requests.append(JudgeRequest(item, f"ANSWER {i} score={(i % 11) / 10:g}"))
    return requests


def test_normal_replies_are_scored_in_request_order(api_key, tmp_path) -> None:
    # Answers take 50 ms, so the judge's 4 workers overlap even on a loaded machine (answered at
    # once, each request could end before the next one starts, and concurrency would not show).
    with FakeOpenAIServer(api_key=api_key, responder=_echo_score, latency=0.05) as server:
        judge = _judge(server, tmp_path)
        requests = _requests(30)
        judgements = judge.judge_all(requests, progress=False)
    assert [j.answer for j in judgements] == [r.answer for r in requests]
    assert [j.score for j in judgements] == [(i % 11) / 10 for i in range(30)]
    assert all(j.status == "ok" and not j.cached and j.judge == "openai:gpt-3.5-turbo"
               for j in judgements)  # fmt: skip
    assert all(j.prompt_tokens > 0 and j.completion_tokens > 0 for j in judgements)
    assert server.chat_calls == judge.stats.calls == 30
    assert 1 < server.max_in_flight <= 4
    assert judge.stats.tokens == sum(j.prompt_tokens + j.completion_tokens for j in judgements)
    sent = server.chat_requests[0].body
    assert sent["model"] == "gpt-3.5-turbo" and sent["temperature"] == 0
    assert len(sent["messages"]) == 1 and sent["messages"][0]["role"] == "user"
    # a server that names no dated snapshot: the requested model is what served
    assert judge.served_models == ("gpt-3.5-turbo",)
    assert {j.served_model for j in judgements} == {"gpt-3.5-turbo"}


def test_429_is_retried_after_retry_after(server, tmp_path) -> None:
    server.push(rate_limited(retry_after=0.6))
    judge = _judge(server, tmp_path)
    started = time.monotonic()
    [judgement] = judge.judge_all(_requests(1), progress=False)
    assert judgement.status == "ok" and judgement.score == 0.0
    first, second = server.chat_requests
    assert second.time - first.time >= 0.55  # the header's 0.6 s, not the 0.01 s backoff
    assert time.monotonic() - started < 5
    assert judge.stats.calls == 2 and judge.stats.retries == 1


def test_a_retry_after_holds_back_only_the_rate_limited_request(api_key, tmp_path) -> None:
    # The first request is rate-limited at once; the others take 0.2 s. The 429 halves the
    # concurrency (2 -> 1) but holds no one else: the third request goes out when the second
    # ends, at 0.2 s, inside the server's 0.5 s; the rate-limited one waits its 0.5 s.
    with FakeOpenAIServer(api_key=api_key, default=slow(0.2, "得分：1")) as srv:
        srv.push(rate_limited(retry_after=0.5))
        judge = _judge(srv, tmp_path, concurrency=2)
        judgements = judge.judge_all(_requests(4), progress=False)
        sent = [(r.body["messages"][0]["content"], r.time) for r in srv.chat_requests]
    assert [j.status for j in judgements] == ["ok"] * 4
    assert len(sent) == 5 and judge.stats.rate_limited == 1
    (limited, first), *others = sent
    retried = [t for prompt, t in others if prompt == limited]
    assert len(retried) == 1 and retried[0] - first >= 0.45
    assert any(t - first < 0.45 for prompt, t in others if prompt != limited)


def test_an_empty_batch_is_fine(server, tmp_path) -> None:
    judge = _judge(server, tmp_path)
    assert judge.judge_all([], progress=False) == [] and server.requests == []


def test_5xx_are_retried_until_success(server, tmp_path) -> None:
    server.push(server_error(500), server_error(502), server_error(503))
    judge = _judge(server, tmp_path)
    [judgement] = judge.judge_all(_requests(1), progress=False)
    assert judgement.status == "ok"
    assert server.chat_calls == 4 and judge.stats.retries == 3


def test_timeouts_are_retried(server, tmp_path) -> None:
    server.push(slow(2.0))
    judge = _judge(server, tmp_path, timeout=0.3)
    started = time.monotonic()
    [judgement] = judge.judge_all(_requests(1), progress=False)
    assert judgement.status == "ok"
    assert server.chat_calls == 2 and judge.stats.retries == 1
    assert time.monotonic() - started < 1.5


def test_exhausted_retries_give_an_error_with_no_score_and_nothing_cached(server, tmp_path) -> None:
    server.push(*[server_error(500)] * 3)
    judge = _judge(server, tmp_path, max_retries=2)
    requests = _requests(1)
    [judgement] = judge.judge_all(requests, progress=False)
    assert judgement.status == "error" and judgement.score is None
    assert "gave up after 3 attempts" in judgement.reason and "HTTP 500" in judgement.reason
    assert judge.stats.errors == 1 and judge.stats.calls == 3
    assert len(judge.cache) == 0
    # the next run asks again, and this time the server answers
    [again] = judge.judge_all(requests, progress=False)
    assert again.status == "ok" and server.chat_calls == 4


def test_other_4xx_are_not_retried(server, tmp_path) -> None:
    server.push(bad_request("This model's maximum context length is 4097 tokens"))
    judge = _judge(server, tmp_path)
    [judgement] = judge.judge_all(_requests(1), progress=False)
    assert judgement.status == "error" and judgement.score is None
    assert judgement.reason.startswith("HTTP 400") and "context length" in judgement.reason
    assert server.chat_calls == 1


def test_a_retry_after_beyond_the_limit_ends_retries(server, tmp_path) -> None:
    server.push(rate_limited(retry_after=3600))
    judge = _judge(server, tmp_path, max_retry_after=5)
    [judgement] = judge.judge_all(_requests(1), progress=False)
    assert judgement.status == "error" and "3600" in judgement.reason
    assert server.chat_calls == 1


def test_replies_without_a_score_are_parse_failures_cached_and_counted(server, tmp_path) -> None:
    requests = _requests(3)
    server.push(reply("模型回答得不错。"), reply("得分：9"), reply(None))
    judge = _judge(server, tmp_path, concurrency=1)
    judgements = judge.judge_all(requests, progress=False)
    assert [j.status for j in judgements] == ["parse_failure"] * 3
    assert all(j.score is None for j in judgements)
    assert [j.reply for j in judgements] == ["模型回答得不错。", "得分：9", ""]
    assert "no score" in judgements[0].reason and "outside [0, 1]" in judgements[1].reason
    assert judge.stats.parse_failures == 3
    assert judge.stats.as_metrics()["eval/judge_parse_failures"] == 3
    # the replies were paid for: reused, and still reported as parse failures
    again = _judge(server, tmp_path)
    reused = again.judge_all(requests, progress=False)
    assert [j.status for j in reused] == ["parse_failure"] * 3 and all(j.cached for j in reused)
    assert server.chat_calls == 3 and again.stats.parse_failures == 3
    # unless asked to check them again
    rechecking = _judge(server, tmp_path, recheck_parse_failures=True)
    assert [j.status for j in rechecking.judge_all(requests, progress=False)] == ["ok"] * 3
    assert server.chat_calls == 6


def test_a_second_evaluation_makes_zero_http_calls(server, tmp_path, monkeypatch) -> None:
    requests = _requests(25)
    first = _judge(server, tmp_path)
    before = first.judge_all(requests, progress=False)
    calls = server.chat_calls
    assert calls == 25 and len(first.cache) == 25
    first.close()

    monkeypatch.delenv(KEY_ENV)  # a fully cached run needs no key
    second = _judge(server, tmp_path)
    assert second.estimate(requests) == (0, 0)
    after = second.judge_all(requests, progress=False)
    assert server.chat_calls == calls
    assert all(j.cached for j in after)
    assert [j.score for j in after] == [j.score for j in before]
    assert [j.prompt_tokens for j in after] == [j.prompt_tokens for j in before]
    metrics = second.stats.as_metrics()
    assert metrics["eval/judge_calls"] == 0 and metrics["eval/judge_cache_hits"] == 25
    assert metrics["eval/judge_tokens"] == 0


def test_a_changed_answer_reference_or_model_is_a_new_key(server, tmp_path) -> None:
    judge = _judge(server, tmp_path)
    [base] = _requests(1)
    judge.judge_all([base], progress=False)
    item = base.item
    variants = [
        JudgeRequest(item, base.answer + " "),
        JudgeRequest(EvalItem(item.question, item.std_answer + "!", item.raw_class, item.category),
                     base.answer),
        JudgeRequest(EvalItem(item.question + "?", item.std_answer, item.raw_class, item.category),
                     base.answer),
    ]  # fmt: skip
    assert judge.estimate(variants).calls == 3
    other_model = _judge(server, tmp_path, model="gpt-4")
    assert other_model.estimate([base]).calls == 1


def test_cache_is_written_as_replies_arrive(api_key, tmp_path) -> None:
    db = tmp_path / "judge.sqlite"
    rows_seen: list[int] = []

    def count_rows(body: dict[str, Any]) -> Any:
        with sqlite3.connect(db) as conn:
            rows_seen.append(conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])
        return reply("得分：1")

    with FakeOpenAIServer(api_key=api_key, responder=count_rows) as srv:
        judge = _judge(srv, tmp_path, concurrency=1)
        judge.judge_all(_requests(4), progress=False)
    assert rows_seen == [0, 1, 2, 3]


def test_duplicate_prompts_in_a_batch_are_sent_once(server, tmp_path) -> None:
    [request] = _requests(1)
    judge = _judge(server, tmp_path)
    judgements = judge.judge_all([request, request, request], progress=False)
    assert server.chat_calls == 1
    assert [j.cached for j in judgements] == [False, True, True]
    assert judge.stats.cache_hits == 2


def test_estimate_counts_uncached_calls_without_calling(server, tmp_path) -> None:
    judge = _judge(server, tmp_path)
    requests = _requests(10)
    estimate = judge.estimate(requests + requests[:3])
    assert estimate.calls == 10 and estimate.tokens > 10 * 100
    judge.judge_all(requests[:4], progress=False)
    assert judge.estimate(requests).calls == 6
    assert server.chat_calls == 4


def test_api_key_appears_only_in_the_authorization_header(
    server, tmp_path, api_key, caplog, capsys
) -> None:
    caplog.set_level(logging.DEBUG)
    judge = _judge(server, tmp_path, concurrency=1)
    judge.preflight()
    server.push(
        bad_request(f"Incorrect API key provided: {api_key}"),  # servers do echo keys
        server_error(500),
        reply("没有分数"),
    )
    judgements = judge.judge_all(_requests(6), progress=True)
    judge.close()
    assert {j.status for j in judgements} == {"ok", "error", "parse_failure"}
    leaks = {
        "judgements": json.dumps([j.to_dict() for j in judgements], ensure_ascii=False),
        "repr": repr(judge) + repr(judge.stats) + repr(judge.params()),
        "logs": caplog.text,
        "output": "".join(capsys.readouterr()),
        **{f.name: f.read_bytes().decode("utf-8", "replace") for f in tmp_path.rglob("*")
           if f.is_file()},
    }  # fmt: skip
    for where, text in leaks.items():
        assert api_key not in text, where
    assert "provided: ***" in leaks["judgements"]  # the echoed key was scrubbed from the reason
    for request in server.requests:
        assert request.headers["authorization"] == f"Bearer {api_key}"
        others = {k: v for k, v in request.headers.items() if k != "authorization"}
        assert api_key not in json.dumps([others, request.body, request.path])


def test_preflight_needs_the_key_in_the_environment(server, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    judge = _judge(server, tmp_path)
    with pytest.raises(JudgeError, match=KEY_ENV):
        judge.preflight()
    with pytest.raises(JudgeError, match=KEY_ENV):
        judge.judge_all(_requests(2), progress=False)
    assert server.requests == []


def test_preflight_rejects_an_unknown_model(server, tmp_path) -> None:
    judge = _judge(server, tmp_path, model="gpt-5-nonexistent")
    with pytest.raises(JudgeError, match=r"does not serve model 'gpt-5-nonexistent'.*HTTP 404"):
        judge.preflight()
    assert server.chat_calls == 1


def test_preflight_rejects_a_wrong_key(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-0000")
    judge = _judge(server, tmp_path)
    with pytest.raises(JudgeError, match=f"rejected the API key from \\${KEY_ENV}") as err:
        judge.preflight()
    assert "sk-wrong-key-0000" not in str(err.value)


def test_preflight_is_one_tiny_request(server, tmp_path) -> None:
    judge = _judge(server, tmp_path)
    judge.preflight()
    [sent] = server.chat_requests
    assert sent.body["max_tokens"] == 1
    assert judge.stats.preflight_calls == 1 and judge.stats.calls == 0


def test_preflight_on_an_unreachable_server_fails_fast(tmp_path, api_key) -> None:
    with FakeOpenAIServer() as srv:
        url = srv.base_url
    judge = OpenAIJudge(base_url=url, api_key_env=KEY_ENV, cache_path=tmp_path / "c.sqlite",
                        max_retries=1, backoff_base=0.01, backoff_max=0.01)  # fmt: skip
    with pytest.raises(JudgeError, match="connection error"):
        judge.preflight()


def test_keyless_local_servers_are_supported(tmp_path) -> None:
    with FakeOpenAIServer() as srv:
        judge = OpenAIJudge(base_url=srv.base_url, api_key_env=None, cache_path=None)
        [judgement] = judge.judge_all(_requests(1), progress=False)
    assert judgement.status == "ok"


def test_judging_works_inside_a_running_event_loop(server, tmp_path) -> None:
    judge = _judge(server, tmp_path)

    async def notebook_cell() -> list:
        return judge.judge_all(_requests(3), progress=False)

    assert [j.status for j in asyncio.run(notebook_cell())] == ["ok"] * 3
