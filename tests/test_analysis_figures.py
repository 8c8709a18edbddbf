"""The figures (lorabench.analysis.figures): real PNG and SVG files, one set per judge."""

from __future__ import annotations

import pandas as pd
import pytest

from lorabench.analysis.figures import (
    FIGURES,
    log_to_run,
    pareto_front,
    plot_cost,
    plot_data_scaling,
    write_figures,
)
from lorabench.analysis.paper_runs import paper_frame
from lorabench.analysis.runs import AnalysisError, frame_from_records, load_runs
from tests.helpers.analysis import assert_real_image, demo_run, demo_sweep, experiment


def test_demo_figures_with_the_paper_overlaid(store, store_file, tmp_path):
    demo_sweep(store, tmp_path / "artifacts")
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo")
    result = write_figures(runs, tmp_path / "figures")
    assert result.skipped == {}
    assert sorted(p.name for p in result.files) == sorted(
        f"{name}.{fmt}" for name in FIGURES for fmt in ("png", "svg")
    )
    for path in result.files:
        assert_real_image(path)
    svg = (tmp_path / "figures" / "data_scaling.svg").read_text()
    for text in ("tiny", "llama-7b (paper)", "LoRA", "FT", "ours", "paper (openai:gpt-3.5-turbo"):
        assert text in svg  # drawn as glyph paths, each text kept in a comment


def test_paper_rows_alone(tmp_path):
    result = write_figures(paper_frame(), tmp_path)
    # The paper reports no GPU hours: that figure is skipped with its reason, not drawn empty.
    assert result.skipped == {
        "cost_gpu_hours": "score against cost: no run with an average score and gpu_hours"
    }
    assert len(result.files) == 2 * (len(FIGURES) - 1)
    for path in result.files:
        assert_real_image(path)


def test_one_set_of_figures_per_judge(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    for data in ("0.6m", "2m"):
        demo_run(store, exp, "lora", data)
        demo_run(store, exp, "ft", data, judge="openai:gpt-4o", eval_set="belle")
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo")
    result = write_figures(runs, tmp_path / "figures", overlay_paper=False, formats=("png",))
    names = sorted(p.name for p in result.files)
    assert "data_scaling__judge-reference-f1-on-eval-set-demo.png" in names
    assert "data_scaling__judge-openai-gpt-4o-on-eval-set-belle.png" in names
    assert len(names) == 2 * len(FIGURES)


def test_no_eval_metrics_draws_nothing_and_says_why(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    demo_run(store, exp, "lora", "2m", judge=None)
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo")
    result = write_figures(runs, tmp_path / "figures")
    assert result.files == []
    assert result.skipped == dict.fromkeys(FIGURES, "no run has evaluation metrics")
    with pytest.raises(AnalysisError, match="no single-stage run with an average score"):
        plot_data_scaling(runs)


def test_pareto_front():
    runs = pd.DataFrame(
        {
            "run_name": list("abcdef"),
            "hours_per_epoch": [1.0, 2.0, 2.0, 3.0, 4.0, None],
            "average_score": [0.5, 0.4, 0.6, 0.6, 0.7, 0.9],
        }
    )
    front = pareto_front(runs, "hours_per_epoch")
    # b is beaten by a; d ties c's score at a higher cost; f has no cost.
    assert list(front["run_name"]) == ["a", "c", "e"]


def test_cost_rejects_an_unknown_measure():
    with pytest.raises(ValueError, match="cost must be one of"):
        plot_cost(paper_frame(), cost="dollars")


def test_partial_scores_still_make_a_heatmap(tmp_path):
    runs = frame_from_records(
        [
            {
                "run_name": "tiny+lora(2m)",
                "others": 0.3,
                "rewrite": 0.4,
                "evaluated": True,
                "judge": "reference:f1",
                "eval_set": "belle",
                "source": "ours",
            }
        ]
    )
    result = write_figures(runs, tmp_path, formats=("png",))
    assert [p.name for p in result.files] == ["categories.png"]
    assert set(result.skipped) == set(FIGURES) - {"categories"}


def test_figures_logged_as_artifacts_of_the_sweep(store, store_file, tmp_path):
    parent, _ = demo_sweep(store, tmp_path / "artifacts")
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo", parent_run_id=parent)
    write_figures(runs, tmp_path / "report" / "figures", formats=("png",))
    log_to_run(f"sqlite:///{store_file}", parent, tmp_path / "report")
    logged = [a.path for a in store.list_artifacts(parent, "analysis/figures")]
    assert "analysis/figures/data_scaling.png" in logged
