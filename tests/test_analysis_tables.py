"""Table 4 and the appendix table (lorabench.analysis.tables)."""

from __future__ import annotations

import pandas as pd
import pytest

from lorabench.analysis import reference
from lorabench.analysis.paper_runs import paper_frame
from lorabench.analysis.runs import (
    PARSE_FAILURES,
    TRUNCATED,
    count_column,
    frame_from_records,
    load_runs,
)
from lorabench.analysis.tables import (
    appendix_markdown,
    appendix_table,
    format_count,
    format_hours,
    parse_paper_model,
    table4,
    table4_markdown,
    write_tables,
)
from lorabench.errors import ConfigError
from lorabench.evaluation.eval_set import CATEGORIES
from tests.helpers.analysis import demo_run, experiment


def test_appendix_rows_reproduce_table4_averages():
    """The paper's appendix scores, through the tables, give Table 4's average column."""
    appendix = reference.appendix_scores()
    runs = frame_from_records(
        {
            "run_name": name,
            **{c: scores[c] for c in CATEGORIES},  # the categories only: no average given
            "evaluated": True,
            "judge": "openai:gpt-3.5-turbo",
            "eval_set": "belle",
            "source": "ours",
        }
        for name, scores in appendix.items()
    )
    table = table4(runs).set_index("run_name")
    printed = {row["run"]: float(row["average_score"]) for row in reference.table4()}
    assert set(table.index) == set(printed)
    for name, average in printed.items():
        assert table.loc[name, "average_score"] == pytest.approx(average, abs=0.001)
        assert table.loc[name, "paper_average_score"] == average
        assert abs(table.loc[name, "diff_average_score"]) <= 0.001


def test_paper_frame_through_both_tables():
    runs = paper_frame()
    t4, app = table4(runs), appendix_table(runs)
    assert len(t4) == len(app) == 8
    assert t4["diff_average_score"].abs().max() <= 0.001
    row = t4.set_index("run_name").loc["llama-13b+lora(2m)"]
    assert row["additional_params"] == row["paper_additional_params"] == 28_000_000
    assert row["hours_per_epoch"] == 10
    assert t4.set_index("run_name").loc["llama-7b+ft(2m)", "additional_params"] == 0
    # A paper row is not compared with itself per category, only on its recomputed average.
    assert app["diff_others"].isna().all() and app["diff_average_score"].notna().all()
    text = table4_markdown(t4)
    assert "| `llama-7b+lora(2m)` (paper) | 0.610 | 0.609 | +0.001 | 17.9M | 17.9M | 7 h |" in text


def synthetic(*rows: dict) -> pd.DataFrame:
    base = {"evaluated": True, "judge": "reference:f1", "eval_set": "demo", "source": "ours"}
    return frame_from_records({**base, **row} for row in rows)


def scores(value: float) -> dict[str, float]:
    return dict.fromkeys(CATEGORIES, value)


def test_exact_name_matching_by_default_and_paper_model_on_request():
    runs = synthetic(
        {"run_name": "tiny+lora(2m)", "base_model": "tiny", **scores(0.5)},
        {"run_name": "llama-7b+lora(2m)", "base_model": "llama-7b", **scores(0.6)},
        {"run_name": "tiny+ft(2m)+lora(math_0.25m)", "base_model": "tiny", **scores(0.7)},
    )
    exact = table4(runs).set_index("run_name")
    assert pd.isna(exact.loc["tiny+lora(2m)", "paper_average_score"])
    assert exact.loc["llama-7b+lora(2m)", "paper_average_score"] == 0.609
    assert exact.loc["llama-7b+lora(2m)", "diff_average_score"] == pytest.approx(-0.009)
    mapped = table4(runs, paper_model="llama-7b").set_index("run_name")
    assert mapped.loc["tiny+lora(2m)", "paper_run"] == "llama-7b+lora(2m)"
    assert mapped.loc["tiny+ft(2m)+lora(math_0.25m)", "paper_average_score"] == 0.729
    app = appendix_table(runs, paper_model="llama-7b").set_index("run_name")
    assert app.loc["tiny+lora(2m)", "diff_others"] == pytest.approx(0.5 - 0.364)


