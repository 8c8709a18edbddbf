"""The study's tables, figures, findings and statistics from MLflow, beside the paper's reported
numbers (`reference/`); `python -m lorabench.analysis` writes the report (`report`).

    runs = load_runs("sqlite:///mlruns/mlflow.db", "lorabench-demo")  # tidy table, 1 row a run
    write_tables(runs, "reports/demo")      # Table 4 and the appendix table, Markdown and CSV
    write_figures(runs, "reports/demo/figures")                   # PNG and SVG
    import_paper_runs("sqlite:///mlruns/mlflow.db", "lorabench")  # the paper's rows in MLflow
"""

from lorabench.analysis.figures import (
    log_to_run,
    pareto_front,
    plot_category_heatmap,
    plot_cost,
    plot_data_scaling,
    plot_model_size,
    write_figures,
)
from lorabench.analysis.items import load_item_scores
from lorabench.analysis.learning_rates import best_learning_rates, shared_learning_rate_warnings
from lorabench.analysis.paired import compare_named, comparison_table
from lorabench.analysis.paper_runs import import_paper_runs, paper_frame
from lorabench.analysis.runs import AnalysisError, load_runs, project_root
from lorabench.analysis.tables import appendix_table, table4, write_tables

__all__ = [
    "AnalysisError",
    "appendix_table",
    "best_learning_rates",
    "compare_named",
    "comparison_table",
    "import_paper_runs",
    "load_item_scores",
    "load_runs",
    "log_to_run",
    "paper_frame",
    "pareto_front",
    "plot_category_heatmap",
    "plot_cost",
    "plot_data_scaling",
    "plot_model_size",
    "project_root",
    "shared_learning_rate_warnings",
    "table4",
    "write_figures",
    "write_tables",
]
