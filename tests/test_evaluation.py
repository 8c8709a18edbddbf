"""evaluate.py end to end: generation on the demo eval set, the offline and the OpenAI judge
(over real HTTP on 127.0.0.1), metrics and artifacts in MLflow, and nothing paid for twice."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from lorabench import contract
from lorabench.analysis.items import load_item_scores
from lorabench.analysis.runs import load_runs
from lorabench.config import compose, validate
from lorabench.evaluation import evaluate
from lorabench.evaluation.eval_set import CATEGORIES
from lorabench.methods import ADAPTER_CONFIG_FILE
from lorabench.training import train
from tests.helpers.benchmarks import PANEL
from tests.helpers.cli import run_cli
from tests.helpers.fake_openai_server import JUDGE_KEY_ENV as KEY_ENV
from tests.helpers.fake_openai_server import FakeOpenAIServer
from tests.helpers.models import untracked_adapter
from tests.helpers.runs import runs_of

SMALL_EVAL = ("eval.demo_per_class=2", "eval.decoding.max_new_tokens=6")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA adapter, trained once for the module (no tracking)."""
    return untracked_adapter(tmp_path_factory.mktemp("trained"), steps=4)


def openai_judge(server: FakeOpenAIServer) -> list[str]:
    return ["judge=openai", f"judge.base_url={server.base_url}", f"judge.api_key_env={KEY_ENV}"]


def test_training_run_is_evaluated_into_the_same_run(demo_config, store) -> None:
    cfg = demo_config("data=math_0.25m", "training.max_steps=3", *SMALL_EVAL)
    trained = train(cfg)
    result = evaluate(demo_config(*SMALL_EVAL, f"run='{cfg.run_name}'"))

    assert result.run_id == trained.run_id
    (run,) = runs_of(store)
    metrics = run.data.metrics
    assert run.info.status == "FINISHED"
    assert {f"eval/score/{c}" for c in CATEGORIES} <= set(metrics)
    assert metrics["eval/average_score_ci_low"] <= metrics["eval/average_score"]
    assert metrics["eval/average_score"] <= metrics["eval/average_score_ci_high"]
    assert metrics["eval/judge_calls"] == 0  # the reference judge calls nobody
    assert "train/loss" in metrics  # the training metrics are still there
    assert run.data.tags["eval_judge"] == "reference:f1" and run.data.tags["eval_items"] == "20"
    artifacts = {a.path for a in store.list_artifacts(run.info.run_id, "eval")}
    assert artifacts == {"eval/generations.jsonl", "eval/judgements.jsonl", "eval/judges"}
    rows = [json.loads(line) for line in result.judgements_path.read_text().splitlines()]
    assert len(rows) == 20 and {r["category"] for r in rows} == set(CATEGORIES)
    assert all(r["status"] == "ok" and 0 <= r["score"] <= 1 for r in rows)


def test_the_untuned_base_is_evaluated_as_a_base_row(demo_config, store, store_file) -> None:
    """evaluate.py with no run=: the pretrained base itself, as the row tuned runs are read
    against (`tiny (base)`), recognised as such by the analysis."""
    cfg = demo_config(*SMALL_EVAL, *PANEL)
    result = evaluate(cfg)
    again = evaluate(cfg)

    assert again.run_id == result.run_id  # one base row, evaluated again in place
    run = store.get_run(result.run_id)
    assert run.info.run_name == "tiny (base)" and run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["run_kind"] == "base" and tags["pretrain_key"] and tags["pretrain_run_id"]
    # The pretrained weights, not random ones.
    assert Path(tags["base_model"]).parent == Path(cfg.pretrained_dir).resolve()
    row = load_runs(f"sqlite:///{store_file}", "lorabench-demo").set_index("run_name")
    base = row.loc["tiny (base)"]
    assert (base["method"], base["base_model"], base["data"]) == ("base", "tiny", None)
    assert base["base_params"] == run.data.metrics["model/total_params"] > 0
    assert base["evaluated"] and base["others_ci_low"] <= base["others"] <= base["others_ci_high"]
    # The demo's benchmark panel on the base row, as on every demo run.
    assert {"bench/lorabench_retention/acc", "bench/world_perplexity"} <= set(run.data.metrics)
    assert tags[contract.TAG_BENCH_HASH]


def test_judging_again_reuses_the_generations(demo_config, adapter: Path, tmp_path) -> None:
    model = tmp_path / "model"
    shutil.copytree(adapter, model)
    first = evaluate(demo_config(*SMALL_EVAL, f"model_path={model}"))
    shutil.rmtree(model.parent / "model")
    model.mkdir()  # still an adapter's directory, but no weights: generating again would fail
    shutil.copy(adapter / ADAPTER_CONFIG_FILE, model)
    second = evaluate(demo_config(*SMALL_EVAL, f"model_path={model}", "judge.model=rouge_l"))
    assert second.generations_path == first.generations_path
    assert second.run_id == first.run_id
    assert second.judgements_path != first.judgements_path