def test_paper_model_per_base_model():
    """The demo sweep of experiment=paper_table4 runs tiny for llama-7b, tiny-13b for 13b."""
    runs = synthetic(
        {"run_name": "tiny+lora(2m)", "base_model": "tiny", **scores(0.5)},
        {"run_name": "tiny-13b+lora(2m)", "base_model": "tiny-13b", **scores(0.5)},
        {"run_name": "other+lora(2m)", "base_model": "other", **scores(0.5)},
    )
    mapping = parse_paper_model("tiny:llama-7b, tiny-13b:llama-13b")
    assert mapping == {"tiny": "llama-7b", "tiny-13b": "llama-13b"}
    table = table4(runs, paper_model=mapping).set_index("run_name")
    assert table.loc["tiny+lora(2m)", "paper_run"] == "llama-7b+lora(2m)"
    assert table.loc["tiny-13b+lora(2m)", "paper_run"] == "llama-13b+lora(2m)"
    assert pd.isna(table.loc["other+lora(2m)", "paper_run"])
    assert parse_paper_model("llama-7b") == "llama-7b" and parse_paper_model(None) is None
    with pytest.raises(ConfigError, match="paper_model"):
        parse_paper_model("tiny:")


def test_mixed_judges_get_one_marked_table_each():
    runs = synthetic(
        {"run_name": "tiny+lora(2m)", **scores(0.5)},
        {"run_name": "tiny+ft(2m)", **scores(0.6)},
        {"run_name": "llama-7b+lora(2m)", "judge": "openai:gpt-3.5-turbo", "eval_set": "belle"}
        | scores(0.6),
        {"run_name": "llama-7b+ft(2m)", "judge": "openai:gpt-4o", "eval_set": "belle"}
        | scores(0.7),
    )
    t4 = table4(runs)
    assert len(t4) == 4 and t4["run_name"].is_unique
    text = table4_markdown(t4)
    assert "**3 different judges / eval sets.**" in text
    assert text.count("### Judge ") == 3
    assert "### Judge `reference:f1`, eval set `demo` (2 runs)" in text
    assert "### Judge `openai:gpt-4o`, eval set `belle` (1 run)" in text
    # Δ against the paper under another judge is flagged; under the paper's own judge it is not.
    gpt4o = text.split("### Judge `openai:gpt-4o`")[1]
    assert "a different scale" in gpt4o
    same = text.split("### Judge `openai:gpt-3.5-turbo`")[1].split("### ")[0]
    assert "a different scale" not in same
    # Each section holds only its own runs.
    demo = text.split("### Judge `reference:f1`")[1].split("### ")[0]
    assert "tiny+lora(2m)" in demo and "llama-7b" not in demo


def test_headings_name_the_served_judge_model_and_prompts():
    prompts = "belle:6032824adcd7 belle(translation=paper)"
    served = {
        "judge": "openai:gpt-3.5-turbo",
        "eval_set": "belle",
        "judge_model": "gpt-3.5-turbo-0125",
        "judge_prompts": prompts,
    }
    runs = synthetic(
        {"run_name": "llama-7b+lora(2m)", **served, **scores(0.6)},
        {"run_name": "llama-7b+ft(2m)", **served, **scores(0.7)},
        # An offline judge reports itself as its model and its prompts.
        {
            "run_name": "tiny+lora(2m)",
            **dict.fromkeys(("judge_model", "judge_prompts"), "reference:f1"),
        }
        | scores(0.5),
    )
    t4 = table4(runs)
    for text in (table4_markdown(t4), appendix_markdown(appendix_table(runs))):
        assert (
            "### Judge `openai:gpt-3.5-turbo` (served by `gpt-3.5-turbo-0125`; prompts "
            f"`{prompts}`), eval set `belle` (2 runs)"
        ) in text
        assert "### Judge `reference:f1`, eval set `demo` (1 run)" in text
        assert "These runs differ" not in text
    row = t4.set_index("run_name").loc["llama-7b+ft(2m)"]
    assert (row["judge_model"], row["judge_prompts"]) == ("gpt-3.5-turbo-0125", prompts)


def test_different_served_models_within_a_section_are_listed():
    runs = synthetic(
        {"run_name": "tiny+lora(2m)", "judge_model": "gpt-3.5-turbo-0125", **scores(0.5)},
        {"run_name": "tiny+ft(2m)", "judge_model": "gpt-3.5-turbo-0125, gpt-3.5-turbo-0613"}
        | scores(0.6),
        {"run_name": "tiny+lora(4m)", "judge_model": "gpt-3.5-turbo-0125", **scores(0.6)},
        {"run_name": "tiny+ft(4m)", **scores(0.7)},
    )
    text = table4_markdown(table4(runs))
    assert "(served by `gpt-3.5-turbo-0125`, `gpt-3.5-turbo-0613`)" in text
    assert text.count("### Judge ") == 1  # still one section: one judge, one eval set
    assert (
        "> **These runs differ in the model the judge's server reported**: "
        "`gpt-3.5-turbo-0125, gpt-3.5-turbo-0613` for `tiny+ft(2m)`; "
        "`gpt-3.5-turbo-0125` for `tiny+lora(2m)`, `tiny+lora(4m)`; "
        "not recorded for `tiny+ft(4m)`."
    ) in text
    assert "differ in the judge's prompts" not in text


