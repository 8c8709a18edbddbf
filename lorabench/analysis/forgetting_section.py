"""The report's learned/forgotten section and its figure (`lorabench.analysis.forgetting`): a
table of runs against their starting runs, the LoRA-vs-FT pairs with their reading, the finding,
and learned against forgotten as Biderman et al. 2024's Figure 1 draws it.

    forgetting = analyse(load_subjects(uri, tuned_runs), StatsConfig())
    part = write_forgetting(forgetting, "reports/demo")   # figures/forgetting.{png,svg}
    part.markdown                                         # the section
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lorabench import contract
from lorabench.analysis.benchmarks import Subject
from lorabench.analysis.figures import (
    METHOD_COLORS,
    METHOD_LABELS,
    OTHER_COLOR,
    FigureFiles,
    _place_labels,
    save_figure,
)
from lorabench.analysis.forgetting import (
    Estimate,
    Forgetting,
    RunChange,
    change_table,
    interval,
    pair_table,
)
from lorabench.analysis.runs import AnalysisError, parse_run_name

FIGURE = "forgetting"
FIGURE_TITLE = "Learned against forgotten, each run against the model it started from"
LEARNED_LABEL = "Learned: target gain (run − start)"
FORGOTTEN_LABEL = "Forgotten: retention loss (start − run; up = more lost)"
SECTION_TITLE = "## Learned and forgotten (benchmarks)"
NO_RESULTS = "no run of this report has benchmark results (eval.benchmarks)"


# Figure -----------------------------------------------------------------------------------------


def _plotted(forgetting: Forgetting) -> list[RunChange]:
    """The runs with both a learned and a forgotten estimate."""
    return [
        c
        for c in forgetting.analysed
        if isinstance(c.learned, Estimate) and isinstance(c.forgotten, Estimate)
    ]


def _point(ax: Axes, change: RunChange, color: str, marker: str, label: str) -> tuple:
    """One run with its two intervals; its label as `_place_labels` takes it."""
    x, y = change.learned, change.forgotten
    ax.errorbar(
        x.value,
        y.value,
        xerr=[[x.value - x.ci_low], [x.ci_high - x.value]],
        yerr=[[y.value - y.ci_low], [y.ci_high - y.value]],
        fmt=marker,
        color=color,
        markerfacecolor=color if marker == "o" else "white",
        markersize=7,
        capsize=3,
        elinewidth=1,
    )
    return x.value, y.value, label, color


def _panel(ax: Axes, changes: Sequence[RunChange]) -> None:
    """One base model's runs: per method its first-stage runs by data size, connected; the
    §4.5 rows hollow diamonds; the starting base at the origin."""
    ax.axhline(0, color="#999999", linewidth=0.8, linestyle=":")
    ax.axvline(0, color="#999999", linewidth=0.8, linestyle=":")
    ax.plot(0, 0, "*", color="black", markersize=13, zorder=3)
    labels = []
    single = [c for c in changes if not c.subject.chained]
    for method in dict.fromkeys(c.subject.method for c in single):
        mine = sorted(
            (c for c in single if c.subject.method == method),
            key=lambda c: c.subject.num_samples or 0,
        )
        color = METHOD_COLORS.get(method or "", OTHER_COLOR)
        xs, ys = [c.learned.value for c in mine], [c.forgotten.value for c in mine]
        ax.plot(xs, ys, "-", color=color, linewidth=1.2, alpha=0.8)
        labels += [_point(ax, c, color, "o", str(c.subject.data)) for c in mine]
    for c in changes:
        if c.subject.chained:
            color = METHOD_COLORS.get(c.subject.method or "", OTHER_COLOR)
            labels.append(_point(ax, c, color, "D", _recipe(c.subject)))
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    _place_labels(ax, labels, fontsize=8)


def _recipe(subject: Subject) -> str:
    """`ft(2m)+lora(math_0.25m)`: a chained run's name without its base model."""
    parts = parse_run_name(subject.run_name)
    return (
        f"{parts['chain']}+{parts['method']}({parts['data']})"
        if "chain" in parts
        else subject.run_name
    )


def _labelled(label: str, tasks: set[str]) -> str:
    """An axis label naming the tasks it averages (their metrics are its units)."""
    return f"{label}\n{', '.join(sorted(tasks))}"


