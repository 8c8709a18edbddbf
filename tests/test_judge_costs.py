"""The judge cost ledger: prices by hand, an evaluation's ledger against what the OpenAI-style
server on 127.0.0.1 counted, the cache counted apart, an unpriced model's cost unknown (never
0), an offline judge's 0 said so, and a sweep's total."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.cost_section import costs_markdown, load_judge_costs
from lorabench.config import compose, validate
from lorabench.config.schema import PriceConfig
from lorabench.errors import ConfigError
from lorabench.evaluation import evaluate
from lorabench.judging.base import JudgeStats
from lorabench.judging.costs import OFFLINE_NOTE, cost_of, sweep_total
from tests.helpers.cli import run_cli
from tests.helpers.fake_openai_server import DEFAULT_REPLY, FakeOpenAIServer
from tests.helpers.models import untracked_adapter

KEY_ENV = "LORABENCH_TEST_COST_KEY"
PRICE = PriceConfig(input=0.5, output=1.5, batch_discount=0.5, read_on="2026-12-03")
SMALL_EVAL = ("eval.demo_per_class=2", "eval.decoding.max_new_tokens=6")
JUDGE = "openai_gpt-3.5-turbo"


def _ledger(name: str) -> str:
    return f"judge/{JUDGE}/{name}"


def test_cost_by_hand_synchronous_batch_unpriced_and_offline() -> None:
    stats = JudgeStats(prompt_tokens=3_000_000, completion_tokens=400_000)
    # 3M × $0.50 + 0.4M × $1.50 per 1M tokens.
    assert cost_of(stats, "gpt-3.5-turbo", {"gpt-3.5-turbo": PRICE}).usd == pytest.approx(2.1)
    # Of those, 2M prompt and 0.2M completion tokens through the Batch API at half price.
    stats.batch_prompt_tokens, stats.batch_completion_tokens = 2_000_000, 200_000
    batch = cost_of(stats, "gpt-3.5-turbo", {"gpt-3.5-turbo": PRICE})
    assert batch.usd == pytest.approx(0.5 + 0.3 + (1.0 + 0.3) / 2)
    assert "2026-12-03" in batch.note and "batch -50%" in batch.note

    unpriced = cost_of(stats, "gpt-5", {"gpt-3.5-turbo": PRICE})
    assert unpriced.usd is None and "unknown" in unpriced.note and "gpt-5" in unpriced.note
    offline = cost_of(JudgeStats(), None, {})
    assert offline.usd == 0.0 and offline.note == OFFLINE_NOTE


def test_a_price_without_its_date_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"prices\.gpt-4o\.read_on='last week'"):
        validate(compose(["profile=demo", "prices.gpt-4o.read_on=last week"]))
    with pytest.raises(ConfigError, match=r"prices\.gpt-4o\.batch_discount"):
        validate(compose(["profile=demo", "prices.gpt-4o.batch_discount=1.5"]))


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA adapter, trained once for the module (no tracking)."""
    return untracked_adapter(tmp_path_factory.mktemp("trained"))


def _server_counts(server: FakeOpenAIServer) -> tuple[int, int]:
    """(prompt, completion) tokens as the fake server bills them (a character a token) over
    the judging calls it answered, the preflight's one-token check left out."""
    judged = [r for r in server.chat_requests if r.body.get("max_tokens") != 1]
    prompt = sum(len(m["content"]) for r in judged for m in r.body["messages"])
    return prompt, len(judged) * len(DEFAULT_REPLY)


