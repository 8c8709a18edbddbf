"""The head-to-head stage of a sweep (`lorabench.analysis.pairwise_judging`) on a real sqlite
MLflow store: evaluated runs planted with judgements artifacts of known answers, judged pairwise
by the offline reference judge, and the result logged to the sweep's parent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.pairwise_judging import (
    BASELINE_PAIR,
    TABLE_FILES,
    Unpairable,
    chosen_pairs,
    head_to_head,
    pair_answers,
    record_head_to_head,
)
from lorabench.analysis.replicates import replicate_groups
from lorabench.analysis.runs import run_frame
from lorabench.analysis.sweep_records import record_pairwise
from lorabench.config.schema import JudgeConfig, PairwiseConfig, PriceConfig, StatsConfig
from lorabench.evaluation.eval_set import CATEGORIES
from lorabench.judging.pairwise import ReferencePairwiseJudge
from lorabench.tracking.parents import PairwiseStage
from tests.helpers.analysis import demo_run, experiment
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV, FakeOpenAIServer, reply

JUDGE = "reference:f1"
STATS = StatsConfig(bootstrap_samples=200, seed=3)
LORA, FT = "tiny+lora(2m)", "tiny+ft(2m)"
OTHER_SET, NO_JUDGEMENTS = "tiny+lora(4m)", "tiny+ft(4m)"
# Two items per category; FT answers the gold answer except on items 0-1, LoRA answers it
# except on items 2-7: LoRA wins 2 items, loses 6, ties 10.
ITEMS = [
    (("math" if c == "others" else c.replace("_", " ")), f"question {c} {k}", f"gold {c} {k} ok")
    for c in CATEGORIES
    for k in range(2)
]
FT_WRONG, LORA_WRONG = range(0, 2), range(2, 8)


def _answers(wrong: range) -> list[str]:
    return ["something else entirely" if i in wrong else gold for i, (*_, gold) in enumerate(ITEMS)]


def _log_judgements(client: MlflowClient, run_id: str, answers: list[str], order=None) -> None:
    order = list(order or range(len(ITEMS)))
    rows = []
    for i in order:
        raw_class, question, gold = ITEMS[i]
        category = "others" if raw_class == "math" else raw_class.replace(" ", "_")
        row = {"question": question, "class": raw_class, "category": category}
        rows.append({**row, "reference": gold, "answer": answers[i], "judge": JUDGE, "score": 1.0})
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path = f"{contract.judge_artifact_dir(JUDGE)}/{contract.JUDGEMENTS_FILE}"
    client.log_text(run_id, text, path)


@pytest.fixture
def sweep(store: MlflowClient, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A sweep parent and its evaluated runs: LoRA and FT at 2m (FT's judgements in reverse
    order), LoRA at 4m on another eval set, FT at 4m without judgements artifacts."""
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    parent = store.create_run(exp, run_name="sweep", tags={"sweep": "true"}).info.run_id
    ids = {
        LORA: demo_run(store, exp, "lora", "2m", parent=parent),
        FT: demo_run(store, exp, "ft", "2m", parent=parent),
        OTHER_SET: demo_run(
            store,
            exp,
            "lora",
            "4m",
            parent=parent,
            eval_set="other",
            more_tags={contract.TAG_EVAL_ITEMS: "30"},
        ),  # fmt: skip
        NO_JUDGEMENTS: demo_run(store, exp, "ft", "4m", parent=parent),
    }
    _log_judgements(store, ids[LORA], _answers(LORA_WRONG))
    _log_judgements(store, ids[FT], _answers(FT_WRONG), order=reversed(range(len(ITEMS))))
    _log_judgements(store, ids[OTHER_SET], _answers(LORA_WRONG))
    store.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))
    return parent, ids


def _runs(store: MlflowClient, ids: dict[str, str]) -> list:
    return [store.get_run(run_id) for run_id in ids.values()]


