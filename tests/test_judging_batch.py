"""Judging through the Batch API against a real HTTP server on 127.0.0.1 (Files and Batches):
the replies fill the cache a synchronous run then reads, a batch is polled to its end, resumed
after a restart rather than bought twice, and what it did not answer is listed; once through
the evaluation pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lorabench import contract
from lorabench.evaluation import evaluate
from lorabench.evaluation.eval_set import EvalItem, category_of
from lorabench.judging import JudgeError, JudgeRequest, OpenAIJudge
from lorabench.judging import batch as batch_module
from lorabench.judging.batch import (
    INPUT_FILE,
    STATE_FILE,
    BatchIncomplete,
    preflight_batch,
    run_batch,
)
from tests.helpers.fake_batch_server import FakeBatchServer
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import FakeOpenAIServer, fast_judge_settings
from tests.helpers.runs import runs_of

SMALL_EVAL = ("eval.demo_per_class=2", "eval.decoding.max_new_tokens=6")


@pytest.fixture
def server(api_key: str) -> Iterator[FakeBatchServer]:
    with FakeBatchServer(api_key=api_key) as srv:
        yield srv


def _judge(server: FakeOpenAIServer, tmp_path: Path, **kwargs: Any) -> OpenAIJudge:
    settings = {**fast_judge_settings(server, tmp_path / "judge.sqlite"), "api_key_env": KEY_ENV}
    return OpenAIJudge(**{**settings, **kwargs})


def _requests(n: int, tag: str = "") -> list[JudgeRequest]:
    classes = ["math", "code", "closed qa", "generation", "rewrite"]
    requests = []
    for i in range(n):
        raw = classes[i % len(classes)]
        item = EvalItem(
            f"问题{i}", "" if raw == "generation" else f"gold {i}", raw, category_of(raw)
        )
        requests.append(JudgeRequest(item, f"ANSWER {i}{tag}"))
    return requests


def _run(judge: OpenAIJudge, requests: list[JudgeRequest], state_dir: Path):
    return run_batch(judge, requests, state_dir, poll_seconds=0.01, progress=False)


def test_a_batch_fills_the_cache_and_a_synchronous_run_then_sends_nothing(
    server: FakeBatchServer, tmp_path: Path
) -> None:
    server.served_model = "gpt-3.5-turbo-0125"
    requests = [*_requests(6), _requests(1)[0]]  # a duplicate prompt goes in once
    with _judge(server, tmp_path, max_tokens=50) as judge:
        result = _run(judge, requests, tmp_path / "judge")
        assert judge.stats.calls == 6 and judge.stats.completion_tokens > 0
    assert result.complete and result.status == "completed" and not result.failed
    assert len(result.bought) == 6 and server.batch_creations == 1 and server.chat_calls == 0
    state = json.loads((tmp_path / "judge" / STATE_FILE).read_text())
    assert state["batch_id"] == result.batch_id and state["harvested"]

    # A later synchronous judge reads every judgement from the cache.
    with _judge(server, tmp_path, max_tokens=50) as judge:
        judgements = judge.judge_all(requests, progress=False)
        assert judge.served_models == ("gpt-3.5-turbo-0125",)
    assert server.chat_calls == 0
    assert [j.score for j in judgements] == [0.8] * 7 and all(j.cached for j in judgements)

    # Each line's body is the JSON body of a synchronous call for the same prompt.
    with FakeOpenAIServer() as sync, _judge(sync, tmp_path / "sync", max_tokens=50) as judge:
        judge.api_key_env = None
        judge.judge_all(requests[:1], progress=False)
        sent = sync.chat_requests[0].body
    (line,) = [x for x in server.batch_lines if x["body"]["messages"] == sent["messages"]]
    assert line["body"] == sent and line["method"] == "POST"
    assert line["url"] == "/v1/chat/completions"
    kept = (tmp_path / "judge" / INPUT_FILE).read_text().splitlines()
    assert [json.loads(x) for x in kept] == server.batch_lines  # what was uploaded, kept


def test_a_slow_batch_is_polled_until_it_completes(api_key: str, tmp_path: Path) -> None:
    with FakeBatchServer(api_key=api_key, polls_in_progress=3) as server:
        with _judge(server, tmp_path) as judge:
            result = _run(judge, _requests(4), tmp_path / "judge")
        (batch,) = server.batches.values()
    assert result.complete and len(result.bought) == 4
    assert batch.retrieves == 4  # three looks in progress, the fourth finds it done


def test_a_restarted_evaluation_resumes_its_batch_instead_of_buying_twice(
    api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "judge"
    with FakeBatchServer(api_key=api_key, polls_in_progress=2) as server:

        def killed(seconds: float) -> None:
            raise KeyboardInterrupt  # the process dies while waiting for the batch

        with monkeypatch.context() as patch, _judge(server, tmp_path) as judge:
            patch.setattr(batch_module, "sleep", killed)
            with pytest.raises(KeyboardInterrupt):
                _run(judge, _requests(5), state_dir)
        assert server.batch_creations == 1 and (state_dir / STATE_FILE).is_file()

        # Other answers while that batch runs: said, nothing submitted.
        with _judge(server, tmp_path) as judge, pytest.raises(JudgeError) as changed:
            _run(judge, _requests(5, tag=" v2"), state_dir)
        assert "batch-fake" in str(changed.value) and "other requests" in str(changed.value)
        assert "5 of the 5 prompts" in str(changed.value)

        # A new process finds the recorded batch and waits for it.
        with _judge(server, tmp_path) as judge:
            result = _run(judge, _requests(5), state_dir)
        assert server.batch_creations == 1 and server.uploads == 1
        assert result.complete and len(result.bought) == 5
        with _judge(server, tmp_path) as judge:
            judge.judge_all(_requests(5), progress=False)
        assert server.chat_calls == 0


@pytest.mark.parametrize("in_output", [False, True], ids=["error-file", "output-file"])
def test_failed_lines_are_listed_and_the_rest_cached(
    api_key: str, tmp_path: Path, in_output: bool
) -> None:
    requests = _requests(5)
    with FakeBatchServer(
        api_key=api_key, failures={1: 400, 3: 500}, failures_in_output=in_output
    ) as server:
        with _judge(server, tmp_path) as judge:
            result = _run(judge, requests, tmp_path / "judge")
            lines = server.batch_lines
            assert result.complete and len(result.bought) == 3
            failed = {lines[1]["custom_id"], lines[3]["custom_id"]}
            assert set(result.failed) == failed
            assert all(reason.startswith("HTTP ") for reason in result.failed.values())
            # Judging then sends exactly the two failures synchronously.
            judgements = judge.judge_all(requests, progress=False)
        assert server.chat_calls == 2
    assert all(j.status == "ok" for j in judgements)


def test_an_expired_batch_keeps_its_replies_lists_the_rest_and_raises(
    api_key: str, tmp_path: Path
) -> None:
    requests = _requests(5)
    with FakeBatchServer(api_key=api_key, ends="expired", answered=3) as server:
        with _judge(server, tmp_path) as judge, pytest.raises(BatchIncomplete) as raised:
            _run(judge, requests, tmp_path / "judge")
        result = raised.value.result
        message = str(raised.value)
        assert result.batch_id in message and "expired" in message
        assert "2 of its 5 requests have no reply" in message and "judge.batch=false" in message
        assert not result.complete and len(result.bought) == 3 and len(result.failed) == 2
        lines = server.batch_lines
        assert set(result.failed) == {lines[3]["custom_id"], lines[4]["custom_id"]}

        # Run again in batch mode: only the two missing go in a second batch.
        server.ends = "completed"
        with _judge(server, tmp_path) as judge:
            again = _run(judge, requests, tmp_path / "judge")
            assert again.complete and set(again.bought) == set(result.failed)
            judge.judge_all(requests, progress=False)
        assert server.batch_creations == 2 and server.chat_calls == 0


def test_a_cancelled_batch_lists_what_it_never_answered(api_key: str, tmp_path: Path) -> None:
    with FakeBatchServer(api_key=api_key, ends="cancelled", answered=1) as server:
        with _judge(server, tmp_path) as judge, pytest.raises(BatchIncomplete) as raised:
            _run(judge, _requests(3), tmp_path / "judge")
    assert "cancelled" in str(raised.value)
    assert set(raised.value.result.failed.values()) == {"no reply: the batch ended cancelled"}


def test_a_refused_batch_says_why(api_key: str, tmp_path: Path) -> None:
    with FakeBatchServer(api_key=api_key, ends="failed") as server:
        with _judge(server, tmp_path) as judge, pytest.raises(BatchIncomplete) as raised:
            _run(judge, _requests(2), tmp_path / "judge")
    assert "ended failed (invalid_request: scripted refusal)" in str(raised.value)
    assert len(raised.value.result.failed) == 2


def test_a_server_without_a_batch_api_is_said_with_the_remedy(api_key: str, tmp_path: Path) -> None:
    with FakeBatchServer(api_key=api_key, batch_api=False) as server:
        with _judge(server, tmp_path) as judge:
            for attempt in (
                lambda: preflight_batch(judge),
                lambda: _run(judge, _requests(2), tmp_path),
            ):
                with pytest.raises(JudgeError) as raised:
                    attempt()
                message = str(raised.value)
                assert server.base_url in message and "judge.batch=false" in message
                assert api_key not in message
    assert not (tmp_path / STATE_FILE).exists()


def test_the_evaluation_judges_in_one_batch_and_fails_on_an_expired_one(
    demo_config, api_key: str, store, tmp_path: Path
) -> None:
    """The untuned demo base (nothing to train), its 20 answers and their repeats judged in one
    batch: the first batch expires (the run is not finished), the second completes the rest."""
    with FakeBatchServer(api_key=api_key, ends="expired", answered=25) as server:
        cfg = demo_config(
            *SMALL_EVAL,
            "judge=openai",
            f"judge.base_url={server.base_url}",
            f"judge.api_key_env={KEY_ENV}",
            "judge.prompts=project",
            "judge.batch=true",
            "judge.batch_poll_seconds=0.05",
            "judge.repeats=2",
        )
        with pytest.raises(BatchIncomplete, match="15 of its 40 requests"):
            evaluate(cfg)
        (run,) = runs_of(store)
        assert run.info.status == "FAILED" and "expired" in run.data.tags[contract.TAG_ERROR]

        server.ends = "completed"
        result = evaluate(cfg)
        assert server.batch_creations == 2 and len(server.batch_lines) == 40 + 15
        assert server.chat_calls == 1  # the first evaluation's preflight only
        evaluate(cfg)  # everything cached: no preflight, no batch, no call
        assert server.batch_creations == 2 and server.chat_calls == 1
    assert store.get_run(result.run_id).info.status == "FINISHED"
    assert result.aggregate.average == pytest.approx(0.8)
    # Bought in this evaluation: the second batch's 15 repeats; the rest was in the cache.
    assert result.metrics["eval/judge_calls"] == 15
    assert result.metrics["eval/judge_cache_hits"] == 25

    # The ledger of each evaluation that finished (the second, then the third, which bought
    # nothing): every token the second bought went through the Batch API, at half the price.
    def logged(measure: str) -> list[float]:
        history = store.get_metric_history(result.run_id, f"judge/openai_gpt-3.5-turbo/{measure}")
        return [m.value for m in sorted(history, key=lambda m: m.timestamp)]

    (prompt, _), (completion, _) = (logged(f"tokens_{k}") for k in ("prompt", "completion"))
    assert logged("tokens_batch") == [prompt + completion, 0] and prompt > 0
    full_price = (prompt * 0.5 + completion * 1.5) / 1e6  # conf/prices.yaml's gpt-3.5-turbo
    assert logged("cost_usd") == [pytest.approx(full_price / 2), 0]
    assert (result.judgements_path.parent / STATE_FILE).is_file()
    repeats = result.judgements_path.with_name(contract.REPEATS_FILE).read_text().splitlines()
    assert len(repeats) == 20