def plot_forgetting(forgetting: Forgetting, *, title: str = FIGURE_TITLE) -> Figure:
    """Learned (x) against forgotten (y) per run with both intervals (`stats.level`), a panel
    per base model: LoRA (blue) and FT (red) first-stage runs as filled circles connected in
    order of data size, the §4.5 rows (chained; read against their base run) as hollow
    diamonds, the base model (the start of first-stage runs) a star at the origin."""
    changes = _plotted(forgetting)
    if not changes:
        raise AnalysisError("learned against forgotten: no run has both measured against its start")
    models = list(dict.fromkeys(c.subject.base_model for c in changes))
    fig = Figure(figsize=(6.2 * len(models) + 2.2, 5.4), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        _panel(ax, [c for c in changes if c.subject.base_model == model])
        ax.set_title(f"base model {model}", fontsize=10)
        ax.set_xlabel(_labelled(LEARNED_LABEL, {t for c in changes for t in c.learned.tasks}))
    axes[0].set_ylabel(_labelled(FORGOTTEN_LABEL, {t for c in changes for t in c.forgotten.tasks}))
    fig.suptitle(f"{title}\n({forgetting.stats.level:.0%} paired-bootstrap intervals)", fontsize=12)
    methods = dict.fromkeys(c.subject.method for c in changes)
    handles = [
        Line2D(
            [],
            [],
            color=METHOD_COLORS.get(m or "", OTHER_COLOR),
            marker="o",
            label=f"{METHOD_LABELS.get(m or '', m)} by data size",
        )  # fmt: skip
        for m in methods
    ]
    handles += [
        Line2D(
            [],
            [],
            color="#333333",
            marker="D",
            markerfacecolor="white",
            linestyle="",
            label="§4.5 rows (against their base run)",
        ),  # fmt: skip
        Line2D(
            [],
            [],
            color="black",
            marker="*",
            markersize=11,
            linestyle="",
            label="base model (the start)",
        ),  # fmt: skip
    ]
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize=9)
    return fig


def write_forgetting_figure(
    forgetting: Forgetting, out_dir: str | Path, *, formats: Sequence[str] = ("png", "svg")
) -> FigureFiles:
    """Draw `figures/forgetting` into `out_dir`; skipped with the reason when nothing to draw."""
    result = FigureFiles()
    try:
        fig = plot_forgetting(forgetting)
    except AnalysisError as err:
        result.skipped[FIGURE] = str(err)
        return result
    result.files += save_figure(fig, out_dir, FIGURE, formats)
    return result


# Section ----------------------------------------------------------------------------------------


def _preamble(forgetting: Forgetting) -> str:
    stats = forgetting.stats
    return (
        "> Each run against the model it started from (the base row of its base model; for the "
        "§4.5 rows, their base run), on the benchmark items both scored. **Learned**: the mean "
        "over the target tasks of (run − start); **forgotten**: the mean over the retention "
        "tasks of (start − run), positive = lost, each task counting once (Biderman et al. "
        "2024's mean of HellaSwag, ARC-Challenge and WinoGrande); **Δ world perplexity**: "
        "run − start on the held-out world documents. Intervals: paired percentile bootstrap "
        f"over items (documents), {stats.level:.0%}, {stats.bootstrap_samples} draws, seed "
        f"{stats.seed}. LoRA against FT: the differences LoRA − FT of both, item by item; "
        '"at equal learning, LoRA forgets less" when the learned interval holds 0 and the '
        "forgotten one lies below 0. See `docs/analysis.md`."
    )


def _items(change: RunChange) -> str:
    counts = [
        p.items if isinstance(p, Estimate) else "—"
        for p in (change.learned, change.forgotten, change.world)
    ]
    return " / ".join(str(c) for c in counts)


def run_table(forgetting: Forgetting) -> list[str]:
    """The analysed runs (Markdown lines)."""
    level = f"{forgetting.stats.level:.0%}"
    lines = [
        f"| Run | Started from | Learned [{level}] | Forgotten [{level}] "
        f"| Δ world perplexity [{level}] | Items (target / retention / documents) |",
        "| --- | --- | --: | --: | --: | --: |",
    ]
    for c in forgetting.analysed:
        lines.append(
            f"| `{c.subject.run_name}` | `{c.subject.start_name}` | {interval(c.learned)} "
            f"| {interval(c.forgotten)} | {interval(c.world, 2)} | {_items(c)} |"
        )
    return lines