def test_pair_answers_matches_items_by_key(store: MlflowClient, sweep) -> None:
    _, ids = sweep
    items, answers_a, answers_b = pair_answers(store, ids[LORA], ids[FT])
    assert [i.question for i in items] == [q for _, q, _ in ITEMS]  # A's order
    assert answers_a == _answers(LORA_WRONG)
    assert answers_b == _answers(FT_WRONG)  # FT's rows were logged in reverse
    assert items[0].std_answer == ITEMS[0][2] and items[0].category == "others"


def test_pair_answers_refuses_other_eval_sets(store: MlflowClient, sweep) -> None:
    _, ids = sweep
    with pytest.raises(Unpairable) as err:
        pair_answers(store, ids[OTHER_SET], ids[FT])
    message = str(err.value)
    assert "'other'" in message and "'demo'" in message and "'30'" in message
    assert OTHER_SET in message and FT in message


def test_paper_pairs_judged_recorded_on_parent(store: MlflowClient, sweep, tmp_path) -> None:
    parent, ids = sweep
    result = head_to_head(store, _runs(store, ids), ReferencePairwiseJudge(), stats=STATS,
                          progress=False)  # fmt: skip
    # The study's pair at 2m; LoRA at 4m has no FT partner on its eval set, FT at 4m none at all.
    assert result.pairs == [("LoRA vs FT", LORA, FT)]
    assert result.skipped == []
    verdicts = result.verdicts
    assert list(verdicts.columns) == list(contract.PAIRWISE_VERDICT_COLUMNS)
    assert len(verdicts) == len(ITEMS)
    assert set(verdicts["run_a"]) == {LORA} and set(verdicts["run_b"]) == {FT}
    assert verdicts["verdict"].value_counts().to_dict() == {"tie": 10, "B": 6, "A": 2}

    (row,) = result.win_rates.itertuples(index=False)
    assert (row.run_a, row.run_b) == (LORA, FT)
    assert (row.wins, row.losses, row.ties) == (2, 6, 10)
    assert row.win_rate == pytest.approx(7 / 18)  # FT wins the pair: A's (LoRA's) rate < 0.5
    assert row.ci_low <= row.win_rate <= row.ci_high
    bt = result.bradley_terry.set_index("run")["rating"]
    assert bt[FT] > bt[LORA]
    consistency = result.position_consistency
    assert consistency["consistency"].eq(1.0).all()  # the reference judge ignores the order
    assert set(result.category_win_rates["category"]) == set(CATEGORIES)
    assert list(result.length_controlled[["run_a", "run_b"]].iloc[0]) == [LORA, FT]

    record_head_to_head(store, parent, result)
    artifacts = {f.path for f in store.list_artifacts(parent, contract.ARTIFACT_PAIRWISE_DIR)}
    expected = {f"{contract.ARTIFACT_PAIRWISE_DIR}/{name}" for name in TABLE_FILES.values()}
    assert {contract.ARTIFACT_PAIRWISE_VERDICTS, *expected} == artifacts  # nothing skipped
    local = store.download_artifacts(parent, contract.ARTIFACT_PAIRWISE_VERDICTS, str(tmp_path))
    assert len(pd.read_csv(local)) == len(ITEMS)
    metrics = store.get_run(parent).data.metrics
    pair = f"{LORA} vs {FT}"
    assert metrics[contract.pairwise_win_rate(pair)] == pytest.approx(7 / 18)
    assert metrics[contract.pairwise_win_rate_ci_low(pair)] == pytest.approx(row.ci_low)
    assert metrics[contract.pairwise_win_rate_ci_high(pair)] == pytest.approx(row.ci_high)
    assert contract.pairwise_win_rate(pair) == "pairwise/tiny_lora_2m_vs_tiny_ft_2m_/win_rate"
    judge = ReferencePairwiseJudge().name
    assert metrics[contract.pairwise_position_consistency(judge)] == 1.0