def test_openai_judge_pays_once_and_never_records_the_key(
    demo_config, adapter: Path, store, tmp_path, monkeypatch, capfd
) -> None:
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, key)
    with FakeOpenAIServer(api_key=key) as server:
        cfg = demo_config(*SMALL_EVAL, f"model_path={adapter}", *openai_judge(server))
        first = evaluate(cfg)
        calls_after_first = server.chat_calls
        second = evaluate(cfg)
        assert server.chat_calls == calls_after_first  # the second evaluation made no call
    assert first.metrics["eval/judge_calls"] == 20 and calls_after_first == 21  # + preflight
    assert second.metrics["eval/judge_calls"] == 0
    assert second.metrics["eval/judge_cache_hits"] == 20
    assert first.aggregate.average == pytest.approx(0.8)  # the server's "得分：0.8"

    # The key is nowhere on disk (store, artifacts, caches, outputs) nor in the output.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert key not in out and key not in err


def test_a_second_judge_is_kept_beside_the_first_with_its_repeats(
    demo_config, adapter: Path, store, monkeypatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    first = evaluate(demo_config(*SMALL_EVAL, f"model_path={adapter}"))
    with FakeOpenAIServer(api_key="sk-test") as server:
        cfg = demo_config(
            *SMALL_EVAL, f"model_path={adapter}", *openai_judge(server), "judge.repeats=3"
        )
        evaluate(cfg)
        calls = server.chat_calls
        evaluate(cfg)  # judged again: the repeats were recorded, nothing is bought twice
        assert server.chat_calls == calls
    assert calls == 3 * 20 + 1  # every repeat is its own call (+ preflight)

    run = store.get_run(first.run_id)
    metrics, tags = run.data.metrics, run.data.tags
    assert tags["eval_judge"] == "reference:f1"  # the first judge stays the headline
    assert tags["eval_judges"] == "openai:gpt-3.5-turbo,reference:f1"
    assert metrics["eval/average_score"] == first.metrics["eval/average_score"]
    assert metrics["eval/judges/openai_gpt-3.5-turbo/average_score"] == pytest.approx(0.8)
    assert metrics["eval/judges/reference_f1/average_score"] == metrics["eval/average_score"]
    files = {
        a.path
        for judge in store.list_artifacts(run.info.run_id, "eval/judges")
        for a in store.list_artifacts(run.info.run_id, judge.path)
    }
    assert files == {
        "eval/judges/reference_f1/judgements.jsonl",
        "eval/judges/openai_gpt-3.5-turbo/judgements.jsonl",
        "eval/judges/openai_gpt-3.5-turbo/repeats.jsonl",
    }
    items = load_item_scores(store.tracking_uri, [run.info.run_id])
    counts = items.groupby(["judge", "repeat"]).size().to_dict()
    assert counts == {
        ("openai:gpt-3.5-turbo", 0): 20,
        ("openai:gpt-3.5-turbo", 1): 20,
        ("openai:gpt-3.5-turbo", 2): 20,
        ("reference:f1", 0): 20,
    }


def test_missing_key_stops_before_generating(tmp_path: Path, isolated, adapter, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeOpenAIServer() as server:
        result = run_cli(
            "evaluate.py",
            "profile=demo",
            *isolated,
            *SMALL_EVAL,
            f"model_path={adapter}",
            *openai_judge(server),
            cwd=tmp_path,
        )
        assert server.chat_calls == 0
    assert result.returncode == 1 and KEY_ENV in result.stderr
    assert not list((tmp_path / "eval").rglob("generations.jsonl"))


def test_unknown_judge_model_stops_before_generating(demo_config, adapter, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with FakeOpenAIServer(models=("gpt-4o",)) as server:
        cfg = demo_config(*SMALL_EVAL, f"model_path={adapter}", *openai_judge(server))
        with pytest.raises(Exception, match="gpt-3.5-turbo"):
            evaluate(cfg)
    assert not list((tmp_path / "eval").rglob("generations.jsonl"))


def test_dry_run_prints_calls_and_tokens_without_calling(tmp_path: Path, isolated, adapter):
    with FakeOpenAIServer() as server:
        result = run_cli(
            "evaluate.py",
            "profile=demo",
            *isolated,
            *SMALL_EVAL,
            f"model_path={adapter}",
            *openai_judge(server),
            "dry_run=true",
            cwd=tmp_path,
        )
        assert server.chat_calls == 0
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert lines["eval_items"] == "20" and lines["judge_calls"] == "20"
    assert int(lines["estimated_tokens"]) > 0


def test_belle_eval_set_loads_through_the_eval_config(isolated, belle_dir: Path) -> None:
    belle = belle_dir / "eval_set.json"
    from lorabench.evaluation.eval_set import load_items

    cfg = validate(compose([*isolated, f"eval.path={belle}"]))
    assert len(load_items(cfg.eval, cfg.cache_dir)) == 1000
