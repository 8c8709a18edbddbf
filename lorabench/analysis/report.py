"""Every table and figure of the study from MLflow, beside the paper's numbers.

    python -m lorabench.analysis experiment=lorabench-demo out=reports/demo
    python -m lorabench.analysis parent_run=<sweep run id> experiment=lorabench out=reports/sweep
    python -m lorabench.analysis paper=true out=reports/paper       # the paper's rows alone
    python -m lorabench.analysis import_paper=true experiment=lorabench   # reference runs in MLflow

A Hydra app (`conf/report.yaml`): key=value overrides of `ReportOptions`
(lorabench/config/schema.py), `--help`, `--cfg job`, `-m` for several reports. The store is
`tracking_uri=...`, else MLFLOW_TRACKING_URI, else `sqlite:///mlruns/mlflow.db`. The output
directory receives `report.md` (tables and figures in one page), `table4.{md,csv}`,
`appendix.{md,csv}`, `runs.csv`, `figures/*.{png,svg}` and, from the runs' item scores,
`statistics/` (replicates, paired comparisons, fitted curves, judge agreement, length;
`"pairs=['A vs B','C vs D']"` adds comparisons to the paper's) and, for runs whose weight
update was measured (`anatomy/layers.csv`), the anatomy section with `figures/anatomy_*`; for
sweeps that judged their runs head to head (`sweep.pairwise=true`: `pairwise/verdicts.csv` on
the sweep's parent), the head-to-head section with `figures/pairwise_*`; for runs
with benchmark results (`benchmarks/` artifacts, `eval.benchmarks`), the learned/forgotten
section with `figures/forgetting` and `forgetting/*.csv`; the judge-cost section from the runs'
and the sweeps' cost ledgers (`judge/<judge>/*`); with `parent_run` it is also logged as
artifacts (`analysis/`) of that run, the sweep's parent (`log_to=none` to skip).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lorabench.analysis.anatomy import load_anatomy_layers
from lorabench.analysis.anatomy_section import write_anatomy
from lorabench.analysis.benchmarks import load_subjects
from lorabench.analysis.cost_section import costs_markdown, load_judge_costs
from lorabench.analysis.figures import FigureFiles, log_to_run, write_figures
from lorabench.analysis.findings import write_findings
from lorabench.analysis.forgetting import Forgetting, analyse
from lorabench.analysis.forgetting_section import has_results, write_forgetting
from lorabench.analysis.items import load_item_scores
from lorabench.analysis.learning_rates import shared_learning_rate_warnings
from lorabench.analysis.pairwise_section import load_pairwise_verdicts, write_pairwise
from lorabench.analysis.paper_runs import import_paper_runs, paper_frame
from lorabench.analysis.runs import BASE_METHOD, load_runs
from lorabench.analysis.statistics import Statistics, write_statistics
from lorabench.analysis.tables import PaperModel, parse_paper_model, write_tables
from lorabench.config.schema import ReportOptions, StatsConfig, TrackingConfig

NO_RUN = "none"
"""`log_to=none`: log the report to no run (not even the parent_run)."""


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the project's local store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or TrackingConfig.tracking_uri


@dataclass
class ReportFiles:
    """What `write_report` wrote."""

    out_dir: Path
    report: Path
    tables: dict[str, Path]
    figures: FigureFiles
    warnings: list[str] = field(default_factory=list)
    """Comparisons of methods at one learning rate unusual for one of them."""
    statistics: Statistics | None = None

    @property
    def files(self) -> list[Path]:
        stats = self.statistics.files if self.statistics else []
        return [self.report, *self.tables.values(), *self.figures.files, *stats]


def write_report(
    runs: pd.DataFrame,
    out_dir: str | Path,
    *,
    title: str = "lorabench report",
    overlay_paper: bool = True,
    paper_model: PaperModel = None,
    items: pd.DataFrame | None = None,
    stats: StatsConfig | None = None,
    anatomy: pd.DataFrame | None = None,
    pairwise: pd.DataFrame | None = None,
    forgetting: Forgetting | None = None,
    costs: pd.DataFrame | None = None,
) -> ReportFiles:
    """Write every table and figure of `runs` (runs.load_runs or paper_runs.paper_frame) into
    `out_dir`, with `report.md` gathering them in one page; with `items` (the runs' item
    scores, `items.load_item_scores`) the statistics sections too; with `anatomy` (the runs'
    per-matrix weight-update measurements, `anatomy.load_anatomy_layers`) and rows in it, the
    anatomy section and its figures; with `pairwise` (head-to-head item verdicts,
    `pairwise_section.load_pairwise_verdicts`) the head-to-head section (saying none was judged
    when it is empty), its figures, and the pairs' win rates under the findings; with
    `forgetting` (`forgetting.analyse`) and a run with benchmark results in it, the
    learned/forgotten section, its figure, and its finding after the paper's; with `costs` (the
    runs' judge cost ledgers, `cost_section.load_judge_costs`) the judge-cost section."""
    out = Path(out_dir)
    tables = write_tables(runs, out, paper_model=paper_model)
    figures = write_figures(runs, out / "figures", overlay_paper=overlay_paper)
    lines = _header(runs, title, paper_model)
    warnings = shared_learning_rate_warnings(runs)
    if warnings:
        lines += ["", "## Learning rates", "", *(f"- {w}" for w in warnings)]
    lines += ["", tables["table4.md"].read_text(encoding="utf-8")]
    benchmarked = forgetting is not None and has_results(forgetting)
    beyond = [forgetting.finding] if benchmarked else []
    lines += [write_findings(runs, items, out, stats, pairwise, beyond)]
    lines += [tables["appendix.md"].read_text(encoding="utf-8"), "## Figures", ""]
    lines += figures.markdown_lines()
    if pairwise is not None:
        # With no verdicts at all the section says so once; no figure is reported missing.
        _section(lines, figures, write_pairwise(pairwise, runs, out, stats), bool(len(pairwise)))
    if anatomy is not None and len(anatomy):
        _section(lines, figures, write_anatomy(anatomy, runs, out))
    if benchmarked:
        part = write_forgetting(forgetting, out)
        _section(lines, figures, part)
        tables.update(part.tables)
    if costs is not None:
        lines += ["", costs_markdown(costs)]
    statistics = None
    if items is not None:
        statistics = write_statistics(runs, items, out, stats or StatsConfig())
        lines += ["", statistics.markdown]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ReportFiles(out, report, tables, figures, warnings, statistics)