def test_named_pairs_skip_what_cannot_be_judged(store: MlflowClient, sweep, tmp_path) -> None:
    parent, ids = sweep
    pairs = [
        f"{FT} vs {LORA}",
        f"{OTHER_SET} vs {FT}",
        f"nope vs {FT}",
        f"{NO_JUDGEMENTS} vs {FT}",
    ]
    result = head_to_head(store, _runs(store, ids), ReferencePairwiseJudge(), pairs=pairs,
                          stats=STATS, progress=False)  # fmt: skip
    assert result.pairs == [("named", FT, LORA)]
    (row,) = result.win_rates.itertuples(index=False)
    assert (row.run_a, row.run_b, row.wins, row.losses) == (FT, LORA, 6, 2)
    assert row.win_rate == pytest.approx(11 / 18)
    unknown, other, missing = result.skipped  # unknown names first (`named_pairs`)
    assert other.startswith(f"{OTHER_SET} vs {FT}:")
    assert "different eval sets" in other and "'other'" in other and "'demo'" in other
    assert unknown.startswith(f"nope vs {FT}:") and "nope" in unknown
    assert missing.startswith(f"{NO_JUDGEMENTS} vs {FT}:") and "no judgements" in missing

    record_head_to_head(store, parent, result)
    path = f"{contract.ARTIFACT_PAIRWISE_DIR}/skipped.txt"
    text = Path(store.download_artifacts(parent, path, str(tmp_path))).read_text(encoding="utf-8")
    assert text.splitlines() == result.skipped
    assert store.get_run(parent).data.metrics[contract.pairwise_win_rate(f"{FT} vs {LORA}")] > 0.5


def test_nothing_judgeable_gives_empty_tables(store: MlflowClient, sweep) -> None:
    parent, ids = sweep
    result = head_to_head(store, _runs(store, ids), ReferencePairwiseJudge(),
                          pairs=[f"nope vs {FT}"], stats=STATS, progress=False)  # fmt: skip
    assert result.pairs == [] and len(result.skipped) == 1
    assert all(len(table) == 0 for table in result.tables().values())
    record_head_to_head(store, parent, result)
    assert not any(k.startswith("pairwise/") for k in store.get_run(parent).data.metrics)


def test_replicates_are_judged_by_their_first_run(store: MlflowClient, sweep, tmp_path) -> None:
    _, ids = sweep
    exp = store.get_run(ids[LORA]).info.experiment_id
    seed2 = demo_run(store, exp, "lora", "2m")
    store.set_tag(seed2, "mlflow.runName", f"{LORA}[seed=2]")
    _log_judgements(store, seed2, _answers(range(0)))  # all gold: would never lose to FT
    runs = [*_runs(store, ids), store.get_run(seed2)]
    result = head_to_head(store, runs, ReferencePairwiseJudge(), stats=STATS, progress=False)
    assert result.pairs == [("LoRA vs FT", LORA, FT)]  # the group's first run stands for it
    (row,) = result.win_rates.itertuples(index=False)
    assert (row.wins, row.losses, row.ties) == (2, 6, 10)


def test_a_baseline_pairs_every_run_of_the_focus_against_it(store: MlflowClient, sweep) -> None:
    _, ids = sweep
    groups = replicate_groups(run_frame(_runs(store, ids)))
    chosen, skipped = chosen_pairs(groups, baseline=FT, focus={ids[LORA], ids[OTHER_SET]})
    assert [(kind, a.name, b.name) for kind, a, b in chosen] == [
        (BASELINE_PAIR, LORA, FT),
        (BASELINE_PAIR, OTHER_SET, FT),
    ]  # FT at 4m is no run of the focus; FT is not judged against itself
    assert skipped == []
    named, skipped = chosen_pairs(groups, pairs=[f"{FT} vs {LORA}"], baseline="nope", focus=())
    assert [(a.name, b.name) for _, a, b in named] == [(FT, LORA)]  # named pairs ignore focus
    assert skipped == ["baseline nope: no evaluated run or group of that name"]
    study, _ = chosen_pairs(groups, focus={ids[OTHER_SET]})
    assert study == []  # the study's one pair (LoRA vs FT at 2m) has no run of the focus


