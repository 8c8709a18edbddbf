"""The report's anatomy section and its figures, drawn from the per-matrix measurements
(`lorabench.analysis.anatomy`: loading, per-run summary, findings): the effective rank by layer,
intruder dimensions against data size, and the §4.5 rows against their base run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from lorabench import contract
from lorabench.analysis.anatomy import (
    anatomy_summary,
    chained_findings,
    effective_rank_finding,
    intruder_finding,
    method_family,
    shared_sizes,
)
from lorabench.analysis.figures import METHOD_COLORS, FigureFiles, _count_ticks, save_figure
from lorabench.analysis.runs import BASE_METHOD, AnalysisError
from lorabench.contract import METHOD_FT, METHOD_LORA

FIGURE_TITLES = {
    "anatomy_effective_rank_by_layer": "Effective rank of the weight update per layer",
    "anatomy_intruders": "Intruder dimensions against training data size",
    "anatomy_chained": "The §4.5 rows (chained runs) against their base run's update",
}
"""Each anatomy figure (its file name's stem) and its title."""
ANATOMY_FIGURES = tuple(FIGURE_TITLES)

FAMILY_LINESTYLES = {METHOD_LORA: "-", METHOD_FT: "--"}
FAMILY_LABELS = {METHOD_LORA: "LoRA family", METHOD_FT: "FT"}
RANK_LABEL = "Effective rank of ΔW (90% energy)"
INTRUDERS_LABEL = "Intruder dimensions per matrix"
_VARIANT_PALETTE = (2, 4, 1, 5, 6, 8, 9, 7)
"""tab10 colours for LoRA variants: neither LoRA's blue (0) nor FT's red (3)."""


# Figures ----------------------------------------------------------------------------------------


def _method_colors(methods: Iterable[str]) -> dict[str, Any]:
    """LoRA blue and FT red as in the other figures; each LoRA variant a colour of its own."""
    palette, colors, spare = colormaps["tab10"], dict(METHOD_COLORS), iter(_VARIANT_PALETTE * 4)
    for method in dict.fromkeys(methods):
        if method not in colors:
            colors[method] = palette(next(spare))
    return colors


def _family_handles() -> list[Line2D]:
    """Legend entries for the line styles: the LoRA family solid, FT dashed."""
    return [
        Line2D([], [], color="#333333", linestyle=style, label=FAMILY_LABELS[family])
        for family, style in FAMILY_LINESTYLES.items()
    ]


def plot_effective_rank_by_layer(
    layers: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    title: str = FIGURE_TITLES["anatomy_effective_rank_by_layer"],
) -> Figure:
    """Per tuned run, the effective rank of its update per layer (block index), averaged over
    the measured module types; LoRA-family runs solid, FT runs dashed, each labelled by name."""
    summary = anatomy_summary(layers, runs)
    blocks = layers[layers["layer"].notna() & layers["run_id"].isin(summary["run_id"])]
    if blocks.empty:
        raise AnalysisError(
            "effective rank per layer: no run's anatomy holds a matrix inside the model's blocks"
            if len(summary)
            else "effective rank per layer: no run has its anatomy measured"
        )
    per_layer = blocks.groupby(["run_id", "layer"])["effective_rank"].mean()
    measured = set(per_layer.index.get_level_values("run_id"))
    palette = colormaps["tab20"]
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    ax = fig.subplots()
    handles = []
    for i, row in enumerate(summary[summary["run_id"].isin(measured)].itertuples()):
        series = per_layer.loc[row.run_id]
        (line,) = ax.plot(
            series.index,
            series.to_numpy(),
            linestyle=FAMILY_LINESTYLES.get(row.family, ":"),
            marker="o" if row.family == METHOD_LORA else "s",
            markersize=4,
            color=palette(i % 20),
            label=str(row.run_name),
        )
        handles.append(line)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Layer (block index)")
    ax.set_ylabel(f"{RANK_LABEL},\nmean over module types")
    ax.grid(True, alpha=0.3)
    ax.margins(y=0.1)
    fig.suptitle(title, fontsize=12)
    fig.legend(
        handles=[*handles, *_family_handles()],
        loc="outside right center",
        frameon=False,
        fontsize=8,
    )
    return fig


def plot_intruders(
    layers: pd.DataFrame, runs: pd.DataFrame, *, title: str = FIGURE_TITLES["anatomy_intruders"]
) -> Figure:
    """Mean intruder dimensions per matrix against training samples (log axis), a connected
    series per method (`lora`, `lora-r64`, `rslora`, `dora`, ..., `ft`; per base model where
    several); runs of one method and size averaged. Chained runs: `plot_chained`."""
    summary = anatomy_summary(layers, runs)
    single = summary[summary["base_run"].isna() & summary["num_samples"].notna()]
    if single.empty:
        raise AnalysisError(
            "intruders against data size: no single-stage run with its anatomy measured and a "
            "data size"
        )
    colors = _method_colors(single["method"])
    several = single["base_model"].nunique() > 1
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    for (model, method), group in single.groupby(["base_model", "method"], sort=False):
        means = group.groupby("num_samples")["intruders"].mean().sort_index()
        family = method_family(method)
        ax.plot(
            means.index,
            means.to_numpy(),
            linestyle=FAMILY_LINESTYLES.get(family, ":"),
            marker="o" if family == METHOD_LORA else "s",
            color=colors[method],
            label=f"{model} {method}" if several else str(method),
        )
    ax.set_xscale("log")
    _count_ticks(ax, [line.get_xdata() for line in ax.get_lines()])
    ax.set_xlabel("Training samples (log scale)")
    ax.set_ylabel(f"{INTRUDERS_LABEL} (mean)")
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    fig.suptitle(title, fontsize=12)
    fig.legend(loc="outside right center", frameon=False, fontsize=9)
    return fig


def _chained_bars(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows `plot_chained` draws: each base run (when measured, once) followed by the
    chained runs on it, with `role` `base` or `chained`."""
    chained = summary[summary["base_run"].notna()]
    measured = summary.drop_duplicates("run_name").set_index("run_name", drop=False)
    parts = []
    for base, group in chained.groupby("base_run", sort=False):
        if base in measured.index:
            parts.append(measured.loc[[base]].assign(role="base"))
        parts.append(group.assign(role="chained"))
    return pd.concat(parts, ignore_index=True)


def plot_chained(
    layers: pd.DataFrame, runs: pd.DataFrame, *, title: str = FIGURE_TITLES["anatomy_chained"]
) -> Figure:
    """The §4.5 rows: bars of each chained run's effective rank and intruders per matrix
    (its ΔW from its base run's model) beside its base run's own (hatched; missing when that run
    is not measured)."""
    summary = anatomy_summary(layers, runs)
    if not summary["base_run"].notna().any():
        raise AnalysisError(
            "the §4.5 rows: no chained run (`<base run>+<method>(<data>)`) has its anatomy measured"
        )
    bars = _chained_bars(summary)
    colors = _method_colors(bars["method"])
    fig = Figure(figsize=(max(7.0, 1.3 * len(bars) + 3), 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, measure, label in zip(
        axes, ("effective_rank", "intruders"), (RANK_LABEL, INTRUDERS_LABEL), strict=True
    ):
        _bar_panel(ax, bars, measure, colors)
        ax.set_ylabel(label)
    fig.suptitle(title, fontsize=12)
    fig.legend(
        handles=[
            *(Patch(facecolor=colors[m], label=str(m)) for m in dict.fromkeys(bars["method"])),
            Patch(
                facecolor="white", edgecolor="#333333", hatch="//", label="base run's own update"
            ),
            Patch(facecolor="#333333", label="chained run's update"),
        ],
        loc="outside lower center",
        ncol=2 + bars["method"].nunique(),
        frameon=False,
        fontsize=9,
    )
    return fig


def _bar_panel(ax: Axes, bars: pd.DataFrame, measure: str, colors: dict[str, Any]) -> None:
    """One bar per row of `bars`, coloured by method, the base runs hatched, values on top."""
    xs = np.arange(len(bars))
    base = (bars["role"] == "base").to_numpy()
    drawn = ax.bar(
        xs,
        bars[measure].to_numpy(dtype=float),
        color=[colors[m] for m in bars["method"]],
        edgecolor="#333333",
        alpha=0.9,
    )
    for patch, is_base in zip(drawn, base, strict=True):
        if is_base:
            patch.set_hatch("//")
            patch.set_alpha(0.45)
    ax.bar_label(drawn, fmt="%.2f" if measure == "intruders" else "%.1f", fontsize=8)
    ax.set_xticks(xs, list(bars["run_name"]), rotation=25, ha="right", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.15)


_PLOTS = {
    "anatomy_effective_rank_by_layer": plot_effective_rank_by_layer,
    "anatomy_intruders": plot_intruders,
    "anatomy_chained": plot_chained,
}


def write_anatomy_figures(
    layers: pd.DataFrame,
    runs: pd.DataFrame,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("png", "svg"),
) -> FigureFiles:
    """Draw every anatomy figure (ANATOMY_FIGURES) into `out_dir`; one with nothing to draw is
    skipped with its reason, never drawn empty."""
    result = FigureFiles()
    if layers.empty:
        result.skipped.update(dict.fromkeys(ANATOMY_FIGURES, "no run has its anatomy measured"))
        return result
    for name, plot in _PLOTS.items():
        try:
            fig = plot(layers, runs)
        except AnalysisError as err:
            result.skipped[name] = str(err)
            continue
        result.files += save_figure(fig, out_dir, name, formats)
    return result


# The report's section ---------------------------------------------------------------------------

SECTION_TITLE = "## Weight-update anatomy"
_PREAMBLE = (
    "> Per measured matrix, ΔW = tuned weight − starting weight (for a chained run, its base "
    "run's model). **Effective rank**: the rank holding 90% of ΔW's squared singular values "
    "(by default; `anatomy.energy`; Biderman et al. 2024). **Relative change**: ‖ΔW‖_F / ‖W‖_F. "
    "**Intruder dimensions**: of the tuned weight's top 10 singular vectors (by default; "
    "`anatomy.intruder_top_k`), those whose largest |cosine| with the starting weight's "
    "singular vectors is below 0.5 (`anatomy.intruder_threshold`; Shuttleworth et al. 2025). "
    "A run's numbers are means over its matrices; the findings are measurements (no interval, "
    "no test). See `docs/anatomy.md`."
)


def anatomy_table(summary: pd.DataFrame) -> list[str]:
    """The section's table (Markdown lines): a row per measured run."""
    lines = [
        "| Run | Method | Data | Matrices | Effective rank | Relative change "
        "| Intruders per matrix |",
        "| --- | --- | --- | --: | --: | --: | --: |",
    ]
    for row in summary.itertuples():
        lines.append(
            f"| `{row.run_name}` | {row.method} | {row.data} | {row.matrices:.0f} "
            f"| {row.effective_rank:.1f} | {row.relative_change:.3g} | {row.intruders:.2f} |"
        )
    return lines


def _not_measured(layers: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """A line naming our tuned runs without per-matrix anatomy, if any."""
    tuned = runs[(runs["source"] != "paper") & (runs["method"] != BASE_METHOD)]
    missing = tuned[~tuned["run_id"].isin(layers["run_id"])]
    if missing.empty:
        return []
    names = ", ".join(f"`{n}`" for n in missing["run_name"])
    return [
        f"Not measured (no row in `{contract.ARTIFACT_ANATOMY_LAYERS}`: never measured, or no "
        f"matrix changed, `{contract.ANATOMY_UNCHANGED}`): {len(missing)} tuned "
        f"run{'s' * (len(missing) > 1)}, {names}. Measure {'them' if len(missing) > 1 else 'it'} "
        "with `python -m lorabench.anatomy run=<name>` (or a sweep with `sweep.anatomy=true`).",
        "",
    ]


def anatomy_markdown(
    layers: pd.DataFrame, runs: pd.DataFrame, figures: FigureFiles | None = None
) -> str:
    """The report's anatomy section: the table of measured runs, the findings with their
    numbers, the runs not measured, and `figures` (paths under `figures/`) with any skipped."""
    summary = anatomy_summary(layers, runs)
    lines = [SECTION_TITLE, "", _PREAMBLE, ""]
    if summary.empty:
        lines += ["No run of this report has its anatomy measured.", ""]
    else:
        pairs = shared_sizes(summary)
        lines += [*anatomy_table(summary), ""]
        lines += [
            f"- **Effective rank**: {effective_rank_finding(pairs)}.",
            f"- **Intruder dimensions**: {intruder_finding(pairs)}.",
            "- **The §4.5 rows** (chained runs against their base run's own update):",
            *(f"  - {line}." for line in chained_findings(summary)),
        ]
        if len(pairs) and (pairs[["lora_runs", "ft_runs"]] > 1).any(axis=None):
            lines.append(
                "- Several runs of one method at one size (seeds, other axes): their means."
            )
        lines.append("")
    lines += _not_measured(layers, runs)
    lines += figures.markdown_lines() if figures else []
    return "\n".join(lines).rstrip("\n") + "\n"


@dataclass
class AnatomyFiles:
    """What `write_anatomy` wrote: the section's Markdown and its figures."""

    markdown: str
    figures: FigureFiles


def write_anatomy(
    layers: pd.DataFrame,
    runs: pd.DataFrame,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("png", "svg"),
) -> AnatomyFiles:
    """The anatomy figures into `out_dir/figures` and the section (for `out_dir/report.md`)."""
    figures = write_anatomy_figures(layers, runs, Path(out_dir) / "figures", formats=formats)
    return AnatomyFiles(anatomy_markdown(layers, runs, figures), figures)
