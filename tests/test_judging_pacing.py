"""Pacing of the OpenAI judge (`lorabench.judging.pacing`): the adaptive concurrency, the
per-minute and header budgets and the durations, on an injected clock; then through the fake
server: the fault mix with every item accounted for, the concurrency the server sees after
429s, a Retry-After that holds only its own request, and a server's rate-limit headers obeyed."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lorabench.evaluation.eval_set import EvalItem, category_of
from lorabench.judging import JudgeRequest, OpenAIJudge
from lorabench.judging.pacing import EPISODE_RETRY_AFTERS, Pacer, parse_duration
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import (
    FakeOpenAIServer,
    FaultMix,
    RateLimit,
    fast_judge_settings,
    fault_of,
    go_duration,
    rate_limited,
    reply,
)


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _judge(server: FakeOpenAIServer, tmp_path: Path, **kwargs: Any) -> OpenAIJudge:
    settings = {**fast_judge_settings(server, tmp_path / "judge.sqlite"), "api_key_env": KEY_ENV}
    return OpenAIJudge(**{**settings, **kwargs})


def _requests(n: int, tag: str = "") -> list[JudgeRequest]:
    item = EvalItem(f"问题{tag}", "gold", "closed qa", category_of("closed qa"))
    return [JudgeRequest(item, f"ANSWER {tag}{i}") for i in range(n)]


def _prompt(request: dict[str, Any] | Any) -> str:
    body = request if isinstance(request, dict) else request.body
    return body["messages"][0]["content"]


# ---- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("0.5s", 0.5),
        ("1h2m3s", 3723.0),
        ("1.5m", 90.0),
        ("12", 12.0),
        ("0.25", 0.25),
        (" 3s ", 3.0),
    ],
)
def test_header_durations_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "5x", "1s2", "-1", "s", "nan", "1 s"])
def test_unreadable_durations_are_none(text: str | None) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize("seconds", [0.02, 0.5, 1.0, 1.5, 59.25, 360.0, 3725.5])
def test_the_fake_servers_durations_read_back(seconds: float) -> None:
    assert parse_duration(go_duration(seconds)) == pytest.approx(seconds, abs=1e-3)
    assert go_duration(360) == "6m0s" and go_duration(0.02) == "20ms"


# ---- adaptive concurrency --------------------------------------------------------------------


def test_a_429_halves_the_limit_once_per_episode_and_successes_grow_it_back(clock) -> None:
    pacer = Pacer(8, clock=clock)
    slots = [pacer.start() for _ in range(8)]
    assert pacer.ready_in() == math.inf  # the limit is full
    pacer.release(slots[0], "rate_limited", retry_after=1.0)
    assert pacer.limit == 4
    for slot in slots[1:4]:  # sent before the decrease: the same overload
        pacer.release(slot, "rate_limited", retry_after=1.0)
    assert pacer.limit == 4
    for slot in slots[4:]:  # a window of 4 successes: one more
        pacer.release(slot, "ok")
    assert pacer.limit == 5
    # sent after the decrease but within its episode (2 Retry-Afters): no second halving
    clock.now += 0.5
    pacer.release(pacer.start(), "rate_limited", retry_after=1.0)
    assert pacer.limit == 5
    # grows by one per window of `limit` successes
    for expected in (6, 7, 8):
        for _ in range(pacer.limit):
            pacer.release(pacer.start(), "ok")
        assert pacer.limit == expected
    for _ in range(20):
        pacer.release(pacer.start(), "ok")
    assert pacer.limit == 8  # capped
    # after the episode, a new 429 halves again, down to a floor of 1
    clock.now += EPISODE_RETRY_AFTERS * 1.0
    for expected in (4, 2, 1, 1):
        pacer.release(pacer.start(), "rate_limited", retry_after=None)
        assert pacer.limit == expected


def test_failures_other_than_429_leave_the_limit_alone(clock) -> None:
    pacer = Pacer(4, clock=clock)
    for _ in range(10):
        pacer.release(pacer.start(), "failed")
    assert pacer.limit == 4 and pacer.in_flight == 0


# ---- budgets ---------------------------------------------------------------------------------


def _headers(remaining: int, reset: str, kind: str = "requests") -> dict[str, str]:
    return {f"x-ratelimit-remaining-{kind}": str(remaining), f"x-ratelimit-reset-{kind}": reset}


def test_a_header_budget_stops_more_than_remaining_requests_before_the_reset(clock) -> None:
    pacer = Pacer(16, clock=clock)
    first = pacer.start()
    pacer.release(first, "ok", headers=_headers(3, "1.5s"))
    for _ in range(3):
        assert pacer.ready_in() == 0
        pacer.release(pacer.start(), "ok")  # replies without headers change nothing
    assert pacer.ready_in() == pytest.approx(1.5)
    clock.now += 1.0
    assert pacer.ready_in() == pytest.approx(0.5)
    clock.now += 0.5
    assert pacer.ready_in() == 0  # the reset passed: the header budget no longer limits


def test_requests_started_after_the_reported_one_count_and_older_news_is_ignored(clock) -> None:
    pacer = Pacer(16, clock=clock)
    old, newer, *later = [pacer.start() for _ in range(5)]
    # The server answered `newer` with 5 left, maybe before it saw the three requests sent after
    # `newer` or `old`, in flight when `newer` was sent: one is surely left.
    pacer.release(newer, "ok", headers=_headers(5, "10s"))
    assert pacer.ready_in() == 0
    pacer.start()
    assert pacer.ready_in() == pytest.approx(10)
    # a late reply to an older request says more remain: it is older news
    pacer.release(old, "ok", headers=_headers(50, "10s"))
    assert pacer.ready_in() == pytest.approx(10)


def test_a_429_whose_headers_say_the_budget_is_spent_holds_new_requests(clock) -> None:
    pacer = Pacer(16, clock=clock)
    slot = pacer.start()
    pacer.release(slot, "rate_limited", retry_after=1.0, headers=_headers(0, "250ms"))
    assert pacer.ready_in() == pytest.approx(0.25)  # the budget's reset, not the Retry-After


def test_a_quota_spent_for_longer_than_the_longest_wait_is_not_waited_for(clock) -> None:
    pacer = Pacer(16, max_header_wait=120, clock=clock)
    pacer.release(pacer.start(), "ok", headers=_headers(0, "23h59m0s"))
    assert pacer.ready_in() == 0  # the server's 429s will end the items, not hours of waiting
    pacer.release(pacer.start(), "ok", headers=_headers(0, "1m30s"))
    assert pacer.ready_in() == pytest.approx(90)


def test_token_headers_limit_by_the_estimate(clock) -> None:
    pacer = Pacer(16, clock=clock)
    assert not pacer.counts_tokens
    pacer.release(pacer.start(10), "ok", headers=_headers(1000, "6m0s", "tokens"))
    assert pacer.counts_tokens
    assert pacer.ready_in(900) == 0 and pacer.ready_in(1001) == pytest.approx(360)


def test_a_request_budget_refills_continuously(clock) -> None:
    pacer = Pacer(100, requests_per_minute=60, clock=clock)
    for _ in range(60):  # it starts full: a minute's budget
        assert pacer.ready_in() == 0
        pacer.start()
    assert pacer.ready_in() == pytest.approx(1.0)  # then one a second
    clock.now += 0.25
    assert pacer.ready_in() == pytest.approx(0.75)


def test_a_token_budget_is_corrected_by_the_usage(clock) -> None:
    pacer = Pacer(100, tokens_per_minute=600, clock=clock)
    slots = []
    for _ in range(6):  # 600 tokens, 100 a request
        assert pacer.ready_in(100) == 0
        slots.append(pacer.start(100))
    assert pacer.ready_in(100) == pytest.approx(10)  # 10 tokens a second
    clock.now += 4
    assert pacer.ready_in(100) == pytest.approx(6)
    pacer.release(slots[0], "ok", used_tokens=40)  # 60 fewer than estimated: given back
    assert pacer.ready_in(100) == 0
    pacer.release(slots[1], "ok", used_tokens=250)  # 150 more: owed
    assert pacer.ready_in(100) == pytest.approx(15)
    assert pacer.ready_in(10_000) == pytest.approx(65)  # more than it holds: a full bucket


def test_no_reply_gives_the_token_estimate_back(clock) -> None:
    pacer = Pacer(4, tokens_per_minute=100, clock=clock)
    slot = pacer.start(100)
    assert pacer.ready_in(100) == pytest.approx(60)
    pacer.release(slot, "failed")
    assert pacer.ready_in(100) == 0


# ---- the queue ---------------------------------------------------------------------------------


def test_waiters_start_in_order_retries_first_and_a_cancelled_one_leaves() -> None:
    async def scenario() -> list[str]:
        pacer = Pacer(1)
        order: list[str] = []
        first = await pacer.acquire()

        async def wait(name: str, retry: bool) -> None:
            slot = await pacer.acquire(retry=retry)
            order.append(name)
            pacer.release(slot, "ok")

        tasks = {n: asyncio.create_task(wait(n, n.startswith("retry"))) for n in
                 ("a", "b", "gone", "retry", "c")}  # fmt: skip
        await asyncio.sleep(0)
        tasks["gone"].cancel()
        await asyncio.sleep(0)
        pacer.release(first, "ok")
        await asyncio.gather(*(t for n, t in tasks.items() if n != "gone"))
        assert pacer.in_flight == 0 and not pacer._waiting
        return order

    assert asyncio.run(scenario()) == ["retry", "a", "b", "c"]


# ---- through the fake server -----------------------------------------------------------------


@pytest.fixture
def fault_server(api_key: str) -> Iterator[FakeOpenAIServer]:
    """The fault mix with short Retry-Afters (0.2 s), answers taking 20 ms."""
    with FakeOpenAIServer(api_key=api_key, responder=FaultMix(0.2), latency=0.02) as srv:
        yield srv


def test_the_fault_mix_ends_with_every_item_accounted_for(fault_server, tmp_path) -> None:
    judge = _judge(fault_server, tmp_path)
    requests = _requests(80)
    kinds = [fault_of(judge.prompt_for(r)) for r in requests]
    assert {"rate_limited", "server_error", "unscorable", "ok"} <= set(kinds)  # all exercised
    judgements = judge.judge_all(requests, progress=False)
    for judgement, kind in zip(judgements, kinds, strict=True):
        if kind == "unscorable":
            assert judgement.status == "parse_failure" and judgement.score is None
        else:  # retried 429s and 500s end scored
            assert judgement.status == "ok" and judgement.score == 0.8, judgement.reason
    attempts = Counter(_prompt(r) for r in fault_server.chat_requests)
    for request, kind in zip(requests, kinds, strict=True):
        assert attempts[judge.prompt_for(request)] == (
            2 if kind in ("rate_limited", "server_error") else 1
        )
    assert judge.stats.rate_limited == kinds.count("rate_limited")
    assert judge.stats.retries == kinds.count("rate_limited") + kinds.count("server_error")
    assert judge.stats.calls == fault_server.chat_calls
    assert judge.stats.parse_failures == kinds.count("unscorable")


def test_the_server_sees_fewer_requests_in_flight_after_429s_never_more_than_the_cap(
    api_key, tmp_path
) -> None:
    with FakeOpenAIServer(api_key=api_key, default=reply("得分：1"), latency=0.1) as srv:
        srv.push(*[rate_limited(0.3)] * 8)  # the first round, all 8 at once, is refused
        judge = _judge(srv, tmp_path, concurrency=8)
        judgements = judge.judge_all(_requests(60), progress=False)
        arrivals = srv.chat_requests
    assert [j.status for j in judgements] == ["ok"] * 60
    assert judge.stats.rate_limited == 8
    assert max(r.in_flight for r in arrivals) == srv.max_in_flight <= 8
    # The next round goes out after the 429s at half the concurrency: one halving for the
    # burst, not one per 429 (that would be 1).
    assert max(r.in_flight for r in arrivals[8:12]) <= 4
    assert judge.pacer.limit > 4  # and successes grew it back
    assert max(r.in_flight for r in arrivals[-12:]) > 4


def test_a_retry_after_holds_only_the_request_it_answers(api_key, tmp_path) -> None:
    with FakeOpenAIServer(api_key=api_key, default=reply("得分：1"), latency=0.05) as srv:
        srv.push(rate_limited(0.5))
        judge = _judge(srv, tmp_path, concurrency=4)
        judgements = judge.judge_all(_requests(20), progress=False)
        sent = [(_prompt(r), r.time) for r in srv.chat_requests]
    assert [j.status for j in judgements] == ["ok"] * 20
    [(limited, n)] = Counter(prompt for prompt, _ in sent).most_common(1)
    first, retry = [t for prompt, t in sent if prompt == limited]
    assert n == 2 and retry - first >= 0.5  # its own wait: the Retry-After
    # Others kept going while it waited: requests sent after its 429 came back (50 ms), well
    # before its Retry-After ran out.
    during = [t for prompt, t in sent if prompt != limited and 0.06 < t - first < 0.45]
    assert len(during) >= 3


def test_the_servers_rate_limit_headers_are_obeyed(api_key, tmp_path) -> None:
    # The server allows 5 requests per 0.5 s window and says so in every reply; the judge,
    # 4 in flight, waits for each window's reset rather than being refused.
    limit = RateLimit(requests=5, window=0.5)
    with FakeOpenAIServer(
        api_key=api_key, default=reply("得分：1"), latency=0.02, rate_limit=limit
    ) as srv:
        judge = _judge(srv, tmp_path, concurrency=4)
        judgements = judge.judge_all(_requests(12), progress=False)
        arrivals = [r.time for r in srv.chat_requests]
    assert [j.status for j in judgements] == ["ok"] * 12
    assert judge.stats.rate_limited == 0 and len(arrivals) == 12
    assert judge.pacer.header_requests.source >= 0  # the headers were read
    assert arrivals[-1] - arrivals[0] >= 0.5 * 2  # three windows were needed


def test_configured_budgets_count_the_usage_the_server_reports(api_key, tmp_path) -> None:
    with FakeOpenAIServer(api_key=api_key, default=reply("得分：1")) as srv:
        judge = _judge(srv, tmp_path, tokens_per_minute=1e6, requests_per_minute=1e4)
        judge.pacer.clock = lambda: 5000.0  # frozen: nothing refills, the levels show the spend
        judgements = judge.judge_all(_requests(6), progress=False)
    used = sum(j.prompt_tokens + j.completion_tokens for j in judgements)
    assert used > 0 and judge.pacer.tokens is not None and judge.pacer.requests is not None
    assert judge.pacer.tokens.level == pytest.approx(1e6 - used)
    assert judge.pacer.requests.level == pytest.approx(1e4 - 6)