def _stage(server: FakeOpenAIServer, tmp_path: Path, **pairwise: Any) -> PairwiseStage:
    judge = JudgeConfig(
        name="openai",
        base_url=server.base_url,
        api_key_env=JUDGE_KEY_ENV,
        prompts="project",
        concurrency=4,
        timeout=5.0,
    )
    price = PriceConfig(input=0.5, output=1.5, batch_discount=0.5, read_on="2026-12-03")
    prices = {"gpt-3.5-turbo": price}
    return PairwiseStage(judge, PairwiseConfig(**pairwise), str(tmp_path / "cache"), prices)


def test_a_sweeps_stage_uses_the_configured_judge_and_a_rerun_sends_nothing(
    store: MlflowClient, sweep, tmp_path, api_key
) -> None:
    parent, ids = sweep
    first_wins = reply("Both answers address the question.\nVerdict: 1")
    with FakeOpenAIServer(api_key=api_key, responder=lambda body: first_wins) as server:
        stage = _stage(server, tmp_path, language="en")
        runs = [store.get_run(ids[LORA]), store.get_run(ids[FT])]
        record_pairwise(store, parent, runs, stage, STATS)
        # The preflight, then both orders per item; where both answers are the gold one (10
        # items) the two orders' prompts are the same and sent once.
        calls = 1 + 2 * len(ITEMS) - 10
        assert server.chat_calls == calls
        assert "Verdict" in server.chat_requests[-1].body["messages"][0]["content"]
        bought = store.get_run(parent).data.metrics
        record_pairwise(store, parent, runs, stage, STATS)
        assert server.chat_calls == calls  # all cached: not even a preflight
    # The pairwise judge's ledger on the parent: what it bought (the fake server bills a
    # character a token), then nothing bought.
    sent = [r for r in server.chat_requests if r.body.get("max_tokens") != 1]
    prompt = sum(len(m["content"]) for r in sent for m in r.body["messages"])
    ledger = "judge/openai-pairwise_gpt-3.5-turbo/"
    completion = len(sent) * len(first_wins.content)
    assert (bought[f"{ledger}tokens_prompt"], bought[f"{ledger}tokens_completion"]) == (
        prompt,
        completion,
    )
    assert bought[f"{ledger}cost_usd"] == pytest.approx((prompt * 0.5 + completion * 1.5) / 1e6)
    run = store.get_run(parent)
    assert run.data.metrics[f"{ledger}tokens_prompt"] == 0
    # Every judgement now came from the cache: those bought, and the in-batch duplicates the
    # first judging already counted as cached.
    duplicates = bought[f"{ledger}tokens_cached"]
    assert duplicates > 0  # the 10 items whose two orders show the same prompt
    assert run.data.metrics[f"{ledger}tokens_cached"] == prompt + completion + duplicates
    assert run.data.tags[contract.TAG_PAIRWISE_JUDGE] == "openai-pairwise:gpt-3.5-turbo"
    # A judge that always prefers the answer shown first: every item a tie, none consistent.
    assert run.data.metrics[contract.pairwise_win_rate(f"{LORA} vs {FT}")] == 0.5
    consistency = contract.pairwise_position_consistency("openai-pairwise:gpt-3.5-turbo")
    assert run.data.metrics[consistency] == 0.0


def test_a_judge_that_cannot_run_is_said_and_nothing_is_logged(
    store: MlflowClient, sweep, tmp_path, api_key, caplog
) -> None:
    parent, ids = sweep
    with FakeOpenAIServer(api_key="another key") as server:
        runs = [store.get_run(ids[LORA]), store.get_run(ids[FT])]
        record_pairwise(store, parent, runs, _stage(server, tmp_path), STATS)
        assert server.chat_calls == 1  # the preflight only
    assert "rejected the API key" in caplog.text
    assert not store.list_artifacts(parent, contract.ARTIFACT_PAIRWISE_DIR)
    assert contract.TAG_PAIRWISE_JUDGE not in store.get_run(parent).data.tags