def _notes(forgetting: Forgetting) -> list[str]:
    """Parts without an estimate (why), items left out, and the runs not analysed (why)."""
    lines = []
    for c in forgetting.analysed:
        for name, part in (
            ("learned", c.learned),
            ("forgotten", c.forgotten),
            ("Δ world perplexity", c.world),
        ):
            if isinstance(part, str):
                lines.append(f"- `{c.subject.run_name}`: no {name}: {part}")
            elif part is not None and part.dropped:
                dropped = f"{part.dropped} items scored on one side only, left out"
                lines.append(f"- `{c.subject.run_name}`: {name}: {dropped}")
    skipped = [c for c in forgetting.changes if c.skipped]
    if skipped:
        lines += [*([""] * bool(lines)), "Not analysed:", ""]
        lines += [f"- `{c.subject.run_name}`: {c.skipped}" for c in skipped]
    return [*lines, ""] if lines else []


def pair_lines(forgetting: Forgetting) -> list[str]:
    """The LoRA-vs-FT pairs (Markdown lines), or why there are none."""
    if not forgetting.pairs:
        return [f"LoRA against FT: {forgetting.finding.missing}.", ""]
    level = f"{forgetting.stats.level:.0%}"
    lines = [
        f"| Comparison | LoRA | FT | Learned LoRA − FT [{level}] | Forgotten LoRA − FT [{level}] "
        "| Reading |",
        "| --- | --- | --- | --: | --: | --- |",
    ]
    for p in forgetting.pairs:
        lines.append(
            f"| {p.kind} | `{p.lora.subject.run_name}` | `{p.ft.subject.run_name}` "
            f"| {interval(p.learned)} | {interval(p.forgotten)} | {p.verdict}: {p.reading} |"
        )
    return [*lines, ""]


def forgetting_markdown(forgetting: Forgetting, figures: FigureFiles | None = None) -> str:
    """The report's section: the runs' table, what is missing and why, the pairs, the finding
    and `figures`."""
    lines = [SECTION_TITLE, "", _preamble(forgetting), ""]
    if forgetting.analysed:
        lines += [*run_table(forgetting), ""]
    else:
        lines += ["No run could be read against the model it started from.", ""]
    lines += _notes(forgetting)
    lines += pair_lines(forgetting)
    f = forgetting.finding
    lines += [f"**Finding**: {f.claim}: **{f.verdict}**.", ""]
    lines += figures.markdown_lines() if figures else []
    return "\n".join(lines).rstrip("\n") + "\n"


@dataclass
class ForgettingFiles:
    """What `write_forgetting` wrote: the section's Markdown and its figure."""

    markdown: str
    figures: FigureFiles
    tables: dict[str, Path]
    """`forgetting/runs.csv` and `forgetting/comparisons.csv` (their artifact paths) → files."""


def has_results(forgetting: Forgetting) -> bool:
    """Whether any run of the analysis has benchmark results (else the report has no section)."""
    return any(c.subject.bench is not None for c in forgetting.changes)


def write_forgetting(
    forgetting: Forgetting, out_dir: str | Path, *, formats: Sequence[str] = ("png", "svg")
) -> ForgettingFiles:
    """The figure into `out_dir/figures`, the tables `forgetting/runs.csv` and
    `forgetting/comparisons.csv` into `out_dir`, and the section (for `out_dir/report.md`)."""
    out = Path(out_dir)
    (out / contract.ARTIFACT_FORGETTING_DIR).mkdir(parents=True, exist_ok=True)
    tables = {
        contract.ARTIFACT_FORGETTING_RUNS: change_table(forgetting.changes),
        contract.ARTIFACT_FORGETTING_COMPARISONS: pair_table(forgetting.pairs),
    }
    for path, table in tables.items():
        table.to_csv(out / path, index=False)
    figures = write_forgetting_figure(forgetting, out / "figures", formats=formats)
    written = {path: out / path for path in tables}
    return ForgettingFiles(forgetting_markdown(forgetting, figures), figures, written)
