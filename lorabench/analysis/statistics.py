"""The report's statistics: replicates, paired comparisons, fitted scaling curves, judge
agreement and repeats, length diagnostics, as Markdown sections, CSV tables and a figure.

    items = load_item_scores(tracking_uri, runs["run_id"])     # every judge's item scores
    stats = write_statistics(runs, items, "reports/sweep", StatsConfig())
    stats.markdown                                            # the sections, for report.md

A section that cannot be computed (fewer than 2 replicates, pairs on other items or by other
judges, a curve with fewer data sizes than parameters, a single judge) says why under its own
heading instead of showing a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorabench import contract
from lorabench.analysis.agreement import Agreement, agreement
from lorabench.analysis.length import length_diagnostics
from lorabench.analysis.paired import comparison_table
from lorabench.analysis.replicates import replicate_groups, replicate_table
from lorabench.analysis.scaling_fit import plot_scaling_fits, scaling_fits
from lorabench.analysis.tables import _markdown_rows, format_count
from lorabench.config.schema import StatsConfig
from lorabench.evaluation.eval_set import CATEGORIES

FIT_FIGURE = "data_scaling_fit"
"""The fitted data-scaling figure's file stem (under `figures/`)."""


@dataclass
class Statistics:
    """What `write_statistics` computed and wrote."""

    markdown: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _cell(value: Any, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return fmt.format(value)
    return str(value)


def _table(frame: pd.DataFrame, columns: dict[str, Callable[[Any], str]]) -> list[str]:
    rows = [[fmt(row[c]) for c, fmt in columns.items()] for _, row in frame.iterrows()]
    return [*_markdown_rows(list(columns), rows), ""]


def _skipped(notes: Sequence[str]) -> list[str]:
    return [*(f"- skipped: {n}" for n in notes), ""] if notes else []


def _p(value: Any) -> str:
    return "" if pd.isna(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _interval(row: pd.Series) -> str:
    return f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def statistics_sections(
    runs: pd.DataFrame, items: pd.DataFrame, stats: StatsConfig
) -> tuple[list[str], dict[str, pd.DataFrame], Any]:
    """The Markdown lines, the tables (by file name) and the scaling fits of `runs`."""
    groups = replicate_groups(runs)
    level = f"{stats.level:.0%}"
    lines = ["## Statistics", ""]
    lines += [
        f"Intervals are {level} bootstrap intervals ({stats.bootstrap_samples} draws, seed "
        f"{stats.seed}); scores are compared only item by item, on the same items and judge.",
        "",
        "### Replicates",
        "",
    ]
    reps = replicate_table(items, groups, stats)
    if len(reps.table):
        lines += [
            f"Mean over replicates, with a hierarchical {level} interval (seeds, then items).",
            "",
        ]
        lines += _replicate_lines(reps.table)
    if not len(reps.table):
        lines += [
            "- skipped: no configuration has 2 or more replicates "
            "(sweep over seeds: training.seed=1,2,3)"
        ]
    lines += _skipped(reps.skipped)

    comparisons = comparison_table(items, groups, stats)
    lines += ["### Paired comparisons", ""]
    lines += _comparison_lines(comparisons.table, stats)
    lines += _skipped(comparisons.skipped)

    fits = scaling_fits(items, groups, stats)
    lines += ["### Fitted scaling curves", ""]
    lines += _fit_lines(fits)

    lines += ["### Judge agreement", ""]
    agree = agreement(items, comparisons.table, groups, stats)
    lines += _agreement_lines(agree)

    lines += ["### Length diagnostics", ""]
    tables = {
        "replicates.csv": reps.table,
        "comparisons.csv": comparisons.table,
        "crossovers.csv": fits.crossovers,
        "judge_agreement.csv": agree.pairs,
        "sign_stability.csv": agree.signs,
        "judge_repeats.csv": agree.repeats,
    }
    names = dict(zip(runs["run_id"], runs["run_name"], strict=True))
    for judge in dict.fromkeys(g.judge for g in groups):
        diag = length_diagnostics(items[items["run_id"].isin(runs["run_id"])], judge, stats)
        lines += _length_lines(diag, judge, names)
        tables[f"length_slopes__{contract.judge_slug(judge)}.csv"] = diag.slopes
        tables[f"length_adjusted__{contract.judge_slug(judge)}.csv"] = diag.averages
    if not groups:
        lines += ["- skipped: no evaluated run", ""]
    return lines, tables, fits


def _replicate_lines(table: pd.DataFrame) -> list[str]:
    return _table(
        table.assign(
            interval=table.apply(lambda r: f"[{r.ci_low:.3f}, {r.ci_high:.3f}]", axis=1),
            spread=table.apply(lambda r: f"{r.replicate_min:.3f}–{r.replicate_max:.3f}", axis=1),
        ),  # fmt: skip
        {
            "group": lambda v: f"`{v}`",
            "judge": str,
            "replicates": str,
            "mean": _cell,
            "interval": str,
            "replicate_sd": _cell,
            "spread": str,
        },
    )


def _comparison_lines(table: pd.DataFrame, stats: StatsConfig) -> list[str]:
    if not len(table):
        return ["- skipped: no pair of runs to compare (see below)", ""]
    lines = [
        "Difference of macro averages A − B, paired over the items both runs scored "
        "(`dropped`: the items either could not score); p of no difference, Holm-corrected "
        f"over the table (significant: p_holm < {stats.alpha:g}).",
        "",
    ]
    frame = table.assign(interval=table.apply(_interval, axis=1))
    lines += _table(
        frame,
        {
            "comparison": str,
            "a": lambda v: f"`{v}`",
            "b": lambda v: f"`{v}`",
            "judge": str,
            "replicates_a": str,
            "replicates_b": str,
            "items": str,
            "dropped": str,
            "diff": lambda v: f"{v:+.3f}",
            "interval": str,
            "p": _p,
            "p_holm": _p,
            "significant": lambda v: "yes" if v else "no",
        },
    )
    lines += ["Per category (A − B; * where Holm-corrected p < alpha):", ""]
    rows = []
    for _, row in table.iterrows():
        cells = [f"`{row['a']}` − `{row['b']}`"]
        for c in CATEGORIES:
            star = "*" if row[f"p_holm_{c}"] < stats.alpha else ""
            cells.append(f"{row[f'diff_{c}']:+.3f}{star}")
        rows.append(cells)
    return [*lines, *_markdown_rows(["pair", *CATEGORIES], rows), ""]


def _fit_lines(fits: Any) -> list[str]:
    lines = []
    if fits.curves:
        lines += ["score = a + b·ln(samples), per base model and method:", ""]
        rows = [
            [
                str(c.base_model),
                str(c.method),
                c.judge,
                str(len(c.log_samples)),
                f"{c.intercept:.3f}",
                f"{c.slope:+.4f} [{c.slope_ci[0]:+.4f}, {c.slope_ci[1]:+.4f}]",
            ]
            for c in fits.curves
        ]
        lines += [*_markdown_rows(["base", "method", "judge", "points", "a", "b"], rows), ""]
        lines += [f"![fitted data scaling](figures/{FIT_FIGURE}.png)", ""]
    lines += _skipped(fits.skipped)[:-1]
    lines += [_crossover_line(row) for _, row in fits.crossovers.iterrows()]
    if not fits.curves and fits.crossovers.empty:
        lines.append("- skipped: no curve could be fitted, so no crossover")
    return [*lines, ""]


def _crossover_line(row: pd.Series) -> str:
    ft = f"`{row['ft']}` ({row['ft_score']:.3f})"
    interval = f"[{_open_end(row['ci_low'])}, {_open_end(row['ci_high'])}]"
    if not 0 < row["lora_samples"] < np.inf:
        # No number: the estimate itself lies outside the fitted range (the note says where).
        return f"- LoRA reaching {ft}: {row['note']}; interval {interval}"
    text = f"- LoRA reaches {ft} at {format_count(row['lora_samples'])} samples {interval}"
    return f"{text} ({row['note']})" if row["note"] else text


def _open_end(samples: float) -> str:
    """A crossover in samples; 0 and inf lie outside the fitted range: an open end."""
    return format_count(samples) if 0 < samples < np.inf else "open"


def _agreement_lines(agree: Agreement) -> list[str]:
    lines = _skipped(agree.skipped)
    if len(agree.pairs):
        lines += ["Per judge pair and category, over the items both scored:", ""]
        lines += _table(
            agree.pairs,
            {
                "first": str,
                "second": str,
                "category": str,
                "items": str,
                "spearman": _cell,
                "alpha": _cell,
                "mean_offset": lambda v: f"{v:+.3f}",
            },
        )
    if len(agree.signs):
        lines += ["Each comparison's difference under every judge that scored its runs:", ""]
        cols = {c: (lambda v: f"{v:+.3f}") for c in agree.signs.columns if c.startswith("diff")}
        lines += _table(
            agree.signs,
            {"a": lambda v: f"`{v}`", "b": lambda v: f"`{v}`", **cols, "stable": str},
        )
    lines += ["#### Judge repeats", ""]
    if not len(agree.repeats):
        lines += ["- skipped: no judge was repeated (judge.repeats=N, N >= 2)", ""]
        return lines
    lines += _table(
        agree.repeats,
        {
            "judge": str,
            "repeats": str,
            "items": str,
            "alpha": _cell,
            "changed_share": _cell,
            "mean_abs_change": _cell,
            "temperature": lambda v: "" if pd.isna(v) else f"{v:g}",
        },
    )
    for row in agree.repeats.itertuples(index=False):
        if row.temperature == 0 or pd.isna(row.temperature):
            lines.append(
                f"- {row.judge}: at temperature 0 (or none), repeats measure only the "
                "server's nondeterminism, not the sampling noise of a judge at temperature > 0"
            )
    return [*lines, ""]


def _length_lines(diag: Any, judge: str, names: dict[str, str]) -> list[str]:
    lines = [
        f"Judge {judge}: slope of item score on ln(1 + answer characters), per category, with "
        "a level per run (standard errors clustered by item):",
        "",
    ]
    if len(diag.slopes):
        frame = diag.slopes.assign(interval=diag.slopes.apply(_interval, axis=1))
        lines += _table(
            frame,
            {
                "category": str,
                "items": str,
                "slope": lambda v: f"{v:+.3f}",
                "interval": str,
                "p": _p,
                "median_length": lambda v: f"{v:.0f}",
            },
        )
    lines += _skipped(diag.skipped)
    if len(diag.averages):
        frame = diag.averages.assign(run=diag.averages["run_id"].map(names))
        lines += ["Plain and length-adjusted averages (at each category's median length):", ""]
        lines += _table(
            frame,
            {
                "run": lambda v: f"`{v}`",
                "average_score": _cell,
                "length_adjusted": _cell,
                "mean_length": lambda v: f"{v:.0f}",
            },
        )
    return lines


def write_statistics(
    runs: pd.DataFrame, items: pd.DataFrame, out_dir: str | Path, stats: StatsConfig
) -> Statistics:
    """Compute the sections and write `statistics/*.csv`, `statistics.md` and the fitted
    scaling figure into `out_dir`."""
    from lorabench.analysis.figures import save_figure

    out = Path(out_dir)
    lines, tables, fits = statistics_sections(runs, items, stats)
    folder = out / contract.ARTIFACT_STATS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, table in tables.items():
        path = folder / name
        table.to_csv(path, index=False)
        files.append(path)
    if fits.curves:
        fig = plot_scaling_fits(fits, stats.level, "Score against data size")
        files += save_figure(fig, out / "figures", FIT_FIGURE)
    markdown = "\n".join(lines) + "\n"
    md = folder / Path(contract.ARTIFACT_STATS_REPORT).name
    md.write_text(markdown.replace("](figures/", "](../figures/"), encoding="utf-8")
    return Statistics(markdown, tables, [*files, md])
