"""Pacing for an asyncio client of a rate-limited API: how many requests may be in flight, and
when the next one may start. No dependency on any API client: the caller says what each request
cost and how it ended, and passes on the reply's headers.

    pacer = Pacer(16, requests_per_minute=3500, tokens_per_minute=90_000)
    slot = await pacer.acquire(estimated_tokens, retry=attempt > 0)
    ...send the request...
    pacer.release(slot, "ok", headers=reply_headers, used_tokens=usage_total)

A request starts when all of these allow it:

- Concurrency (`AdaptiveLimit`): at most `limit` requests in flight, adapted by AIMD: it starts
  at the cap (the judge's `concurrency`), is halved (floor 1) by a 429 that opens a congestion
  episode, and grows by one per window of `limit` successful replies back up to the cap. Only a
  429 lowers it (5xx, timeouts and connection errors are retried but say nothing about the
  rate). A 429 halves it only when it opens a new episode: when its request was sent after the
  last decrease and, if the 429 behind that decrease carried a `Retry-After` R, at least
  `EPISODE_RETRY_AFTERS` × R (2R) after it. 429s for requests sent within an episode report the
  overload its decrease already answered, so a burst of 429s halves the limit once, not to 1.
  Why 2R: the server needs R for its budget to refill, so 429s for requests sent during the
  first R say nothing about the halved rate; the second R is margin bought against servers that
  refuse a share of requests whatever the rate (a provider's "overloaded" 429s; the benchmark's
  fault mix refuses the first attempt of 10% of prompts), against which every halving costs the
  batch throughput and buys nothing. With R alone such a server cost about 2.0 to 2.3 times
  the clean time (simulated and measured), with 2R about 1.5; a server whose budget really is
  exceeded is still answered with a halving every 2R (16 to 1 in 8R), and the headers below
  pace it better.
- Per-minute budgets (`TokenBucket`, the OpenAI cookbook's parallel processor's pacing): with
  `requests_per_minute` / `tokens_per_minute` configured, a bucket holding up to one minute's
  budget, refilled continuously and starting full; a request takes one request and its
  estimated tokens (corrected by the reply's `usage` when it comes; a request that got no reply
  gives its tokens back, but not its request: providers count refused requests).
- The server's own word (`HeaderBudget`): a reply (429s included) carrying
  `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests` (and the same for
  `-tokens`) allows at most `remaining` more until the reset; the requests this client started
  after the one that reply answers, and those already in flight when it was sent, are counted
  against it too (the server may have counted them after writing it, or not yet). The reply
  to the most recently started request wins; a reply to an older request says less about now
  and is ignored. After the reset the header budget no longer limits (the `x-ratelimit-limit-*`
  headers are not used: whether they count per minute or per day differs between providers).
  A budget spent for longer than `max_header_wait` (the judge's `max_retry_after`) is a quota,
  not a burst, and is not waited for. Durations are read by `parse_duration` (`1s`, `6m0s`,
  `20ms`, `0.5s`, plain seconds).

How a 429's `Retry-After` affects other requests, exactly: it holds only the request it answers,
whose retry waits at least that long (holding no slot meanwhile). It holds no other request: no
global hold, short or long, is used. A global hold (every request waits out every `Retry-After`)
froze the whole batch for a second per 429: against a server that rate-limits 10% of first
attempts it made 1,000 calls take 4 times as long as clean, although nearly every request would
have succeeded. The others are throttled instead by what the 429 says about the rate: the
concurrency halving (at most once per episode, above), and the header budget when the 429's own
headers say a budget is spent (`remaining` 0: no new request starts until that budget's reset,
because the server said so, not because of the `Retry-After`). Retries go before first attempts
in the queue, so an item that waited out its `Retry-After` is not sent to the back of the batch.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["ok", "rate_limited", "failed"]
"""How a request ended: a reply (`ok`, whatever its content), a 429 (`rate_limited`), or any
other failure (`failed`: 5xx, other 4xx, timeout, connection error)."""

EPISODE_RETRY_AFTERS = 2.0
"""How long one congestion episode lasts, in Retry-Afters of the 429 that opened it: a 429 for a
request sent before then halves the concurrency no further (the module docstring says why 2)."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a rate-limit header's duration: Go's format as OpenAI sends it (`1s`, `6m0s`,
    `20ms`, `0.5s`, `1h2m3s`) or plain seconds (`12`, `0.25`); None when absent or unreadable
    (and for negative values)."""
    if text is None:
        return None
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and math.isfinite(seconds) else None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass
class TokenBucket:
    """A per-minute budget: holds up to `per_minute`, refilled at `per_minute / 60` a second,
    full at first (the OpenAI cookbook's pacing). Taking more than it holds leaves it in debt,
    which the refill pays off before anything else starts."""

    per_minute: float
    level: float = math.nan
    """What it holds now (NaN: full, set at the first `refill`)."""
    updated: float = -math.inf

    def refill(self, now: float) -> None:
        """Add what accrued since the last refill, up to the capacity."""
        if math.isnan(self.level):
            self.level = self.per_minute
        else:
            accrued = max(0.0, now - self.updated) * self.per_minute / 60
            self.level = min(self.per_minute, self.level + accrued)
        self.updated = now

    def delay(self, amount: float, now: float) -> float:
        """Seconds until `amount` (at most the capacity: a bigger request waits for a full
        bucket rather than forever) is available; 0 if it is now."""
        self.refill(now)
        missing = min(amount, self.per_minute) - self.level
        return max(0.0, missing * 60 / self.per_minute)

    def take(self, amount: float, now: float) -> None:
        """Spend `amount` (negative: give it back)."""
        self.refill(now)
        self.level = min(self.per_minute, self.level - amount)


@dataclass
class HeaderBudget:
    """What the server's rate-limit headers last allowed: `remaining` more until `until`, set
    from the reply to the most recently started request (`source`, a start number)."""

    remaining: float = math.inf
    until: float = -math.inf
    source: int = -1

    def update(self, remaining: float, reset: float, now: float, source: int, since: float) -> None:
        """A reply to start number `source` says `remaining` are left for `reset` seconds, of
        which this client may have spent `since` already, unbeknown to that reply."""
        if now < self.until and source < self.source:
            return  # an older request's reply: the budget already holds newer news
        self.remaining = remaining - since
        self.until = now + reset
        self.source = source

    def delay(self, amount: float, now: float) -> float:
        """Seconds until `amount` may be spent: 0 if it fits (or the reset has passed), else
        until the reset."""
        if now >= self.until or amount <= self.remaining:
            return 0.0
        return self.until - now

    def take(self, amount: float, now: float) -> None:
        """Spend `amount` of the budget (nothing to spend once the reset has passed)."""
        if now < self.until:
            self.remaining -= amount


class AdaptiveLimit:
    """Requests allowed in flight, by additive increase and multiplicative decrease (see the
    module docstring): starts at `cap`, halves on a 429 that opens a new congestion episode,
    grows by one per `limit` successes."""

    def __init__(self, cap: int) -> None:
        """Start at the cap (at least 1)."""
        self.cap = max(1, cap)
        self.limit = self.cap
        self.epoch = 0
        """Decreases so far: a request remembers the epoch it started in."""
        self._successes = 0
        self._calm_until = -math.inf

    def success(self) -> None:
        """A reply came: one success towards the next increase."""
        if self.limit >= self.cap:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self.limit += 1
            self._successes = 0

    def rate_limited(
        self, epoch: int, started_at: float, now: float, retry_after: float | None
    ) -> bool:
        """A 429 for a request started in `epoch` at `started_at`: halve the limit (floor 1) if
        the request was sent after the last decrease and after the episode that decrease opened
        (`EPISODE_RETRY_AFTERS` times `retry_after`) had ended. Returns whether it was halved."""
        if epoch != self.epoch or started_at < self._calm_until:
            return False
        self.limit = max(1, self.limit // 2)
        self.epoch += 1
        self._successes = 0
        self._calm_until = now + EPISODE_RETRY_AFTERS * (retry_after or 0.0)
        return True


@dataclass(frozen=True)
class Slot:
    """A started request, handed back to `Pacer.release`."""

    number: int
    """Its start number (0, 1, …): which requests started after it."""
    tokens: int
    """The tokens it was estimated at (taken from the token budgets)."""
    epoch: int
    started_at: float
    """The pacer's clock when it started."""
    tokens_mark: float
    """Tokens of all requests started up to and including this one."""
    overlap: int = 0
    """Requests already in flight when it started (the server may count them after it)."""
    overlap_tokens: float = 0.0
    """Their estimated tokens."""


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    tokens: int = field(compare=False)
    wake: asyncio.Future[None] | None = field(default=None, compare=False)


class Pacer:
    """Decides when each request of an asyncio client may start (see the module docstring).

    Args:
        max_concurrency: the most requests in flight (the adaptive limit's cap).
        requests_per_minute: a request budget per minute; None: unlimited (the server's
            headers may still limit).
        tokens_per_minute: a token budget per minute; None: unlimited.
        max_header_wait: the longest wait the server's headers may impose; a budget spent
            for longer (a daily quota, not a burst) is not waited for: requests go out and the
            server's answers say what becomes of them.
        clock: seconds on a monotonic clock (injectable for tests); the event loop's sleeps
            must run on the same clock.
    """

    def __init__(
        self,
        max_concurrency: int,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_header_wait: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Set up the limit, the buckets and the (empty) queue."""
        self.concurrency = AdaptiveLimit(max_concurrency)
        self.requests = None if requests_per_minute is None else TokenBucket(requests_per_minute)
        self.tokens = None if tokens_per_minute is None else TokenBucket(tokens_per_minute)
        self.header_requests = HeaderBudget()
        self.header_tokens = HeaderBudget()
        self.max_header_wait = max_header_wait
        self.clock = clock
        self.in_flight = 0
        self.started = 0
        self._tokens_started = 0.0
        self._tokens_in_flight = 0.0
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return self.concurrency.limit

    @property
    def counts_tokens(self) -> bool:
        """Whether a token budget (configured, or from the server's headers) is in force, i.e.
        whether estimating a request's tokens before it starts matters."""
        return self.tokens is not None or self.header_tokens.source >= 0

    def ready_in(self, tokens: int = 0) -> float:
        """Seconds until a request of `tokens` estimated tokens may start, the queue aside:
        0 now, `math.inf` while the requests in flight fill the limit (a release decides)."""
        if self.in_flight >= self.concurrency.limit:
            return math.inf
        now = self.clock()
        waits = [
            self.header_requests.delay(1, now),
            self.header_tokens.delay(tokens, now) if tokens else 0.0,
        ]
        waits = [w if w <= self.max_header_wait else 0.0 for w in waits]
        if self.requests is not None:
            waits.append(self.requests.delay(1, now))
        if self.tokens is not None and tokens:
            waits.append(self.tokens.delay(tokens, now))
        return max(waits)

    def start(self, tokens: int = 0) -> Slot:
        """Count a request as started now (call when `ready_in(tokens)` is 0): it takes a slot,
        one request and `tokens` from every budget."""
        now = self.clock()
        self.in_flight += 1
        self._tokens_started += tokens
        self.header_requests.take(1, now)
        self.header_tokens.take(tokens, now)
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        slot = Slot(
            self.started,
            tokens,
            self.concurrency.epoch,
            now,
            self._tokens_started,
            self.in_flight - 1,
            self._tokens_in_flight,
        )
        self._tokens_in_flight += tokens
        self.started += 1
        return slot

    async def acquire(self, tokens: int = 0, *, retry: bool = False) -> Slot:
        """Wait for the turn of a request of `tokens` estimated tokens, then `start` it.

        Waiting requests start in order, retries (`retry=True`) before first attempts; only
        the head of the queue is woken when something changes, so a batch of thousands costs
        no more per request than a batch of ten.
        """
        waiter = _Waiter(0 if retry else 1, next(self._seq), tokens)
        heapq.heappush(self._waiting, waiter)
        try:
            while True:
                wait = self.ready_in(tokens) if self._waiting[0] is waiter else math.inf
                if wait <= 0:
                    heapq.heappop(self._waiting)
                    slot = self.start(tokens)
                    self._wake_head()
                    return slot
                await self._sleep(waiter, wait)
        except BaseException:
            if waiter in self._waiting:  # cancelled while waiting: leave the queue
                self._waiting.remove(waiter)
                heapq.heapify(self._waiting)
                self._wake_head()
            raise

    def release(
        self,
        slot: Slot,
        outcome: Outcome,
        *,
        headers: Mapping[str, str] | None = None,
        used_tokens: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The request of `slot` ended with `outcome`: free its slot, adapt the limit, read the
        reply's rate-limit `headers`, and correct the token budget by the tokens it really
        used (`used_tokens`, from the reply's usage; a request with no reply gives its estimate
        back)."""
        now = self.clock()
        self.in_flight -= 1
        self._tokens_in_flight -= slot.tokens
        if outcome == "ok":
            self.concurrency.success()
        elif outcome == "rate_limited":
            self.concurrency.rate_limited(slot.epoch, slot.started_at, now, retry_after)
        if self.tokens is not None:
            if used_tokens is None:  # no usage: a reply keeps its estimate, a failure returns it
                used_tokens = slot.tokens if outcome == "ok" else 0
            self.tokens.take(used_tokens - slot.tokens, now)
        if headers is not None:
            self._read_headers(slot, headers, now)
        self._wake_head()

    def _read_headers(self, slot: Slot, headers: Mapping[str, str], now: float) -> None:
        # What the reply may not have counted: the requests started after it, and those in
        # flight when it started (the server may have admitted them after it).
        started_since = self.started - slot.number - 1 + slot.overlap
        tokens_since = self._tokens_started - slot.tokens_mark + slot.overlap_tokens
        for kind, budget, since in (
            ("requests", self.header_requests, started_since),
            ("tokens", self.header_tokens, tokens_since),
        ):
            remaining = _header_number(headers, f"x-ratelimit-remaining-{kind}")
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is not None and reset is not None:
                budget.update(remaining, reset, now, slot.number, since)

    async def _sleep(self, waiter: _Waiter, seconds: float) -> None:
        """Until `_wake_head` picks this waiter, or `seconds` pass (a budget refills)."""
        loop = asyncio.get_running_loop()
        waiter.wake = loop.create_future()
        timer = None
        if math.isfinite(seconds):
            timer = loop.call_later(seconds, _resolve, waiter.wake)
        try:
            await waiter.wake
        finally:
            waiter.wake = None
            if timer is not None:
                timer.cancel()

    def _wake_head(self) -> None:
        if self._waiting:
            _resolve(self._waiting[0].wake)


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