def _section(lines: list[str], figures: FigureFiles, part: Any, skipped: bool = True) -> None:
    """Add a section (`part.markdown`) to the report's lines and its figures (`part.figures`) to
    the report's: listed with the others (the files logged, the reasons printed) once the
    report's own figures section is written, since the section shows its figures itself."""
    lines += ["", part.markdown]
    figures.files += part.figures.files
    if skipped:
        figures.skipped.update(part.figures.skipped)


def _header(runs: pd.DataFrame, title: str, paper_model: PaperModel) -> list[str]:
    """The report's title and where its runs come from (and what they are compared with)."""
    lines = [f"# {title}", ""]
    source = runs.attrs.get("source", "the paper's reported numbers (Table 4 and appendix)")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"{len(runs)} runs from {source}, {stamp}."]
    excluded = runs.attrs.get("excluded") or {}
    if excluded:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(excluded.items()))
        lines += [f"Left out (did not finish): {counts}."]
    if paper_model:
        pairs = (
            paper_model.items() if isinstance(paper_model, dict) else [("every model", paper_model)]
        )
        stands = ", ".join(f"{ours} as `{theirs}`" for ours, theirs in pairs)
        lines += [f"Compared with the paper's rows of the same recipe, reading {stands}."]
    return lines


def run(options: ReportOptions) -> ReportFiles | None:
    """Do what the options ask; returns the report written (None for an import alone)."""
    uri = options.tracking_uri or default_tracking_uri()
    if options.import_paper:
        imported = import_paper_runs(uri, options.experiment)
        created = sum(r.created for r in imported)
        print(
            f"paper runs in experiment {options.experiment!r} of {uri}: "
            f"{created} imported, {len(imported) - created} already there"
        )
        if not options.paper and options.out is None:
            return None
    if options.paper:
        runs = paper_frame()
        out = options.out or "reports/paper"
        title = "The paper's reported runs (BELLE, Table 4 and appendix)"
        files = write_report(runs, out, title=title, overlay_paper=False)
    else:
        files = _report_of_runs(options, uri)
    print(f"wrote {len(files.files)} files to {files.out_dir} (open {files.report})")
    for name, reason in files.figures.skipped.items():
        print(f"figure {name} not drawn: {reason}")
    for warning in files.warnings:
        print(f"warning: {warning}")
    log_to = options.log_to if options.log_to is not None else options.parent_run
    if log_to and log_to != NO_RUN and not options.paper:
        log_to_run(uri, log_to, files.out_dir)
        print(f"logged them as artifacts analysis/ of run {log_to}")
    return files


def _report_of_runs(options: ReportOptions, uri: str) -> ReportFiles:
    """The report of the experiment's (or the sweep's) runs in the MLflow store at `uri`."""
    paper_model = parse_paper_model(options.paper_model)  # its errors before any read
    runs = load_runs(
        uri,
        options.experiment,
        parent_run_id=options.parent_run,
        include_paper=options.include_paper,
    )
    title = f"lorabench report: experiment {options.experiment}"
    if options.parent_run:
        title += f", sweep {options.parent_run}"
    ours = runs[runs["source"] != "paper"]
    tuned = ours[ours["method"] != BASE_METHOD]  # a base row has no weight update to measure
    stats = StatsConfig(pairs=list(options.pairs))
    return write_report(
        runs,
        options.out or f"reports/{options.experiment}",
        title=title,
        overlay_paper=options.overlay,
        paper_model=paper_model,
        items=load_item_scores(uri, list(ours["run_id"])) if options.statistics else None,
        stats=stats,
        anatomy=load_anatomy_layers(uri, tuned["run_id"]),
        pairwise=load_pairwise_verdicts(uri, options.experiment, options.parent_run),
        forgetting=analyse(load_subjects(uri, tuned), stats),
        costs=load_judge_costs(uri, options.experiment, ours, options.parent_run),
    )
