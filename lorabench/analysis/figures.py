"""The study's figures from a tidy run table (runs.load_runs), each able to overlay the paper's
points: score against training data size, against base model size, against training cost
(with the Pareto front), and a heatmap of runs × categories.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state, no GUI backend), so
they render headless and leave a notebook's own backend alone. Scores from different judges are
never drawn on one axis: `write_figures` draws one set of figures per judge and eval set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, Locator, NullFormatter
from mlflow.tracking import MlflowClient

from lorabench.analysis.paper_runs import PAPER_JUDGE, paper_frame
from lorabench.analysis.runs import (
    PAPER_RUN_PREFIX,
    AnalysisError,
    parse_run_name,
    sections,
    sort_runs,
)
from lorabench.analysis.tables import format_count, format_hours
from lorabench.contract import METHOD_FT, METHOD_LORA
from lorabench.evaluation.eval_set import CATEGORIES

METHOD_COLORS = {METHOD_LORA: "#1f77b4", METHOD_FT: "#d62728"}
METHOD_LABELS = {METHOD_LORA: "LoRA", METHOD_FT: "FT"}
OTHER_COLOR = "#7f7f7f"
SCORE_LABEL = "Average score (macro over 9 categories)"
COST_LABELS = {"hours_per_epoch": "Training time per epoch", "gpu_hours": "GPU time (GPUs × hours)"}
COST_NOUNS = {"hours_per_epoch": "training hours per epoch", "gpu_hours": "GPU hours"}
PAPER_LABEL = "paper"
FIGURE_TITLES = {
    "data_scaling": "Score against training data size",
    "model_size": "Effect of the base model's size",
    "cost_hours_per_epoch": "Score against training hours per epoch",
    "cost_gpu_hours": "Score against GPU hours",
    "categories": "Score per category",
}
"""Each figure `write_figures` draws (its file name's stem) and its title."""
FIGURES = tuple(FIGURE_TITLES)


@dataclass(frozen=True)
class Style:
    """How one source of points is drawn: ours filled circles on solid lines, the paper's
    hollow squares on dashed lines."""

    label: str
    marker: str
    linestyle: str
    filled: bool

    def marker_kwargs(self, color: str) -> dict:
        return {
            "marker": self.marker,
            "color": color,
            "markerfacecolor": color if self.filled else "white",
            "markeredgecolor": color,
            "markeredgewidth": 1.6,
            "markersize": 7 if self.filled else 8,
        }

    @property
    def legend_label(self) -> str:
        return f"{self.label} ({PAPER_JUDGE} judge)" if self.label == PAPER_LABEL else self.label


OURS = Style("ours", "o", "-", True)
PAPER = Style(PAPER_LABEL, "s", "--", False)
_LEGEND_GREY = "#333333"


def _method_color(method: str | None) -> str:
    return METHOD_COLORS.get(method or "", OTHER_COLOR)


def _method_label(method: str | None) -> str:
    return METHOD_LABELS.get(method or "", str(method))


def _scored(runs: pd.DataFrame | None) -> pd.DataFrame:
    if runs is None or runs.empty:
        return pd.DataFrame()
    return runs[runs["evaluated"] & runs["average_score"].notna()]


def _recipe(row: pd.Series) -> str:
    """The run name without its base model: `lora(2m)`, `ft(2m)+lora(math_0.25m)`."""
    parsed = parse_run_name(str(row["run_name"]).removeprefix(PAPER_RUN_PREFIX))
    if not parsed:
        return str(row["run_name"])
    chain = f"{parsed['chain']}+" if "chain" in parsed else ""
    return f"{chain}{parsed['method']}({parsed['data']})"


def _legend(
    fig: Figure,
    colors: dict[str, str],
    styles: Sequence[Style],
    extra: Sequence[Line2D] = (),
    *,
    below: bool = False,
) -> None:
    """One legend: colours (what is compared), then marker styles (whose numbers), then any
    extra lines; outside the axes, right of them or below them."""
    handles = [Line2D([], [], color=c, linewidth=3, label=label) for label, c in colors.items()]
    handles += [
        Line2D(
            [],
            [],
            linestyle=style.linestyle,
            label=style.legend_label,
            **style.marker_kwargs(_LEGEND_GREY),
        )
        for style in dict.fromkeys(styles)
    ]
    handles += list(extra)
    fig.legend(
        handles=handles,
        loc="outside lower center" if below else "outside right center",
        ncol=len(handles) if below else 1,
        frameon=False,
        fontsize=9,
    )


def _note(ax: Axes, text: str) -> None:
    """A grey line of explanation under the figure's title."""
    ax.set_title(text, fontsize=8, color="#555555", loc="left")


# Score against data size ------------------------------------------------------------------------


def plot_data_scaling(
    runs: pd.DataFrame,
    *,
    paper: pd.DataFrame | None = None,
    title: str = FIGURE_TITLES["data_scaling"],
    primary: Style = OURS,
) -> Figure:
    """One panel per base model: average score against training samples (log axis), a line per
    method (LoRA against FT). Chained runs (e.g. `+lora(math_0.25m)`) are left out: their data
    adds to a base run's. The paper's base models not among `runs` get panels of their own."""
    ours = _scored(runs)
    ours = ours[ours["base_run"].isna() & ours["num_samples"].notna()]
    if ours.empty:
        raise AnalysisError(
            "score against data size: no single-stage run with an average score and a data size"
        )
    theirs = _scored(paper)
    if not theirs.empty:
        theirs = theirs[theirs["base_run"].isna()]
    models = list(dict.fromkeys(sort_runs(ours)["base_model"]))
    if not theirs.empty:
        by_size = theirs.sort_values("base_params")["base_model"]
        models += [m for m in dict.fromkeys(by_size) if m not in models]
    fig = Figure(figsize=(4.4 * len(models) + 0.6, 4.8), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    methods: dict[str, str] = {}
    styles = [primary]
    for ax, model in zip(axes, models, strict=True):
        for style, frame in ((primary, ours), (PAPER, theirs)):
            if frame.empty or not (frame["base_model"] == model).any():
                continue
            methods.update(_method_lines(ax, frame[frame["base_model"] == model], style))
            styles.append(style)
        only_paper = model not in set(ours["base_model"])
        ax.set_title(f"{model} ({PAPER_LABEL})" if only_paper else str(model), fontsize=11)
        ax.set_xscale("log")
        _count_ticks(ax, [line.get_xdata() for line in ax.get_lines()])
        ax.set_xlabel("Training samples (log scale)")
        ax.set_ylabel(SCORE_LABEL)
        ax.grid(True, which="major", alpha=0.3)
        ax.margins(x=0.2, y=0.15)
    fig.suptitle(title, fontsize=12)
    _legend(fig, methods, styles, below=True)
    return fig


def _count_ticks(ax: Axes, xs: Sequence[Sequence[float]]) -> None:
    """Ticks at the plotted values, labelled as counts (600, 2K, 4M)."""
    values = sorted({float(x) for line in xs for x in line if np.isfinite(x)})
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_count(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _method_lines(ax: Axes, frame: pd.DataFrame, style: Style) -> dict[str, str]:
    """A line per method; returns {method label: colour}."""
    colors = {}
    for method, group in frame.groupby("method", sort=False):
        group = group.sort_values("num_samples")
        color = _method_color(method)
        ax.plot(
            group["num_samples"],
            group["average_score"],
            linestyle=style.linestyle,
            **style.marker_kwargs(color),
        )
        _error_bars(ax, group, "num_samples", color)
        for _, row in group.iterrows():
            ax.annotate(
                str(row["data"]),
                (row["num_samples"], row["average_score"]),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
                color=color,
            )
        colors[_method_label(method)] = color
    return colors


def _error_bars(ax: Axes, group: pd.DataFrame, x: str | pd.Series, color: str) -> None:
    xs = group[x] if isinstance(x, str) else x
    ci = group["ci_low"].notna() & group["ci_high"].notna()
    if not ci.any():
        return
    ax.errorbar(
        xs[ci],
        group.loc[ci, "average_score"],
        yerr=[
            group.loc[ci, "average_score"] - group.loc[ci, "ci_low"],
            group.loc[ci, "ci_high"] - group.loc[ci, "average_score"],
        ],
        fmt="none",
        ecolor=color,
        elinewidth=1,
        capsize=3,
        alpha=0.6,
    )


# Score against base model size ------------------------------------------------------------------


def plot_model_size(
    runs: pd.DataFrame,
    *,
    paper: pd.DataFrame | None = None,
    title: str = FIGURE_TITLES["model_size"],
    primary: Style = OURS,
) -> Figure:
    """Average score per base model (ordered by parameter count), one line per recipe (method
    and data, e.g. `lora(2m)`) across base models. The paper's recipes are drawn when they match
    one of ours or span several base models (`lora(2m)`: 7B and 13B)."""
    ours = _scored(runs)
    ours = ours[ours["base_params"].notna()]
    if ours.empty:
        raise AnalysisError(
            "score against model size: no run with an average score and a base model size"
        )
    ours, theirs = _with_recipes(ours, _scored(paper))
    both = pd.concat([ours, theirs], ignore_index=True) if len(theirs) else ours
    sizes = both.groupby("base_model")["base_params"].median().sort_values()
    position = {m: i for i, m in enumerate(sizes.index)}
    recipes = list(dict.fromkeys(sort_runs(both)["recipe"]))
    palette = colormaps["tab10"]
    colors = {r: palette(i % 10) for i, r in enumerate(recipes)}
    # Recipes side by side within a base model's column, the paper's right of ours.
    width = min(0.5 / max(len(recipes), 1), 0.08)
    dodge = {r: (i - (len(recipes) - 1) / 2) * width for i, r in enumerate(recipes)}
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.subplots()
    styles = [primary]
    for style, frame, shift in ((primary, ours, 0.0), (PAPER, theirs, 0.04)):
        if frame.empty:
            continue
        styles.append(style)
        for recipe, group in frame.groupby("recipe", sort=False):
            group = group.sort_values("base_params")
            xs = group["base_model"].map(position) + dodge[recipe] + shift
            ax.plot(
                xs,
                group["average_score"],
                linestyle=style.linestyle,
                **style.marker_kwargs(colors[recipe]),
            )
            _error_bars(ax, group, xs, colors[recipe])
    _model_size_axes(ax, sizes, ours)
    fig.suptitle(title, fontsize=12)
    _legend(fig, colors, styles)
    return fig


def _with_recipes(ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames with a `recipe` column; of the paper's runs, only the recipes that match one
    of ours or span several base models (drawn as a line across them)."""
    ours = ours.assign(recipe=ours.apply(_recipe, axis=1))
    if theirs.empty:
        return ours, theirs
    theirs = theirs.assign(recipe=theirs.apply(_recipe, axis=1))
    spans = theirs.groupby("recipe")["base_model"].nunique()
    keep = set(ours["recipe"]) | set(spans[spans > 1].index)
    return ours, theirs[theirs["recipe"].isin(keep)]


def _model_size_axes(ax: Axes, sizes: pd.Series, ours: pd.DataFrame) -> None:
    """A column per base model (`sizes`: parameters by model, ascending), labelled with its
    size; a note when our runs hold a single base model."""
    ax.set_xticks(range(len(sizes)), [f"{m}\n{format_count(n)} params" for m, n in sizes.items()])
    ax.set_xlim(-0.6, len(sizes) - 0.4)
    ax.set_xlabel("Base model (ordered by parameter count)")
    ax.set_ylabel(SCORE_LABEL)
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.15)
    if ours["base_model"].nunique() == 1:
        _note(
            ax,
            f"Only one base model among these runs ({ours['base_model'].iloc[0]}): "
            "train others (model=...) to see a trend.",
        )


# Score against cost -----------------------------------------------------------------------------


def pareto_front(runs: pd.DataFrame, cost: str, score: str = "average_score") -> pd.DataFrame:
    """The runs no other run beats on both counts (lower or equal cost and higher or equal
    score, one of them strictly), sorted by cost."""
    frame = runs[runs[cost].notna() & runs[score].notna()]
    scores, costs = frame[score].to_numpy(dtype=float), frame[cost].to_numpy(dtype=float)
    front, best = [], -np.inf
    for position in np.lexsort((-scores, costs)):  # by cost, then best score first
        if scores[position] > best:
            front.append(position)
            best = scores[position]
    return frame.iloc[front]


def plot_cost(
    runs: pd.DataFrame,
    *,
    cost: str = "hours_per_epoch",
    paper: pd.DataFrame | None = None,
    title: str | None = None,
    primary: Style = OURS,
) -> Figure:
    """Average score against training cost (`hours_per_epoch` or `gpu_hours`, log axis), one
    point per run, with the Pareto front of each source."""
    if cost not in COST_LABELS:
        raise ValueError(f"cost must be one of {sorted(COST_LABELS)}, got {cost!r}")
    ours = _scored(runs)
    ours = ours[ours[cost].notna() & (ours[cost] > 0)]
    if ours.empty:
        raise AnalysisError(f"score against cost: no run with an average score and {cost}")
    theirs = _scored(paper)
    if not theirs.empty:
        theirs = theirs[theirs[cost].notna() & (theirs[cost] > 0)]
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.subplots()
    methods: dict[str, str] = {}
    styles, fronts, labels = [primary], [], []
    for style, frame, front_color in ((primary, ours, "black"), (PAPER, theirs, "#888888")):
        if frame.empty:
            continue
        styles.append(style)
        methods.update(_cost_points(ax, frame, cost, style))
        labels += _point_labels(ax, frame, cost)
        fronts.append(_pareto_line(ax, frame, cost, style, front_color))
    if paper is not None and theirs.empty:
        _note(ax, f"The paper reports no {COST_NOUNS[cost]}.")
    _cost_axes(ax, cost)
    _place_labels(ax, labels)
    fig.suptitle(title or FIGURE_TITLES[f"cost_{cost}"], fontsize=12)
    _legend(fig, methods, styles, fronts)
    return fig


def _cost_points(ax: Axes, frame: pd.DataFrame, cost: str, style: Style) -> dict[str, str]:
    """A point per run, coloured by method, with its interval; returns {method label: colour}."""
    colors = {}
    for method, group in frame.groupby("method", sort=False):
        color = _method_color(method)
        colors[_method_label(method)] = color
        ax.plot(group[cost], group["average_score"], linestyle="none", **style.marker_kwargs(color))
        _error_bars(ax, group, cost, color)
    return colors


def _pareto_line(ax: Axes, frame: pd.DataFrame, cost: str, style: Style, color: str) -> Line2D:
    """The Pareto front of `frame` as a step line (for the legend, it is returned)."""
    front = pareto_front(frame, cost)
    (line,) = ax.plot(
        front[cost],
        front["average_score"],
        drawstyle="steps-post",
        linestyle=style.linestyle,
        color=color,
        linewidth=1.2,
        alpha=0.8,
        label=f"Pareto front ({style.label})",
    )
    return line


def _cost_axes(ax: Axes, cost: str) -> None:
    """A log axis of durations at round values (5 s, 2 min, 10 h) for `cost`."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(_TimeLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_hours(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{COST_LABELS[cost]} (log scale)")
    ax.set_ylabel(SCORE_LABEL)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.3, y=0.15)


# Round durations, in hours: seconds, minutes, hours.
_ROUND_HOURS = (
    *(s / 3600 for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30)),
    *(m / 60 for m in (1, 2, 5, 10, 20, 30)),
    *(h * 10**k for k in range(5) for h in (1, 2, 5)),
)


class _TimeLocator(Locator):
    """At most 8 ticks at round durations (5 s, 2 min, 10 h) within the view."""

    def __call__(self) -> list[float]:
        low, high = sorted(self.axis.get_view_interval())
        ticks = [t for t in _ROUND_HOURS if low <= t <= high]
        step = -(-len(ticks) // 8)
        return ticks[::step] if ticks else []


def _point_labels(ax: Axes, frame: pd.DataFrame, cost: str) -> list[tuple]:
    """(x, y, text, colour) per point: its recipe, with the base model where several."""
    common = frame["base_model"].mode().iloc[0]
    out = []
    for _, row in frame.iterrows():
        recipe = _recipe(row)
        text = recipe if row["base_model"] == common else f"{row['base_model']}+{recipe}"
        out.append((row[cost], row["average_score"], text, _method_color(row["method"])))
    return out


_OFFSETS = ((7, 2), (7, -10), (-7, 2), (-7, -10), (0, 9), (0, -17), (12, 12), (12, -20))


def _place_labels(ax: Axes, labels: Sequence[tuple], fontsize: float = 7) -> None:
    """Annotate points, each at the first of a few offsets where its text overlaps no label
    placed before it nor any point (greedy; sizes estimated from the font size)."""
    ax.autoscale_view()
    to_points = 72 / ax.figure.dpi
    points = [ax.transData.transform((x, y)) * to_points for x, y, *_ in labels]
    boxes = [(px - 4, py - 4, px + 4, py + 4) for px, py in points]
    for (x, y, text, color), (px, py) in zip(labels, points, strict=True):
        width, height = 0.58 * fontsize * len(text), fontsize
        for dx, dy in _OFFSETS:
            left = px + dx - (width if dx < 0 else width / 2 if dx == 0 else 0)
            box = (left, py + dy, left + width, py + dy + height)
            if not any(_overlap(box, other) for other in boxes):
                break
        else:
            dx, dy = _OFFSETS[0]
            left = px + dx
            box = (left, py + dy, left + width, py + dy + height)
        boxes.append(box)
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=(dx, dy),
            ha="right" if dx < 0 else "center" if dx == 0 else "left",
            va="bottom",
            fontsize=fontsize,
            color=color,
        )


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# Heatmap ----------------------------------------------------------------------------------------


def plot_category_heatmap(
    runs: pd.DataFrame,
    *,
    paper: pd.DataFrame | None = None,
    title: str = FIGURE_TITLES["categories"],
    primary: Style = OURS,
) -> Figure:
    """Runs × the 9 categories, each cell its mean judge score (grey where unscored); the
    paper's runs below a rule, their labels prefixed `paper:`."""
    ours = sort_runs(runs[runs["evaluated"]])
    if ours.empty:
        raise AnalysisError("category heatmap: no run with evaluation metrics")
    labels = _unique_labels(ours, prefix=f"{PAPER_LABEL}: " if primary is PAPER else "")
    values = ours[list(CATEGORIES)].to_numpy(dtype=float)
    n_ours = len(labels)
    if paper is not None and not paper.empty:
        theirs = sort_runs(paper[paper["evaluated"]])
        labels += _unique_labels(theirs, prefix=f"{PAPER_LABEL}: ")
        values = np.vstack([values, theirs[list(CATEGORIES)].to_numpy(dtype=float)])
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    height = 1.9 + 0.38 * len(labels)
    fig = Figure(figsize=(10, height), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        text = "–" if np.isnan(value) else f"{value:.2f}"
        dark = not np.isnan(value) and value < 0.6
        ax.text(
            j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
        )
    ax.set_xticks(range(len(CATEGORIES)), list(CATEGORIES), rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for tick, label in zip(ax.get_yticklabels(), labels, strict=True):
        if label.startswith(f"{PAPER_LABEL}: "):
            tick.set_fontstyle("italic")
            tick.set_color("#555555")
    if n_ours < len(labels):
        ax.axhline(n_ours - 0.5, color="white", linewidth=3)
    ax.set_xlabel("Category")
    ax.set_ylabel("Run")
    fig.colorbar(image, ax=ax, label="Mean judge score (0–1)", shrink=0.9)
    fig.suptitle(title, fontsize=12)
    return fig


def _unique_labels(frame: pd.DataFrame, prefix: str = "") -> list[str]:
    names = [prefix + str(n).removeprefix(PAPER_RUN_PREFIX) for n in frame["run_name"]]
    counts = pd.Series(names).value_counts()
    return [
        f"{n} [{str(rid)[:7]}]" if counts[n] > 1 else n
        for n, rid in zip(names, frame["run_id"], strict=True)
    ]


# Files ------------------------------------------------------------------------------------------


@dataclass
class FigureFiles:
    """What `write_figures` wrote, and what it could not draw and why."""

    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def markdown_lines(self) -> list[str]:
        """The report's lines for these figures: each PNG as an image (under `figures/`), then
        each figure not drawn with its reason."""
        lines = []
        for path in self.files:
            if path.suffix == ".png":
                lines += [f"![{path.stem}](figures/{path.name})", ""]
        return lines + [f"- `{name}` not drawn: {reason}" for name, reason in self.skipped.items()]


def save_figure(fig: Figure, out_dir: str | Path, stem: str, formats=("png", "svg")) -> list[Path]:
    """Write `<stem>.png` (150 dpi) and `<stem>.svg` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=150)
        paths.append(path)
    return paths


def write_figures(
    runs: pd.DataFrame,
    out_dir: str | Path,
    *,
    overlay_paper: bool = True,
    formats: Sequence[str] = ("png", "svg"),
) -> FigureFiles:
    """Draw every figure into `out_dir`, one set per judge and eval set (file names get a
    `__<judge>` suffix when there is more than one).

    Rows tagged `source=paper` are the overlay (else, with `overlay_paper`, the paper's
    numbers shipped with the package); a table of paper rows alone is drawn as the primary
    data. A figure that has nothing to draw is skipped with its reason, never drawn empty.
    """
    ours, overlay, primary = _primary_and_overlay(runs, overlay_paper)
    result = FigureFiles()
    groups = [s for s in sections(ours) if s.evaluated]
    if not groups:
        result.skipped.update(dict.fromkeys(FIGURES, "no run has evaluation metrics"))
        return result
    for section in groups:
        suffix = f"__{section.slug}" if len(groups) > 1 else ""
        undefined = section.runs["average_score"].isna().all()
        for name in FIGURES:
            if undefined and name != "categories":
                result.skipped[name + suffix] = (
                    f"no run scored by {section.label} has an average score (a category "
                    "without any judged item leaves the macro average undefined)"
                )
                continue
            try:
                fig = _draw(name, section.runs, overlay, primary, subtitle=section.label)
            except AnalysisError as err:
                result.skipped[name + suffix] = str(err)
                continue
            result.files += save_figure(fig, out_dir, name + suffix, formats)
    return result


def _primary_and_overlay(
    runs: pd.DataFrame, overlay_paper: bool
) -> tuple[pd.DataFrame, pd.DataFrame | None, Style]:
    """The runs to draw, the paper's runs to overlay (None: none) and the style of the former
    (see `write_figures`)."""
    ours = runs[runs["source"] != "paper"]
    paper_rows = runs[runs["source"] == "paper"]
    if ours.empty:
        return paper_rows, None, PAPER
    if not overlay_paper:
        return ours, None, OURS
    return ours, paper_rows if len(paper_rows) else paper_frame(), OURS


def _draw(
    name: str, runs: pd.DataFrame, paper: pd.DataFrame | None, primary: Style, subtitle: str
) -> Figure:
    """The figure `name` (one of FIGURES), its title followed by `subtitle` on a second line."""
    title = f"{FIGURE_TITLES[name]}\n{subtitle}"
    if name.startswith("cost_"):
        cost = name.removeprefix("cost_")
        return plot_cost(runs, cost=cost, paper=paper, title=title, primary=primary)
    plot = {
        "data_scaling": plot_data_scaling,
        "model_size": plot_model_size,
        "categories": plot_category_heatmap,
    }[name]
    return plot(runs, paper=paper, title=title, primary=primary)


def log_to_run(
    tracking_uri: str, run_id: str, local_dir: str | Path, artifact_path: str = "analysis"
) -> None:
    """Log every file under `local_dir` (tables, figures) as artifacts of a run, e.g. a sweep's
    parent run, under `artifact_path`."""
    MlflowClient(tracking_uri=tracking_uri).log_artifacts(run_id, str(local_dir), artifact_path)
