"""Loading runs from MLflow into the tidy table (lorabench.analysis.runs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lorabench import contract
from lorabench.analysis.runs import (
    COLUMNS,
    COUNT_METRICS,
    AnalysisError,
    data_scale,
    load_runs,
    model_size,
    parse_run_name,
    project_root,
    sections,
)
from lorabench.evaluation.eval_set import CATEGORIES
from tests.helpers.analysis import demo_run, demo_sweep, eval_counts, experiment, log_run


def uri(store_file: Path) -> str:
    return f"sqlite:///{store_file}"


def test_demo_sweep_as_a_tidy_table(store, store_file, tmp_path):
    parent, children = demo_sweep(store, tmp_path / "artifacts")
    runs = load_runs(uri(store_file), "lorabench-demo")
    assert list(runs.columns) == list(COLUMNS)
    assert sorted(runs["run_id"]) == sorted(children)  # the parent run is no row
    row = runs.set_index("run_name").loc["tiny+lora(2m)"]
    assert (row["base_model"], row["method"], row["data"]) == ("tiny", "lora", "2m")
    assert row["num_samples"] == 2000  # nominal 2M × demo_fraction 0.001
    assert row["base_run"] is None
    assert row["judge"] == "reference:f1" and row["eval_set"] == "demo"
    assert row["evaluated"] and row["source"] == "ours" and row["parent_run_id"] == parent
    assert row["ci_low"] < row["average_score"] < row["ci_high"]
    assert row["additional_params"] == 11_264 and row["base_params"] == 830_000
    assert row[list(CATEGORIES)].notna().all()
    assert row[list(contract.ANATOMY_MEASURES)].isna().all()  # not measured: empty, not 0


def test_parent_run_selects_one_sweep(store, store_file, tmp_path):
    first, children = demo_sweep(store, tmp_path / "artifacts")
    demo_sweep(store, tmp_path / "artifacts")
    assert len(load_runs(uri(store_file), "lorabench-demo")) == 12
    runs = load_runs(uri(store_file), "lorabench-demo", parent_run_id=first)
    assert sorted(runs["run_id"]) == sorted(children)


def test_unfinished_runs_are_left_out_and_counted(store, store_file, tmp_path, caplog):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    demo_run(store, exp, "lora", "2m")
    demo_run(store, exp, "ft", "2m", status="FAILED")
    demo_run(store, exp, "ft", "4m", status="KILLED")
    demo_run(store, exp, "ft", "0.6m", status="FAILED")
    runs = load_runs(uri(store_file), "lorabench-demo")
    assert list(runs["run_name"]) == ["tiny+lora(2m)"]
    assert runs.attrs["excluded"] == {"FAILED": 2, "KILLED": 1}
    assert "2 FAILED, 1 KILLED" in caplog.text


def test_runs_without_eval_metrics_are_kept_and_flagged(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    demo_run(store, exp, "lora", "2m", judge=None)
    demo_run(store, exp, "ft", "2m")
    runs = load_runs(uri(store_file), "lorabench-demo").set_index("run_name")
    assert not runs.loc["tiny+lora(2m)", "evaluated"]
    assert runs.loc["tiny+lora(2m)", "judge"] is None
    assert runs.loc["tiny+lora(2m)", "hours_per_epoch"] > 0
    assert runs.loc["tiny+ft(2m)", "evaluated"]


def test_served_judge_model_prompts_and_counts_are_columns(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    demo_run(
        store,
        exp,
        "lora",
        "2m",
        judge="openai:gpt-3.5-turbo",
        more_metrics=eval_counts({"rewrite": 2, "others": 1}, {"generation": 4}),
        more_tags={
            contract.TAG_EVAL_JUDGE_MODEL: "gpt-3.5-turbo-0125, gpt-3.5-turbo-0613",
            contract.TAG_EVAL_JUDGE_PROMPTS: "belle:6032824adcd7 belle(translation=paper)",
        },
    )
    # Evaluated before the counts and the served model were recorded; the empty tag is what a
    # judge reporting no model leaves.
    demo_run(store, exp, "ft", "2m", more_tags={contract.TAG_EVAL_JUDGE_MODEL: ""})
    runs = load_runs(uri(store_file), "lorabench-demo").set_index("run_name")
    lora, ft = runs.loc["tiny+lora(2m)"], runs.loc["tiny+ft(2m)"]
    assert lora["judge_model"] == "gpt-3.5-turbo-0125, gpt-3.5-turbo-0613"
    assert lora["judge_prompts"] == "belle:6032824adcd7 belle(translation=paper)"
    assert (lora["parse_failures"], lora["parse_failures_rewrite"]) == (3, 2)
    assert (lora["truncated_answers"], lora["truncated_answers_generation"]) == (4, 4)
    assert lora["parse_failures_generation"] == 0  # a logged 0 stays a 0
    assert ft["judge_model"] is None and ft["judge_prompts"] is None
    assert ft[list(COUNT_METRICS)].isna().all()  # never logged: empty, not 0


def test_judged_without_a_single_score_is_evaluated(store, store_file, tmp_path):
    """Every reply unparseable: no score, but the run was judged and its counts say why."""
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    counts = eval_counts(dict.fromkeys(CATEGORIES, 5))
    log_run(
        store,
        exp,
        "tiny+lora(2m)",
        metrics={contract.EVAL_JUDGED_ITEMS: 0, contract.EVAL_UNJUDGED_ITEMS: 45, **counts},
        tags={contract.TAG_EVAL_JUDGE: "openai:gpt-4o", contract.TAG_EVAL_SET: "demo"},
    )
    runs = load_runs(uri(store_file), "lorabench-demo")
    row = runs.iloc[0]
    assert row["evaluated"] and row["judge"] == "openai:gpt-4o"
    assert pd.isna(row["average_score"]) and row["parse_failures"] == 45
    assert [s.judge for s in sections(runs)] == ["openai:gpt-4o"]


def test_chained_run_names_its_base(store, store_file, tmp_path):
    exp = experiment(store, "lorabench", tmp_path / "artifacts")
    base = log_run(store, exp, "llama-7b+ft(2m)", params={"model.name": "llama-7b"})
    log_run(
        store,
        exp,
        "llama-7b+ft(2m)+lora(math_0.25m)",
        params={"model.name": "llama-7b", "method.name": "lora", "data.name": "math_0.25m"},
        tags={"base_run_id": base},
    )
    log_run(store, exp, "llama-7b+ft(2m)+ft(math_0.25m)", params={"base_run": "None"})
    runs = load_runs(uri(store_file), "lorabench").set_index("run_name")
    assert runs.loc["llama-7b+ft(2m)+lora(math_0.25m)", "base_run"] == "llama-7b+ft(2m)"
    # No param, no tag: the run name says it.
    chained = runs.loc["llama-7b+ft(2m)+ft(math_0.25m)"]
    assert chained["base_run"] == "llama-7b+ft(2m)"
    assert (chained["method"], chained["data"], chained["num_samples"]) == (
        "ft",
        "math_0.25m",
        250_000,
    )
    assert runs.loc["llama-7b+ft(2m)", "base_params"] == 6_738_415_616  # known, no metric


def test_average_is_the_macro_average_when_not_logged(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    metrics = {f"eval/score/{c}": 0.1 * (i % 5) for i, c in enumerate(CATEGORIES)}
    log_run(store, exp, "tiny+lora(2m)", metrics=metrics, tags={"eval_judge": "j"})
    runs = load_runs(uri(store_file), "lorabench-demo")
    assert runs["average_score"].iloc[0] == pytest.approx(sum(metrics.values()) / 9)
    assert runs["eval_set"].iloc[0] == "unknown"  # evaluated, but the tag is missing


def test_missing_store_experiment_or_runs_say_so(store, store_file, tmp_path):
    with pytest.raises(AnalysisError, match="no MLflow store at"):
        load_runs(f"sqlite:///{tmp_path}/nowhere.db", "lorabench-demo")
    with pytest.raises(AnalysisError, match=r"no experiment 'lorabench-demo'.*Default"):
        load_runs(uri(store_file), "lorabench-demo")
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    with pytest.raises(AnalysisError, match="has no finished run"):
        load_runs(uri(store_file), "lorabench-demo")
    demo_run(store, exp, "ft", "2m", status="FAILED")
    with pytest.raises(AnalysisError, match="has no finished run; left out 1 FAILED"):
        load_runs(uri(store_file), "lorabench-demo")


def test_sections_split_by_judge_and_eval_set(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    demo_run(store, exp, "lora", "2m")
    demo_run(store, exp, "ft", "2m", judge="openai:gpt-4o")
    demo_run(store, exp, "ft", "4m", judge="reference:f1", eval_set="belle")
    demo_run(store, exp, "lora", "4m", judge=None)
    demo_run(store, exp, "lora", "0.6m")
    parts = sections(load_runs(uri(store_file), "lorabench-demo"))
    assert [(s.judge, s.eval_set, len(s.runs)) for s in parts] == [
        ("reference:f1", "demo", 2),
        ("openai:gpt-4o", "demo", 1),
        ("reference:f1", "belle", 1),
        (None, None, 1),
    ]
    assert parts[-1].label == "not evaluated"
    assert parts[1].slug == "judge-openai-gpt-4o-on-eval-set-demo"


def test_name_parsing():
    assert parse_run_name("llama-7b+ft(2m)+lora(math_0.25m)") == {
        "model": "llama-7b",
        "chain": "ft(2m)",
        "method": "lora",
        "data": "math_0.25m",
    }
    assert parse_run_name("tiny+lora(0.6m)") == {"model": "tiny", "method": "lora", "data": "0.6m"}
    assert parse_run_name("my experiment") == {}
    assert data_scale("0.6m") == 600_000 and data_scale("math_0.25m") == 250_000
    assert data_scale("500k") == 500_000 and data_scale("custom") is None
    assert model_size("llama-13b") == 13_015_864_320
    assert model_size("tiny-13b") is None  # its runs log their size; its name does not count


def test_project_root(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "analysis").mkdir()
    assert project_root(tmp_path / "analysis") == tmp_path
