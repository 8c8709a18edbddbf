"""The paper's rows: as a table, and imported into MLflow as reference runs."""

from __future__ import annotations

import pytest

from lorabench.analysis.paper_runs import (
    PAPER_RUN_PREFIX,
    import_paper_runs,
    paper_frame,
    parse_count,
)
from lorabench.analysis.runs import load_runs
from lorabench.evaluation.eval_set import CATEGORIES
from tests.helpers.analysis import demo_sweep


def test_parse_count():
    assert parse_count("17.9M") == 17_900_000
    assert parse_count("28M") == 28_000_000
    assert parse_count("1.5B") == 1_500_000_000 and parse_count("300") == 300
    assert parse_count("") is None and parse_count(None) is None
    with pytest.raises(ValueError, match="not a parameter count"):
        parse_count("lots")


def test_paper_frame():
    runs = paper_frame().set_index("run_name")
    assert len(runs) == 8 and (runs["source"] == "paper").all()
    row = runs.loc["llama-7b+ft(2m)+lora(math_0.25m)"]
    assert (row["method"], row["data"], row["base_run"]) == (
        "lora",
        "math_0.25m",
        "llama-7b+ft(2m)",
    )
    assert row["additional_params"] == 17_900_000 and row["hours_per_epoch"] == 2
    assert runs.loc["llama-7b+ft(0.6m)", "num_samples"] == 600_000


def test_import_is_idempotent_and_sits_beside_our_runs(store, store_file, tmp_path):
    uri = f"sqlite:///{store_file}"
    demo_sweep(store, tmp_path / "artifacts", experiment_name="lorabench")
    first = import_paper_runs(uri, "lorabench", artifact_location=str(tmp_path / "artifacts"))
    assert len(first) == 8 and all(r.created for r in first)
    again = import_paper_runs(uri, "lorabench", artifact_location=str(tmp_path / "artifacts"))
    assert not any(r.created for r in again)
    assert [r.run_id for r in again] == [r.run_id for r in first]
    exp = store.get_experiment_by_name("lorabench")
    paper = store.search_runs([exp.experiment_id], "tags.source = 'paper'")
    assert len(paper) == 8

    run = store.get_run(next(r.run_id for r in first if r.run_name == "llama-7b+lora(2m)"))
    assert run.info.run_name == PAPER_RUN_PREFIX + "llama-7b+lora(2m)"
    assert run.info.status == "FINISHED"
    assert run.data.tags["paper_run"] == "llama-7b+lora(2m)"
    assert run.data.tags["eval_judge"] == "openai:gpt-3.5-turbo"
    assert run.data.params["model.name"] == "llama-7b" and run.data.params["data.name"] == "2m"
    metrics = run.data.metrics
    assert metrics["eval/average_score"] == 0.609  # Table 4, as printed
    assert metrics["model/additional_params"] == 17_900_000
    assert metrics["train/hours_per_epoch"] == 7
    assert {f"eval/score/{c}" for c in CATEGORIES} <= set(metrics)

    # Our tables leave the reference runs out unless asked for.
    assert (load_runs(uri, "lorabench")["source"] == "ours").all()
    both = load_runs(uri, "lorabench", include_paper=True)
    assert (both["source"] == "paper").sum() == 8 and len(both) == 14
    row = both.set_index("run_name").loc[PAPER_RUN_PREFIX + "llama-13b+lora(2m)"]
    assert (row["base_model"], row["method"], row["base_params"]) == (
        "llama-13b",
        "lora",
        13_015_864_320,
    )


def test_import_creates_the_experiment_and_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    runs = import_paper_runs(uri, "elsewhere", artifact_location=str(tmp_path / "artifacts"))
    assert len(runs) == 8
    assert len(load_runs(uri, "elsewhere", include_paper=True)) == 8
