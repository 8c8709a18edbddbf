"""`python -m lorabench.analysis`: every table and figure of an experiment, or the paper's alone."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException

from lorabench import contract
from lorabench.analysis.figures import FIGURES
from lorabench.analysis.report import default_tracking_uri, run
from lorabench.config import report_options
from lorabench.errors import ConfigError, LorabenchError
from tests.helpers.analysis import assert_real_image, demo_run, demo_sweep, eval_counts, experiment
from tests.helpers.cli import report_cli


def test_report_of_a_sweep_logged_to_its_parent(store, store_file, tmp_path):
    parent, children = demo_sweep(store, tmp_path / "artifacts")
    out = tmp_path / "report"
    result = report_cli(
        "experiment=lorabench-demo",
        f"tracking_uri=sqlite:///{store_file}",
        f"parent_run={parent}",
        f"out={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"logged them as artifacts analysis/ of run {parent}" in result.stdout
    for name in ("table4.csv", "appendix.csv", "runs.csv"):
        assert len(pd.read_csv(out / name)) == len(children)
    for name in FIGURES:
        assert_real_image(out / "figures" / f"{name}.png")
        assert_real_image(out / "figures" / f"{name}.svg")
    page = (out / "report.md").read_text()
    assert "## Table 4" in page and "![data_scaling](figures/data_scaling.png)" in page
    logged = {a.path for a in store.list_artifacts(parent, "analysis")}
    assert {"analysis/report.md", "analysis/table4.csv", "analysis/figures"} <= logged


def test_report_shows_the_served_judge_and_what_could_not_be_scored(
    store, store_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    judge = {"judge": "openai:gpt-3.5-turbo", "eval_set": "belle"}
    demo_run(
        store,
        exp,
        "lora",
        "2m",
        **judge,
        more_metrics=eval_counts({"rewrite": 2}, {"generation": 3, "others": 1}),
        more_tags={
            contract.TAG_EVAL_JUDGE_MODEL: "gpt-3.5-turbo-0125",
            contract.TAG_EVAL_JUDGE_PROMPTS: "belle(translation=paper)",
        },
    )
    demo_run(store, exp, "ft", "2m", **judge)  # evaluated before either was recorded
    uri = f"tracking_uri=sqlite:///{store_file}"
    run(report_options(["experiment=lorabench-demo", uri, "out=rep", "overlay=false"]))
    page = (tmp_path / "rep" / "report.md").read_text()
    heading = (
        "### Judge `openai:gpt-3.5-turbo` (served by `gpt-3.5-turbo-0125`; prompts "
        "`belle(translation=paper)`), eval set `belle` (2 runs)"
    )
    assert page.count(heading) == 2  # Table 4 and the appendix
    assert "differ in the model the judge's server reported**: `gpt-3.5-turbo-0125` for " in page
    assert "not recorded for `tiny+ft(2m)`" in page
    assert "| `tiny+lora(2m)` | 2 / 4 | 0 / 1 | 2 / 0 | 0 / 0 | 0 / 3 | 0 / 0 |" in page
    assert "| `tiny+ft(2m)` | " + " | ".join([""] * 10) + " |" in page
    appendix = pd.read_csv(tmp_path / "rep" / "appendix.csv").set_index("run_name")
    assert appendix.loc["tiny+lora(2m)", "parse_failures_rewrite"] == 2
    assert pd.isna(appendix.loc["tiny+ft(2m)", "truncated_answers"])


def test_paper_alone_needs_no_mlflow(tmp_path):
    result = report_cli("paper=true", "out=paper", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "paper" / "table4.csv")
    assert len(table) == 8 and table["diff_average_score"].abs().max() <= 0.001
    assert "cost_gpu_hours not drawn" in result.stdout
    assert_real_image(tmp_path / "paper" / "figures" / "data_scaling.png")
    assert not (tmp_path / "mlruns").exists()


def test_import_paper_twice(store_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["import_paper=true", "experiment=lorabench", f"tracking_uri=sqlite:///{store_file}"]
    run(report_options(args))
    run(report_options(args))
    out = capsys.readouterr().out
    assert "8 imported, 0 already there" in out and "0 imported, 8 already there" in out
    assert not (tmp_path / "reports").exists()  # an import alone writes no report


def test_clear_errors(store, store_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"tracking_uri=sqlite:///{store_file}"
    options = report_options(["experiment=lorabench-demo", uri])
    with pytest.raises(LorabenchError, match="no experiment 'lorabench-demo'"):
        run(options)
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    with pytest.raises(LorabenchError, match="has no finished run"):
        run(options)
    with pytest.raises(ConfigCompositionException, match="Could not override 'colour'"):
        report_options(["colour=red"])
    with pytest.raises(ConfigError, match="pairs='A with B': each pair must read `run A vs run B`"):
        report_options(["pairs=[A with B]"])
    # Runs without eval metrics: tables that say so, figures skipped with the reason.
    demo_run(store, exp, "lora", "2m", judge=None)
    run(report_options(["experiment=lorabench-demo", uri, "out=rep"]))
    assert "data_scaling not drawn: no run has evaluation metrics" in capsys.readouterr().out
    assert "No run has evaluation metrics" in (tmp_path / "rep" / "table4.md").read_text()


def test_options_are_hydra_overrides():
    options = report_options(
        ["paper=TRUE", "overlay=no", "paper_model=llama-7b", "log_to=none", "pairs=['a vs b']"]
    )
    assert options.paper and not options.overlay and options.paper_model == "llama-7b"
    assert options.log_to == "none" and options.experiment == "lorabench"
    assert options.pairs == ["a vs b"] and options.tracking_uri is None
    per_model = report_options(["paper_model='tiny:llama-7b,tiny-13b:llama-13b'"])
    assert per_model.paper_model == "tiny:llama-7b,tiny-13b:llama-13b"
    with pytest.raises(ConfigCompositionException, match="paper=maybe"):
        report_options(["paper=maybe"])


def test_tracking_uri_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow-server:5000")
    assert default_tracking_uri() == "http://mlflow-server:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert default_tracking_uri() == "sqlite:///mlruns/mlflow.db"


def test_log_to_none_logs_a_sweeps_report_to_no_run(store, store_file, tmp_path):
    parent, _ = demo_sweep(store, tmp_path / "artifacts")
    uri = f"tracking_uri=sqlite:///{store_file}"
    args = ["experiment=lorabench-demo", uri, f"parent_run={parent}", f"out={tmp_path}/rep"]
    run(report_options([*args, "statistics=false", "log_to=none"]))
    assert (tmp_path / "rep" / "report.md").is_file()
    assert store.list_artifacts(parent, "analysis") == []
