"""Every table and figure of the study from MLflow, beside the paper's numbers.

    python -m lorabench.analysis experiment=lorabench-demo out=reports/demo
    python -m lorabench.analysis parent_run=<sweep run id> experiment=lorabench out=reports/sweep
    python -m lorabench.analysis paper=true out=reports/paper       # the paper's rows alone
    python -m lorabench.analysis import_paper=true experiment=lorabench   # reference runs in MLflow

Arguments are key=value (like the project's Hydra overrides); `--help` lists them. The store is
`tracking_uri=...`, else MLFLOW_TRACKING_URI, else `sqlite:///mlruns/mlflow.db`. The output
directory receives `report.md` (tables and figures in one page), `table4.{md,csv}`,
`appendix.{md,csv}`, `runs.csv`, `figures/*.{png,svg}` and, from the runs' item scores,
`statistics/` (replicates, paired comparisons, fitted curves, judge agreement, length;
`pairs="A vs B; C vs D"` adds comparisons to the paper's); with `parent_run` it is also logged
as artifacts (`analysis/`) of that run, the sweep's parent (`log_to=none` to skip).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from lorabench.analysis.figures import FigureFiles, log_to_run, write_figures
from lorabench.analysis.findings import write_findings
from lorabench.analysis.items import load_item_scores
from lorabench.analysis.learning_rates import shared_learning_rate_warnings
from lorabench.analysis.paper_runs import import_paper_runs, paper_frame
from lorabench.analysis.runs import load_runs
from lorabench.analysis.statistics import Statistics, write_statistics
from lorabench.analysis.tables import PaperModel, parse_paper_model, write_tables
from lorabench.config.schema import StatsConfig, TrackingConfig, check_stats
from lorabench.errors import ConfigError, LorabenchError


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the project's local store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or TrackingConfig.tracking_uri


@dataclass
class ReportOptions:
    """The command's arguments (key=value)."""

    experiment: str = "lorabench"
    """MLflow experiment to read (`lorabench-demo` for the demo profile) or import into."""
    out: str | None = None
    """Output directory; default `reports/<experiment>` (`reports/paper` with paper=true)."""
    tracking_uri: str = field(default_factory=default_tracking_uri)
    parent_run: str | None = None
    """Only the runs of this sweep (its parent run's id); the report is logged to that run."""
    log_to: str | None = None
    """Run id to log the report's files to as artifacts; default the parent_run, `none` not."""
    paper: bool = False
    """Render the paper's own 8 rows alone (no MLflow needed)."""
    overlay: bool = True
    """Draw the paper's points on the figures."""
    paper_model: str | None = None
    """Compare runs with the paper's rows of this base model (`llama-7b`), or per base model
    (`tiny:llama-7b,tiny-13b:llama-13b`, the demo's stand-ins); default: identical names only."""
    include_paper: bool = False
    """Include the paper's reference runs imported into the experiment as rows."""
    import_paper: bool = False
    """Import the paper's 8 rows into the experiment as reference runs (tag source=paper)."""
    statistics: bool = True
    """Add the statistics sections (reads every run's judgements from MLflow)."""
    pairs: str | None = None
    """Comparisons to add to the paper's: `run A vs run B; run C vs run D` (run or group names)."""


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_args(argv: Sequence[str]) -> ReportOptions:
    """key=value arguments into ReportOptions; unknown keys and bad booleans name the key."""
    known = {f.name: f for f in fields(ReportOptions)}
    values: dict[str, object] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("-").replace("-", "_")
        if not sep or key not in known:
            raise ConfigError(
                f"{arg!r}: expected key=value with key one of {', '.join(known)} (see --help)"
            )
        if "bool" in str(known[key].type):
            if value.lower() not in _BOOLS:
                raise ConfigError(f"{key}: expected true or false, got {value!r}")
            values[key] = _BOOLS[value.lower()]
        else:
            values[key] = None if value.lower() in ("", "none", "null") else value
    return ReportOptions(**values)


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
) -> ReportFiles:
    """Write every table and figure of `runs` (runs.load_runs or paper_runs.paper_frame) into
    `out_dir`, with `report.md` gathering them in one page; with `items` (the runs' item
    scores, `items.load_item_scores`) the statistics sections too."""
    out = Path(out_dir)
    tables = write_tables(runs, out, paper_model=paper_model)
    figures = write_figures(runs, out / "figures", overlay_paper=overlay_paper)
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
    warnings = shared_learning_rate_warnings(runs)
    if warnings:
        lines += ["", "## Learning rates", "", *(f"- {w}" for w in warnings)]
    lines += ["", tables["table4.md"].read_text(encoding="utf-8")]
    lines += [write_findings(runs, items, out, stats)]
    lines += [tables["appendix.md"].read_text(encoding="utf-8"), "## Figures", ""]
    for path in figures.files:
        if path.suffix == ".png":
            lines += [f"![{path.stem}](figures/{path.name})", ""]
    for name, reason in figures.skipped.items():
        lines += [f"- `{name}` not drawn: {reason}"]
    statistics = None
    if items is not None:
        statistics = write_statistics(runs, items, out, stats or StatsConfig())
        lines += ["", statistics.markdown]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ReportFiles(out, report, tables, figures, warnings, statistics)


def run(options: ReportOptions) -> ReportFiles | None:
    """Do what the options ask; returns the report written (None for an import alone)."""
    if options.import_paper:
        imported = import_paper_runs(options.tracking_uri, options.experiment)
        created = sum(r.created for r in imported)
        print(
            f"paper runs in experiment {options.experiment!r} of {options.tracking_uri}: "
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
        runs = load_runs(
            options.tracking_uri,
            options.experiment,
            parent_run_id=options.parent_run,
            include_paper=options.include_paper,
        )
        out = options.out or f"reports/{options.experiment}"
        title = f"lorabench report: experiment {options.experiment}"
        if options.parent_run:
            title += f", sweep {options.parent_run}"
        stats = StatsConfig(
            pairs=[p.strip() for p in (options.pairs or "").split(";") if p.strip()]
        )
        check_stats(stats)
        ours = runs[runs["source"] != "paper"]
        files = write_report(
            runs,
            out,
            title=title,
            overlay_paper=options.overlay,
            paper_model=parse_paper_model(options.paper_model),
            items=load_item_scores(options.tracking_uri, list(ours["run_id"]))
            if options.statistics
            else None,
            stats=stats,
        )
    print(f"wrote {len(files.files)} files to {files.out_dir} (open {files.report})")
    for name, reason in files.figures.skipped.items():
        print(f"figure {name} not drawn: {reason}")
    for warning in files.warnings:
        print(f"warning: {warning}")
    log_to = options.log_to if options.log_to is not None else options.parent_run
    if log_to and not options.paper:
        log_to_run(options.tracking_uri, log_to, files.out_dir)
        print(f"logged them as artifacts analysis/ of run {log_to}")
    return files


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        for f in fields(ReportOptions):
            print(f"  {f.name}")
        return
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(parse_args(argv))
    except LorabenchError as err:
        sys.exit(f"error: {err}")