def counts(failures: dict[str, int], cut: dict[str, int]) -> dict[str, int]:
    """Count columns as an evaluation logs them: every category, zeros included, and totals."""
    return {
        count_column(PARSE_FAILURES): sum(failures.values()),
        count_column(TRUNCATED): sum(cut.values()),
        **{count_column(PARSE_FAILURES, c): failures.get(c, 0) for c in CATEGORIES},
        **{count_column(TRUNCATED, c): cut.get(c, 0) for c in CATEGORIES},
    }


def test_appendix_counts_unscored_replies_and_cut_answers_per_category():
    runs = synthetic(
        {"run_name": "tiny+lora(2m)", **scores(0.5)}
        | counts({"rewrite": 2, "others": 1}, {"generation": 4, "rewrite": 1}),
        {"run_name": "tiny+ft(2m)", **scores(0.6)},  # logged no counts
        {"run_name": "tiny+ft(4m)", "evaluated": False, "judge": None, "eval_set": None},
    )
    app = appendix_table(runs).set_index("run_name")
    assert app.loc["tiny+lora(2m)", "truncated_answers_generation"] == 4
    assert pd.isna(app.loc["tiny+ft(2m)", "parse_failures"])
    text = appendix_markdown(appendix_table(runs))
    section, not_evaluated = text.split("### Not evaluated")
    assert "**Could not be scored / cut answers.**" in section
    assert "| Run | Total | others | rewrite | classification | generation |" in section
    assert "| `tiny+lora(2m)` | 3 / 5 | 1 / 0 | 2 / 1 | 0 / 0 | 0 / 4 | 0 / 0 |" in section
    assert "| `tiny+ft(2m)` | " + " | ".join([""] * 10) + " |" in section  # blank, not 0
    assert "Could not be scored" not in not_evaluated
    # No run of a section logged any count: no such table (the paper reports none).
    assert "Could not be scored" not in appendix_markdown(appendix_table(paper_frame()))
    assert "Could not be scored" not in table4_markdown(table4(runs))


def test_runs_without_eval_metrics_are_marked_not_scored():
    runs = synthetic(
        {"run_name": "tiny+lora(2m)", **scores(0.5)},
        {
            "run_name": "tiny+ft(2m)",
            "evaluated": False,
            "judge": None,
            "eval_set": None,
            "hours_per_epoch": 0.01,
        },
    )
    t4, app = table4(runs), appendix_table(runs)
    assert len(t4) == len(app) == 2
    text = table4_markdown(t4)
    assert "### Not evaluated (1 run)" in text and "python evaluate.py run=" in text
    assert "| `tiny+ft(2m)` | not evaluated |" in text and "36 s" in text
    assert "| `tiny+ft(2m)` | not evaluated |" in appendix_markdown(app)


def test_nothing_evaluated_says_so():
    runs = synthetic({"run_name": "tiny+ft(2m)", "evaluated": False, "judge": None})
    text = table4_markdown(table4(runs))
    assert "No run has evaluation metrics" in text and "### Not evaluated (1 run)" in text


def test_undefined_average_is_explained():
    partial = {c: 0.5 for c in CATEGORIES if c not in ("generation", "brainstorming")}
    runs = synthetic({"run_name": "tiny+lora(2m)", **partial})
    t4 = table4(runs)
    assert pd.isna(t4["average_score"].iloc[0])
    assert t4["missing_categories"].iloc[0] == "generation;brainstorming"
    text = table4_markdown(t4)
    assert "| `tiny+lora(2m)` | undefined |" in text
    assert "no score for generation, brainstorming" in text


def test_write_tables_one_row_per_run(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    for method in ("lora", "ft"):
        for data in ("0.6m", "2m"):
            demo_run(store, exp, method, data)
    demo_run(store, exp, "ft", "4m", judge=None)
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo")
    files = write_tables(runs, tmp_path / "out")
    for name in ("table4.csv", "appendix.csv", "runs.csv"):
        assert len(pd.read_csv(files[name])) == 5
    for name in ("table4.md", "appendix.md"):
        rows = [line for line in files[name].read_text().splitlines() if line.startswith("| `")]
        assert len(rows) == 5


def test_formatting():
    assert format_count(17_891_328) == "17.9M" and format_count(28e6) == "28M"
    assert format_count(0) == "0" and format_count(11_264) == "11.3K" and format_count(None) == ""
    assert format_hours(7) == "7 h" and format_hours(0.5) == "30 min"
    assert format_hours(0.001) == "3.6 s" and format_hours(float("nan")) == ""
