"""The paper's Table 4 and its per-category appendix table, regenerated from a tidy run table
(runs.load_runs or paper_runs.paper_frame), as CSV and Markdown, beside the paper's values.

Matching a run to a paper row: by exact run name (`llama-7b+lora(2m)`). With `paper_model`,
a run's own base model is replaced by the paper's model it stands for first, so `tiny+lora(2m)`
is compared with `llama-7b+lora(2m)` when `paper_model="llama-7b"` (or
`{"tiny": "llama-7b", "tiny-13b": "llama-13b"}`): an explicit choice, never a default.

Scores from different judges (or eval sets) are never put in one table: the Markdown holds one
table per judge and eval set, each under its own heading, and the CSV carries both columns.
Each heading names the model the judge's server reported and the judge's prompts, and lists
them run by run where they differ within the section. The appendix adds, per section, the
judge's replies that could not be scored and the answers cut at `max_new_tokens`, per category.
Runs without evaluation metrics get a section of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lorabench.analysis.paper_runs import PAPER_EVAL_SET, PAPER_JUDGE, PaperRow, paper_values
from lorabench.analysis.runs import (
    COUNT_METRICS,
    PAPER_RUN_PREFIX,
    PARSE_FAILURES,
    TRUNCATED,
    AnalysisError,
    Section,
    count_column,
    missing_categories,
    sections,
    sort_runs,
)
from lorabench.errors import ConfigError
from lorabench.evaluation.eval_set import CATEGORIES

PaperModel = str | Mapping[str, str] | None
"""How runs of other base models are compared with the paper: None (exact run names only), a
base model name (every run against the paper's rows of that model), or a mapping of base models
(`{"tiny": "llama-7b", "tiny-13b": "llama-13b"}`, as the demo's `sweep.model_map` inverted)."""


def parse_paper_model(text: str | None) -> PaperModel:
    """`llama-7b` → "llama-7b"; `tiny:llama-7b,tiny-13b:llama-13b` → a mapping."""
    if not text:
        return None
    if ":" not in text:
        return text
    pairs = [item.split(":", 1) for item in text.split(",") if item.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ConfigError(f"paper_model: expected a model or model:paper_model,..., got {text!r}")
    return {ours.strip(): theirs.strip() for ours, theirs in pairs}


def paper_match(row: Any, paper_model: PaperModel = None) -> PaperRow | None:
    """The paper's row for a run: the same run name, or, with `paper_model`, the name with the
    run's base model replaced by the paper's model it stands for."""
    name = str(row["run_name"]).removeprefix(PAPER_RUN_PREFIX)
    model = row["base_model"]
    target = paper_model.get(model) if isinstance(paper_model, Mapping) else paper_model
    if target and isinstance(model, str) and name.startswith(f"{model}+"):
        name = f"{target}{name[len(model) :]}"
    return paper_values().get(name)


def _ordered(runs: pd.DataFrame) -> list[Section]:
    if runs.empty:
        raise AnalysisError("no runs to tabulate")
    return [Section(s.judge, s.eval_set, sort_runs(s.runs)) for s in sections(runs)]


def table4(runs: pd.DataFrame, *, paper_model: PaperModel = None) -> pd.DataFrame:
    """Table 4, one row per run: average score with its interval, additional parameters and
    training hours per epoch, each beside the paper's value, with the training's tokens per
    second per GPU and MFU (which the paper does not report) and GPU hours;
    `diff_average_score` = ours - paper. Rows grouped by judge and eval set (columns `judge`,
    `eval_set`)."""
    rows = []
    for section in _ordered(runs):
        for _, run in section.runs.iterrows():
            paper = paper_match(run, paper_model)
            rows.append(
                {
                    **_scored_by(run, section),
                    "average_score": run["average_score"],
                    "ci_low": run["ci_low"],
                    "ci_high": run["ci_high"],
                    "paper_run": paper.run_name if paper else None,
                    "paper_average_score": paper.average_score if paper else None,
                    "diff_average_score": _diff(
                        run["average_score"], paper and paper.average_score
                    ),
                    "additional_params": run["additional_params"],
                    "paper_additional_params": paper.additional_params if paper else None,
                    "hours_per_epoch": run["hours_per_epoch"],
                    "paper_hours_per_epoch": paper.hours_per_epoch if paper else None,
                    "tokens_per_second_per_device": run["tokens_per_second_per_device"],
                    "mfu": run["mfu"],
                    "gpu_hours": run["gpu_hours"],
                    **_provenance(run),
                }
            )
    return pd.DataFrame(rows)


def appendix_table(runs: pd.DataFrame, *, paper_model: PaperModel = None) -> pd.DataFrame:
    """The appendix table, one row per run: the 9 category scores and their average, the
    paper's (`paper_<category>`) and the differences (`diff_<category>`), and the judge's
    replies without a readable score and the answers cut at `max_new_tokens` (runs.COUNT_METRICS
    columns, empty where not logged)."""
    rows = []
    keys = [*CATEGORIES, "average_score"]
    for section in _ordered(runs):
        for _, run in section.runs.iterrows():
            paper = paper_match(run, paper_model)
            theirs = {**paper.scores, "average_score": paper.average_score} if paper else {}
            if run["source"] == "paper":
                # A paper row against itself: only the average, recomputed from the categories,
                # says something (that they reproduce Table 4).
                theirs = {"average_score": theirs.get("average_score")}
            rows.append(
                {
                    **_scored_by(run, section),
                    **{k: run[k] for k in keys},
                    "paper_run": paper.run_name if paper else None,
                    **{f"paper_{k}": theirs.get(k) for k in keys},
                    **{f"diff_{k}": _diff(run[k], theirs.get(k)) for k in keys},
                    **{k: run[k] for k in COUNT_METRICS},
                    **_provenance(run),
                }
            )
    return pd.DataFrame(rows)


def _scored_by(run: pd.Series, section: Section) -> dict[str, Any]:
    """Both tables' first columns: the run, and who scored it on what."""
    return {
        "run_name": run["run_name"],
        "judge": section.judge,
        "judge_model": run["judge_model"],
        "judge_prompts": run["judge_prompts"],
        "eval_set": section.eval_set,
        "evaluated": run["evaluated"],
    }


def _provenance(run: pd.Series) -> dict[str, Any]:
    """Both tables' last columns."""
    return {
        "missing_categories": _missing_text(run),
        "source": run["source"],
        "run_id": run["run_id"],
    }


def _missing_text(run: pd.Series) -> str:
    return ";".join(missing_categories(run)) if run["evaluated"] else ""


def _diff(ours: float | None, theirs: float | None) -> float | None:
    if _missing(ours) or _missing(theirs):
        return None
    return ours - theirs


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


# Markdown ---------------------------------------------------------------------------------------


def table4_markdown(table: pd.DataFrame) -> str:
    """Table 4 (from `table4`) as Markdown, one table per judge and eval set."""
    headers = [
        "Run",
        "Average score (95% CI)",
        "Paper",
        "Δ",
        "Additional params",
        "Paper",
        "Hours per epoch",
        "Paper",
        "Tokens/s per GPU",
        "MFU",
        "GPU hours",
    ]

    def cells(row: pd.Series) -> list[str]:
        return [
            _name(row),
            _average_cell(row),
            _score(row["paper_average_score"]),
            _signed(row["diff_average_score"]),
            format_count(row["additional_params"]),
            format_count(row["paper_additional_params"]),
            format_hours(row["hours_per_epoch"]),
            format_hours(row["paper_hours_per_epoch"]),
            format_rate(row["tokens_per_second_per_device"]),
            format_mfu(row["mfu"]),
            format_hours(row["gpu_hours"]),
        ]

    return _document(
        "Table 4: average score, additional parameters, training time and throughput",
        table,
        headers,
        cells,
    )


def appendix_markdown(table: pd.DataFrame) -> str:
    """The appendix table (from `appendix_table`) as Markdown; each score is followed by its
    difference from the paper's in brackets where the run matches a paper row."""
    headers = ["Run", *CATEGORIES, "Average"]

    def cells(row: pd.Series) -> list[str]:
        out = [_name(row)]
        for key in (*CATEGORIES, "average_score"):
            value, diff = row[key], row[f"diff_{key}"]
            text = _score(value) if row["evaluated"] else NOT_EVALUATED_CELL
            out.append(text if _missing(diff) else f"{text} ({_signed(diff)})")
        return out

    return _document(
        "Appendix: score per category (in brackets: difference from the paper)",
        table,
        headers,
        cells,
        after=_counts_markdown,
    )


NOT_EVALUATED_CELL = "not evaluated"


def _counts_markdown(part: pd.DataFrame) -> list[str]:
    """One section's judge replies without a readable score and answers cut at
    `max_new_tokens`, per run and category; nothing when no run of it logged any."""
    if part[list(COUNT_METRICS)].isna().all(axis=None):
        return []
    rows = [
        [_name(row), *(_counts_cell(row, c) for c in (None, *CATEGORIES))]
        for _, row in part.iterrows()
    ]
    return [
        "",
        "**Could not be scored / cut answers.** Each cell: the judge's replies from which no "
        "score could be read / the answers cut at `max_new_tokens` (blank or –: not logged).",
        "",
        *_markdown_rows(["Run", "Total", *CATEGORIES], rows),
    ]


def _counts_cell(row: pd.Series, category: str | None) -> str:
    failures = row[count_column(PARSE_FAILURES, category)]
    truncated = row[count_column(TRUNCATED, category)]
    if _missing(failures) and _missing(truncated):
        return ""
    return f"{_count(failures)} / {_count(truncated)}"


def _count(value: Any) -> str:
    return "–" if _missing(value) else f"{value:.0f}"


Cells = Callable[[pd.Series], list[str]]
"""A table row's Markdown cells."""


def _document(
    title: str,
    table: pd.DataFrame,
    headers: Sequence[str],
    cells: Cells,
    after: Callable[[pd.DataFrame], list[str]] | None = None,
) -> str:
    """A Markdown document of one table per judge and eval set, `after(part)` following each
    evaluated section's table."""
    keys = [
        (None, None) if _missing(j) else (j, e)
        for j, e in zip(table["judge"], table["eval_set"], strict=True)
    ]
    groups = list(dict.fromkeys(keys))
    evaluated = [g for g in groups if g[0] is not None]
    lines = [f"## {title}", ""]
    if len(evaluated) > 1:
        lines += [
            f"> **{len(evaluated)} different judges / eval sets.** Their scores are not "
            "comparable, so each has its own table below.",
            "",
        ]
    elif not evaluated:
        lines += ["> **No run has evaluation metrics**: no scores to show.", ""]
    for judge, eval_set in groups:
        part = table[[k == (judge, eval_set) for k in keys]]
        lines += _heading(judge, eval_set, part)
        lines += _markdown_rows(headers, [cells(row) for _, row in part.iterrows()])
        lines += _undefined_averages(part)
        if judge is not None and after is not None:
            lines += after(part)
        lines.append("")
    return "\n".join(lines)


def _heading(judge: str | None, eval_set: str | None, part: pd.DataFrame) -> list[str]:
    """A section's heading and the notes that go with it."""
    n = f"{len(part)} run{'s' if len(part) != 1 else ''}"
    if judge is None:
        return [
            f"### Not evaluated ({n})",
            "",
            "> These runs hold no `eval/` metrics: evaluate them with "
            "`python evaluate.py run=<run name>`.",
            "",
        ]
    models = _by_value(part, "judge_model", judge)
    prompts = _by_value(part, "judge_prompts", judge)
    about = []
    if any(models):
        about.append(f"served by {_served(models)}")
    if any(prompts):
        about.append("prompts " + ", ".join(f"`{p}`" for p in prompts if p))
    details = f" ({'; '.join(about)})" if about else ""
    lines = [f"### Judge `{judge}`{details}, eval set `{eval_set}` ({n})", ""]
    lines += _differing("the model the judge's server reported", models)
    lines += _differing("the judge's prompts", prompts)
    if part["paper_run"].notna().any() and (judge, eval_set) != (PAPER_JUDGE, PAPER_EVAL_SET):
        lines += [
            f"> The paper's scores come from `{PAPER_JUDGE}` (April 2023) on BELLE's "
            f"1,000-item eval set; Δ here compares them with `{judge}` on "
            f"`{eval_set}`, a different scale.",
            "",
        ]
    return lines


def _by_value(part: pd.DataFrame, column: str, judge: str) -> dict[str | None, list[str]]:
    """The section's run names by their value of `column` (None: not recorded). A value that
    is the judge's own name says nothing more (an offline judge reports itself as its model
    and its prompts), so it counts as not recorded."""
    out: dict[str | None, list[str]] = {}
    for value, name in zip(part[column], part["run_name"], strict=True):
        key = None if _missing(value) or value == judge else str(value)
        out.setdefault(key, []).append(name)
    return out


def _served(models: Mapping[str | None, list[str]]) -> str:
    """The served models of a section, sorted, each once (a run's tag may name several)."""
    names = {m.strip() for value in models if value for m in value.split(",")}
    return ", ".join(f"`{m}`" for m in sorted(names) if m)


def _differing(what: str, by_value: Mapping[str | None, list[str]]) -> list[str]:
    """A warning listing the runs per value (in order of appearance, unrecorded last) when the
    section's runs do not share one."""
    if len(by_value) < 2:
        return []
    listing = "; ".join(
        f"{'not recorded' if value is None else f'`{value}`'} for "
        + ", ".join(f"`{name}`" for name in names)
        for value, names in sorted(by_value.items(), key=lambda item: item[0] is None)
    )
    return [
        f"> **These runs differ in {what}**: {listing}. Their scores may not be comparable.",
        "",
    ]


def _undefined_averages(part: pd.DataFrame) -> list[str]:
    """A line per evaluated run whose average is undefined, naming its unscored categories."""
    undefined = part[part["evaluated"] & part["missing_categories"].ne("")]
    if not len(undefined):
        return []
    lines = [""]
    for _, row in undefined.iterrows():
        missing = row["missing_categories"].replace(";", ", ")
        lines.append(
            f"- `{row['run_name']}`: no score for {missing}, so its average (the "
            "macro average of the 9 categories) is undefined."
        )
    return lines


def _markdown_rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    aligns = ["---"] + ["--:"] * (len(headers) - 1)
    return [line(headers), line(aligns), *(line(r) for r in rows)]


def _name(row: pd.Series) -> str:
    name = f"`{row['run_name']}`"
    return f"{name} (paper)" if row.get("source") == "paper" else name


def _average_cell(row: pd.Series) -> str:
    if not row["evaluated"]:
        return NOT_EVALUATED_CELL
    if _missing(row["average_score"]):
        return "undefined"
    text = _score(row["average_score"])
    if not _missing(row["ci_low"]) and not _missing(row["ci_high"]):
        text += f" ({row['ci_low']:.3f}–{row['ci_high']:.3f})"
    return text


def _score(value: Any) -> str:
    return "" if _missing(value) else f"{value:.3f}"


def _signed(value: Any) -> str:
    return "" if _missing(value) else f"{value:+.3f}"


def format_count(value: Any) -> str:
    """17,891,328 → `17.9M`; 0 → `0`; missing → empty."""
    if _missing(value):
        return ""
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.0f}"


def format_hours(hours: Any) -> str:
    """Hours with a unit fit for the scale: `7.0 h`, `12.5 min`, `3.2 s`."""
    if _missing(hours):
        return ""
    if hours >= 1:
        return f"{hours:.3g} h"
    if hours * 60 >= 1:
        return f"{hours * 60:.3g} min"
    return f"{hours * 3600:.3g} s"


def format_rate(tokens_per_second: Any) -> str:
    """Tokens per second: `3,120`; missing (a run that logged none) → empty."""
    return "" if _missing(tokens_per_second) else f"{tokens_per_second:,.0f}"


MFU_ABSENT = "—"
"""The MFU cell of a run that measured none: trained on a CPU or without a GPU type."""


def format_mfu(mfu: Any) -> str:
    """An MFU as a percentage: `38.2%`; absent → `MFU_ABSENT`, never a 0."""
    return MFU_ABSENT if _missing(mfu) else f"{mfu:.1%}"


# Files ------------------------------------------------------------------------------------------


def write_tables(
    runs: pd.DataFrame, out_dir: str | Path, *, paper_model: PaperModel = None
) -> dict[str, Path]:
    """Write `table4.{csv,md}`, `appendix.{csv,md}` and `runs.csv` (the tidy table) into
    `out_dir`; returns them by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t4 = table4(runs, paper_model=paper_model)
    app = appendix_table(runs, paper_model=paper_model)
    files = {
        "runs.csv": out / "runs.csv",
        "table4.csv": out / "table4.csv",
        "table4.md": out / "table4.md",
        "appendix.csv": out / "appendix.csv",
        "appendix.md": out / "appendix.md",
    }
    runs.to_csv(files["runs.csv"], index=False)
    t4.to_csv(files["table4.csv"], index=False)
    app.to_csv(files["appendix.csv"], index=False)
    files["table4.md"].write_text(table4_markdown(t4), encoding="utf-8")
    files["appendix.md"].write_text(appendix_markdown(app), encoding="utf-8")
    return files