def test_an_evaluation_ledgers_what_it_bought_and_what_the_cache_answered(
    demo_config, adapter: Path, store: MlflowClient, monkeypatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with FakeOpenAIServer(api_key="sk-test") as server:
        judge = [
            "judge=openai",
            f"judge.base_url={server.base_url}",
            f"judge.api_key_env={KEY_ENV}",
        ]
        cfg = demo_config(*SMALL_EVAL, f"model_path={adapter}", *judge)
        first = evaluate(cfg)
        prompt, completion = _server_counts(server)
        bought = store.get_run(first.run_id).data
        evaluate(cfg)  # everything cached: nothing bought
    again = store.get_run(first.run_id).data

    assert bought.metrics[_ledger("tokens_prompt")] == prompt > 0
    assert bought.metrics[_ledger("tokens_completion")] == completion > 0
    assert bought.metrics[_ledger("tokens_cached")] == 0
    expected = (prompt * 0.5 + completion * 1.5) / 1e6
    assert bought.metrics[_ledger("cost_usd")] == pytest.approx(expected)
    assert bought.tags[f"judge/{JUDGE}/cost"].startswith("gpt-3.5-turbo at $0.5 / $1.5")
    # The second evaluation paid nothing; what it answered from the cache is counted apart.
    assert again.metrics[_ledger("tokens_prompt")] == 0
    assert again.metrics[_ledger("cost_usd")] == 0
    assert again.metrics[_ledger("tokens_cached")] == prompt + completion


def test_a_judge_model_without_a_price_has_no_cost_and_says_so(
    demo_config, adapter: Path, store: MlflowClient, monkeypatch
) -> None:
    """A local model behind an OpenAI-compatible server (no entry in conf/prices.yaml)."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with FakeOpenAIServer(api_key="sk-test", models=("local-judge",)) as server:
        judge = [
            "judge=openai",
            "judge.model=local-judge",
            f"judge.base_url={server.base_url}",
            f"judge.api_key_env={KEY_ENV}",
        ]
        result = evaluate(demo_config(*SMALL_EVAL, f"model_path={adapter}", *judge))
    run = store.get_run(result.run_id).data
    local = "judge/openai_local-judge/"
    assert run.metrics[f"{local}tokens_prompt"] > 0
    assert f"{local}cost_usd" not in run.metrics  # unknown, not 0
    assert "unknown: no price for model 'local-judge'" in run.tags[f"{local}cost"]

    totals, tags = sweep_total([store.get_run(result.run_id)])
    assert contract.SWEEP_JUDGE_COST_USD not in totals
    assert totals[contract.SWEEP_JUDGE_TOKENS] == (
        run.metrics[f"{local}tokens_prompt"] + run.metrics[f"{local}tokens_completion"]
    )
    assert tags[contract.TAG_SWEEP_JUDGE_COST].startswith("unknown: 1 of 1 judge ledgers")


def test_the_offline_judge_costs_nothing_and_says_so(
    demo_config, adapter: Path, store: MlflowClient
) -> None:
    result = evaluate(demo_config(*SMALL_EVAL, f"model_path={adapter}"))
    run = store.get_run(result.run_id).data
    assert run.metrics["judge/reference_f1/cost_usd"] == 0
    assert run.metrics["judge/reference_f1/tokens_prompt"] == 0
    assert run.tags["judge/reference_f1/cost"] == OFFLINE_NOTE


def _judge_part(line: str) -> tuple[int, float, float]:
    """(calls, M tokens, USD) of a plan line's judge part."""
    found = re.search(r"judge: ([\d,]+) calls, ([\d.]+)M tokens, \$([\d.,]+)", line)
    assert found, line
    return int(found[1].replace(",", "")), float(found[2]), float(found[3].replace(",", ""))


@pytest.mark.slow
def test_the_plan_prices_judging_the_paper_grid_at_gpt35_prices(
    tmp_path: Path, isolated: list[str], belle_dir: Path
) -> None:
    """Table 4's 8 rows and its 2 base rows, each 1,000 BELLE items judged once by
    gpt-3.5-turbo with BELLE's prompts (local copies: a plan downloads nothing)."""
    result = run_cli(
        "sweep.py",
        "experiment=paper_table4",
        "sweep.plan=true",
        f"eval.path={belle_dir / 'eval_set.json'}",
        f"judge.prompts={belle_dir / 'eval_prompt.json'}",
        *isolated,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    points = [_judge_part(line) for line in lines if " | judge: " in line]
    assert len(points) == 10 and all(p == points[0] for p in points)
    calls, tokens, usd = points[0]
    assert calls == 1000
    # Each call's reply is assumed at 100 tokens; the rest of its tokens are the prompt's.
    completion = calls * 100 / 1e6
    assert usd == pytest.approx((tokens - completion) * 0.5 + completion * 1.5, abs=0.01)
    (total,) = [line for line in lines if line.startswith("judge: 10,000 calls")]
    grid_calls, grid_tokens, grid_usd = _judge_part(total)
    assert grid_tokens == pytest.approx(10 * tokens, abs=0.05)
    assert grid_usd == pytest.approx(10 * usd, abs=0.05)
    assert "gpt-3.5-turbo at $0.5 / $1.5 per 1M" in total and "read 2026-12-03" in total
    batch = float(re.search(r"Batch API \(judge.batch=true\): \$([\d.]+)", total)[1])
    assert batch == pytest.approx(grid_usd / 2, abs=0.01)


def _ledgered_run(client: MlflowClient, experiment: str, name: str, judge: str, **values) -> str:
    run = client.create_run(experiment, run_name=name)
    for measure, value in values.items():
        if measure != "note":
            client.log_metric(run.info.run_id, f"judge/{judge}/{measure}", value)
    client.set_tag(run.info.run_id, f"judge/{judge}/cost", values["note"])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_the_report_section_lists_each_ledger_and_totals_them(tmp_path: Path) -> None:
    """Two priced runs and a sweep parent's head-to-head judge, then an unpriced run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("costs", artifact_location=str(tmp_path / "a"))
    priced = {"tokens_batch": 0, "tokens_cached": 0, "note": "gpt-3.5-turbo at ..."}
    a = _ledgered_run(
        client, experiment, "a", JUDGE,
        tokens_prompt=1000, tokens_completion=100, cost_usd=0.0006, **priced,
    )  # fmt: skip
    b = _ledgered_run(
        client, experiment, "b", JUDGE,
        tokens_prompt=3000, tokens_completion=300, cost_usd=0.0021,
        **{**priced, "tokens_cached": 500},
    )  # fmt: skip
    parent = _ledgered_run(
        client, experiment, "sweep", "openai-pairwise_gpt-3.5-turbo",
        tokens_prompt=2000, tokens_completion=200, cost_usd=0.0013, **priced,
    )  # fmt: skip
    client.set_tag(parent, contract.TAG_SWEEP, "true")
    runs = pd.DataFrame({"run_id": [a, b]})

    costs = load_judge_costs(uri, "costs", runs)
    assert list(costs["run"]) == ["a", "b", "sweep (head to head)"]
    section = costs_markdown(costs)
    assert "| b | openai_gpt-3.5-turbo | 3,000 | 300 | 0 | 500 | $0.0021 |" in section
    assert "**Total**: $0.0040 for 6,600 tokens bought." in section  # 0.0006 + 0.0021 + 0.0013

    unpriced = {"tokens_batch": 0, "tokens_cached": 0, "note": "unknown: no price for 'local'"}
    c = _ledgered_run(
        client, experiment, "c", "openai_local", tokens_prompt=10, tokens_completion=1, **unpriced
    )
    section = costs_markdown(load_judge_costs(uri, "costs", pd.DataFrame({"run_id": [a, b, c]})))
    assert "| c | openai_local | 10 | 1 | 0 | 0 | unknown |" in section
    assert "**Total**: unknown: 1 of 4 ledgers unpriced (the rest $0.0040)" in section
