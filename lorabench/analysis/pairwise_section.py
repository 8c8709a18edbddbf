"""The report's head-to-head section and its figures, from the pairwise verdicts a sweep's
head-to-head stage logs to its parent run (`pairwise_judging.record_head_to_head`:
`pairwise/verdicts.csv`) and their statistics (`lorabench.analysis.pairwise`): a table of pairs
per judge, the Bradley–Terry ratings, a run × run win-rate matrix and a ratings figure.

    verdicts = load_pairwise_verdicts(uri, "lorabench-demo")   # every sweep's, re-judged once
    part = write_pairwise(verdicts, runs, "reports/demo", StatsConfig())
    part.markdown                         # the section; figures/pairwise_*.{png,svg}
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.figures import FigureFiles, save_figure
from lorabench.analysis.pairwise import (
    ALL,
    ELO_ANCHOR,
    VERDICT_COLUMNS,
    VERDICT_FIELDS,
    bradley_terry,
    length_controlled_win_rates,
    position_consistency,
    win_rates,
)
from lorabench.analysis.runs import AnalysisError, open_experiment, sort_runs, sweep_parents
from lorabench.config.schema import StatsConfig

FIGURE_TITLES = {
    "pairwise_win_rates": "Head to head: the row's win rate against the column (a tie half)",
    "pairwise_ratings": "Head to head: Bradley–Terry ratings",
}
"""Each head-to-head figure (its file name's stem) and its title."""
PAIRWISE_FIGURES = tuple(FIGURE_TITLES)

CELL_COLUMNS = ("judge", "run", "opponent", "judged", "win_rate", "ci_low", "ci_high")
"""`win_rate_cells`' columns: `run`'s win rate against `opponent` and its interval."""
RATING_LABEL = "Rating (Elo-like: anchor 1000, +400 = 10× the odds of winning)"
NOT_JUDGED = "no sweep of this report judged runs head to head (sweep.pairwise=true)"
_TEXT = ("judge", "run_a", "run_b", "category", "status", "reason")
"""The verdict frame's text columns read as text, whatever they hold (a run named `NA`)."""

# Loading ----------------------------------------------------------------------------------------


def load_pairwise_verdicts(
    tracking_uri: str, experiment: str, parent_run_id: str | None = None
) -> pd.DataFrame:
    """The item verdicts (`contract.PAIRWISE_VERDICT_COLUMNS`) of every sweep parent run of
    `experiment` (tag `sweep=true`; only `parent_run_id` when given) that has
    `contract.ARTIFACT_PAIRWISE_VERDICTS`, concatenated. Where several parents judged the same
    (judge, run_a, run_b, item), the newest parent's row (by its start time) is kept: a
    re-judged sweep counts its items once. Empty, with those columns, when there are none;
    `attrs["parents"]` lists the parents read, oldest first. AnalysisError when the store or
    the experiment is missing."""
    client, experiment_id = open_experiment(tracking_uri, experiment)
    parents = sweep_parents(client, experiment_id, parent_run_id)
    frames, read = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for parent in parents:
            frame = _parent_verdicts(client, parent, Path(tmp))
            if frame is not None:
                frames.append(frame)
                read.append(parent.info.run_id)
    verdicts = verdict_frame(frames)
    verdicts.attrs["parents"] = read
    return verdicts


def _parent_verdicts(client: MlflowClient, parent: Run, tmp: Path) -> pd.DataFrame | None:
    """A parent's verdicts, or None when its sweep did not judge head to head."""
    run_id = parent.info.run_id
    listed = {f.path for f in client.list_artifacts(run_id, contract.ARTIFACT_PAIRWISE_DIR)}
    if contract.ARTIFACT_PAIRWISE_VERDICTS not in listed:
        return None
    # A folder per parent: every parent's artifact has the same name.
    target = tmp / run_id
    target.mkdir()
    local = client.download_artifacts(run_id, contract.ARTIFACT_PAIRWISE_VERDICTS, str(target))
    # Only an empty field is missing: `tie`, `NA` or `None` are values (a verdict, a run name).
    text = {column: str for column in _TEXT}
    return pd.read_csv(local, dtype=text, keep_default_na=False, na_values=[""])


def verdict_frame(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Verdict frames (oldest first) as one of `VERDICT_COLUMNS`, a (judge, run_a, run_b, item)
    kept from the last frame that has it; the verdicts (`first`, `second`, `verdict`) and
    `consistent` None where empty, as the judges write them (`ItemVerdict.to_row`)."""
    parts = [f for f in frames if len(f)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame = frame.reindex(columns=list(VERDICT_COLUMNS))
    frame = frame.drop_duplicates(["judge", "run_a", "run_b", "item"], keep="last")
    frame = frame.reset_index(drop=True)
    for column in (*VERDICT_FIELDS, "consistent"):
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)
    # Read back from CSV, `consistent` is text or bool depending on its other rows.
    frame["consistent"] = frame["consistent"].map(lambda v: None if v is None else str(v) == "True")
    for column in ("length_a", "length_b"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["reason"] = frame["reason"].astype(object).where(frame["reason"].notna(), "")
    return frame


# Tables -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairwiseTables:
    """The statistics of a verdict frame, at the report's `stats` (computed once: the
    Bradley–Terry interval refits the model on every bootstrap draw)."""

    win_rates: pd.DataFrame
    bradley_terry: pd.DataFrame
    length_controlled: pd.DataFrame
    position_consistency: pd.DataFrame


def pairwise_tables(verdicts: pd.DataFrame, stats: StatsConfig) -> PairwiseTables:
    """`verdicts`' win rates, ratings, length-controlled win rates and position consistency,
    with `stats`' bootstrap samples, level and seed."""
    sampling = {"samples": stats.bootstrap_samples, "level": stats.level, "seed": stats.seed}
    return PairwiseTables(
        win_rates=win_rates(verdicts, **sampling),
        bradley_terry=bradley_terry(verdicts, **sampling),
        length_controlled=length_controlled_win_rates(verdicts, level=stats.level),
        position_consistency=position_consistency(verdicts),
    )


def run_order(names: Iterable[str], runs: pd.DataFrame | None = None) -> list[str]:
    """`names` (once each) in the report's order of `runs` (paper order, `sort_runs`), those
    not among `runs` after them, alphabetically."""
    wanted = list(dict.fromkeys(str(n) for n in names))
    known = [] if runs is None or runs.empty else list(sort_runs(runs)["run_name"])
    ordered = [n for n in dict.fromkeys(known) if n in wanted]
    return ordered + sorted(n for n in wanted if n not in ordered)


def win_rate_cells(rates: pd.DataFrame) -> pd.DataFrame:
    """The win-rate matrix's judged cells (`CELL_COLUMNS`), from `win_rates`' table: a pair
    judged as (A, B) gives A's cell against B (its win rate and interval) and B's against A
    (1 − the rate, the interval flipped). A pair judged in both orders keeps each order's own
    cell. Pairs without a judged item have no cell."""
    judged = rates[rates["judged"] > 0]
    direct = pd.DataFrame(
        {
            "judge": judged["judge"],
            "run": judged["run_a"],
            "opponent": judged["run_b"],
            "judged": judged["judged"],
            "win_rate": judged["win_rate"],
            "ci_low": judged["ci_low"],
            "ci_high": judged["ci_high"],
        }
    )
    reverse = direct.assign(
        run=direct["opponent"],
        opponent=direct["run"],
        win_rate=1 - direct["win_rate"],
        ci_low=1 - direct["ci_high"],
        ci_high=1 - direct["ci_low"],
    )
    # The direct cells first: a cell judged in its own order wins over a flipped one.
    cells = pd.concat([direct, reverse], ignore_index=True)
    cells = cells.drop_duplicates(["judge", "run", "opponent"], keep="first")
    return cells.reset_index(drop=True).reindex(columns=list(CELL_COLUMNS))


# Figures ----------------------------------------------------------------------------------------


def plot_win_rates(
    rates: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    title: str = FIGURE_TITLES["pairwise_win_rates"],
) -> Figure:
    """Per judge a run × run heatmap from `win_rates`' table: each cell the row's win rate
    against the column (a tie half) and its interval, blank where the pair was not judged, on a
    diverging colour map centred on an even split (0.5). Runs in `run_order`, every run of a
    judge's pairs (one whose items all went unjudged has a blank row); a judge without a judged
    item has no panel."""
    cells = win_rate_cells(rates)
    if cells.empty:
        raise AnalysisError("win-rate matrix: no pair of runs has a judged item")
    judges = sorted(cells["judge"].unique())
    names = {
        judge: run_order(pd.concat([pairs["run_a"], pairs["run_b"]]), runs)
        for judge, pairs in rates.groupby("judge")
    }
    size = max(len(names[judge]) for judge in judges)
    fig = Figure(
        figsize=(len(judges) * (1.15 * size + 2.6) + 1.2, 0.8 * size + 2.4), layout="constrained"
    )
    axes = fig.subplots(1, len(judges), squeeze=False)[0]
    for ax, judge in zip(axes, judges, strict=True):
        image = _win_rate_panel(ax, cells[cells["judge"] == judge], names[judge])
        ax.set_title(f"judge {judge}", fontsize=10)
    fig.colorbar(image, ax=list(axes), label="Row's win rate (a tie half)", shrink=0.9)
    fig.suptitle(title, fontsize=12)
    return fig


def _win_rate_panel(ax: Axes, cells: pd.DataFrame, names: list[str]) -> AxesImage:
    """One judge's matrix of `names`, its cells labelled with the rate and the interval."""
    grid = {
        measure: cells.pivot(index="run", columns="opponent", values=measure)
        .reindex(index=names, columns=names)
        .to_numpy(dtype=float)
        for measure in ("win_rate", "ci_low", "ci_high")
    }
    # coolwarm's centre is grey, not white: an even split stays apart from an unjudged cell.
    cmap = colormaps["coolwarm"].with_extremes(bad="white")
    # vmin and vmax symmetric about 0.5 put the map's centre at an even split.
    rate = grid["win_rate"]
    image = ax.imshow(np.ma.masked_invalid(rate), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    fontsize = 8 if len(names) <= 6 else 6
    for (i, j), value in np.ndenumerate(rate):
        if np.isnan(value):
            continue  # not judged: blank
        text = f"{value:.2f}\n[{grid['ci_low'][i, j]:.2f}, {grid['ci_high'][i, j]:.2f}]"
        color = "white" if abs(value - 0.5) > 0.35 else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("Against (column)")
    ax.set_ylabel("Run (row)")
    return image


def _rated(ratings: pd.DataFrame) -> list[tuple[str, str]]:
    """The (judge, comparison group) whose ratings have a finite maximum (a free run with a
    rating)."""
    free = ratings[~ratings["anchor"].astype(bool) & ratings["elo"].notna()]
    return sorted(set(zip(free["judge"], free["group"], strict=True)))


def plot_ratings(
    ratings: pd.DataFrame, *, title: str = FIGURE_TITLES["pairwise_ratings"]
) -> Figure:
    """Per judge and comparison group (runs compared through some chain of pairs: ratings mean
    something within a group only), each run's Bradley–Terry rating (`bradley_terry`' table,
    Elo-like scale) with its bootstrap interval as a horizontal error bar, best at the top;
    the group's anchor (fixed at 1000) a diamond. A group whose ratings have no finite maximum
    has no panel."""
    panels = _rated(ratings)
    if not panels:
        raise AnalysisError(
            "Bradley–Terry ratings: no group of compared runs has ratings with a finite "
            "maximum (in each, a run won, or lost, every comparison)"
            if len(ratings)
            else "Bradley–Terry ratings: no judged item"
        )
    sizes = [((ratings["judge"] == j) & (ratings["group"] == g)).sum() for j, g in panels]
    fig = Figure(figsize=(8, sum(0.42 * n + 1.3 for n in sizes) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=sizes)[:, 0]
    for ax, (judge, group) in zip(axes, panels, strict=True):
        _rating_panel(ax, ratings[(ratings["judge"] == judge) & (ratings["group"] == group)])
        ax.set_title(f"judge {judge}: the runs compared with `{group}`", fontsize=10)
    axes[-1].set_xlabel(RATING_LABEL)
    fig.suptitle(title, fontsize=12)
    # One legend for every panel, below them: inside a panel it covers the ratings.
    fig.legend(
        handles=[
            Line2D([], [], marker="o", linestyle="", color="#1f77b4", label="run"),
            Line2D([], [], marker="D", linestyle="", color="#333333", label="anchor (fixed)"),
        ],
        loc="outside lower center",
        ncol=2,
        frameon=False,
        fontsize=8,
    )
    return fig


def _rating_panel(ax: Axes, ratings: pd.DataFrame) -> None:
    """One judge's runs, sorted by rating (the best at the top)."""
    rows = ratings.sort_values(["elo", "run"], ascending=[True, False]).reset_index(drop=True)
    ys = np.arange(len(rows))
    elo = rows["elo"].to_numpy(dtype=float)
    # An interval no bootstrap draw could refit (NaN) is drawn as none, not as a crash.
    below = np.nan_to_num(np.clip(elo - rows["elo_low"].to_numpy(dtype=float), 0, None))
    above = np.nan_to_num(np.clip(rows["elo_high"].to_numpy(dtype=float) - elo, 0, None))
    anchor = rows["anchor"].astype(bool).to_numpy()
    ax.errorbar(elo, ys, xerr=[below, above], fmt="none", ecolor="#555555", capsize=3)
    ax.plot(elo[~anchor], ys[~anchor], "o", color="#1f77b4", label="run")
    ax.plot(elo[anchor], ys[anchor], "D", color="#333333", label="anchor (fixed)")
    ax.axvline(ELO_ANCHOR, color="#999999", linestyle=":", linewidth=1)
    ax.set_yticks(ys, list(rows["run"]), fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.margins(y=0.15)


def write_pairwise_figures(
    tables: PairwiseTables,
    runs: pd.DataFrame | None,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("png", "svg"),
) -> FigureFiles:
    """Draw the head-to-head figures (PAIRWISE_FIGURES) into `out_dir`; one with nothing to
    draw is skipped with its reason, never drawn empty."""
    result = FigureFiles()
    if tables.win_rates.empty:
        result.skipped.update(dict.fromkeys(PAIRWISE_FIGURES, NOT_JUDGED))
        return result
    plots = {
        "pairwise_win_rates": lambda: plot_win_rates(tables.win_rates, runs),
        "pairwise_ratings": lambda: plot_ratings(tables.bradley_terry),
    }
    for name, plot in plots.items():
        try:
            fig = plot()
        except AnalysisError as err:
            result.skipped[name] = str(err)
            continue
        result.files += save_figure(fig, out_dir, name, formats)
    return result


# The report's section ---------------------------------------------------------------------------

SECTION_TITLE = "## Head to head (pairwise judge)"


def _preamble(stats: StatsConfig) -> str:
    return (
        "> A pairwise judge reads two runs' answers to the same item and says which is better. "
        "Each item is judged twice, with the answers' order swapped; A (or B) wins the item "
        "only when both orders say so, and two orders that disagree are a tie and a position "
        "inconsistency. An item without a verdict (a reply that could not be read, an error) "
        "is left out of every rate and counted, never taken for a tie. **Win rate**: A's share "
        f"of the judged items with a tie as half a win, its {stats.level:.0%} interval a paired "
        f"bootstrap over the items, resampled within their category ({stats.bootstrap_samples}"
        " draws). **Bradley–Terry ratings**: every run of a judge rated at once from all its "
        "pairs (Arena-Hard's model), on an Elo-like scale (400 points a factor of 10 in the "
        "odds of winning), per group of runs compared through some chain of pairs (nothing ties "
        "one group's scale to another's), anchored at 1000 at the group's run with the most "
        "comparisons. "
        "**Length-controlled win rate**: AlpacaEval 2's regression of the item outcome on the "
        "answers' length difference, read at no difference. See `docs/judges.md`."
    )


def _rate(value: float, low: float, high: float) -> str:
    if pd.isna(value):
        return "—"
    return f"{value:.2f}" + (f" [{low:.2f}, {high:.2f}]" if pd.notna(low) else "")


def _lc_cell(row: pd.Series | None) -> str:
    """The length-controlled win rate, its interval, or why it is not length controlled."""
    if row is None:
        return "—"
    cell = _rate(row["lc_win_rate"], row["lc_ci_low"], row["lc_ci_high"])
    return f"{cell} ({row['note']})" if row["note"] else cell


def _consistency_cell(row: pd.Series | None) -> str:
    if row is None or not row["judged"]:
        return "—"
    return f"{row['consistency']:.2f} ({row['consistent']:.0f} of {row['judged']:.0f})"


def pairs_table(
    tables: PairwiseTables, judge: str, runs: pd.DataFrame | None, level: float
) -> list[str]:
    """One judge's table of pairs (Markdown lines), in the report's order of runs; intervals
    at `level`."""
    rates = tables.win_rates[tables.win_rates["judge"] == judge]
    order = {n: i for i, n in enumerate(run_order(pd.concat([rates.run_a, rates.run_b]), runs))}
    rates = rates.sort_values(["run_a", "run_b"], key=lambda s: s.map(order))
    lc = tables.length_controlled.set_index(["judge", "run_a", "run_b"])
    pc = tables.position_consistency.set_index(["judge", "run_a", "run_b"])
    lines = [
        f"| A | B | Items judged | A wins | Ties | B wins | Win rate of A [{level:.0%} interval] "
        "| Length-controlled | Position consistency |",
        "| --- | --- | --: | --: | --: | --: | --: | --: | --: |",
    ]
    for row in rates.itertuples(index=False):
        key = (judge, row.run_a, row.run_b)
        lines.append(
            f"| `{row.run_a}` | `{row.run_b}` | {row.judged} | {row.wins} | {row.ties} "
            f"| {row.losses} | {_rate(row.win_rate, row.ci_low, row.ci_high)} "
            f"| {_lc_cell(lc.loc[key] if key in lc.index else None)} "
            f"| {_consistency_cell(pc.loc[key] if key in pc.index else None)} |"
        )
    return lines


def unjudged_lines(verdicts: pd.DataFrame, judge: str) -> list[str]:
    """The items one judge left without a verdict, per pair, counted by status."""
    rows = verdicts[(verdicts["judge"] == judge) & verdicts["verdict"].isna()]
    lines = []
    for (run_a, run_b), pair in rows.groupby(["run_a", "run_b"], sort=True):
        counts = pair["status"].fillna("unknown").value_counts().sort_index()
        why = ", ".join(f"{status} {n}" for status, n in counts.items())
        lines.append(f"- `{run_a}` vs `{run_b}`: {len(pair)} unjudged ({why})")
    if not lines:
        return []
    return ["Items without a verdict (left out of the rates above, never a tie):", "", *lines]


def _elo_cell(row: Any) -> str:
    """A rating (a row of `bradley_terry`' table) with its interval, or why it has none."""
    if pd.isna(row.elo):
        return "— (no finite maximum)"
    if row.anchor:
        return f"{row.elo:.0f} (anchor)"
    if pd.isna(row.elo_low):
        return f"{row.elo:.0f} (no interval: no bootstrap refit had a finite maximum)"
    return f"{row.elo:.0f} [{row.elo_low:.0f}, {row.elo_high:.0f}]"


def ratings_table(ratings: pd.DataFrame, stats: StatsConfig) -> list[str]:
    """One judge's Bradley–Terry ratings (Markdown lines), per comparison group (named by its
    anchor) the best first."""
    rows = ratings.sort_values(
        ["group", "elo", "run"], ascending=[True, False, True], na_position="last"
    )
    lines = [
        f"| Compared with (anchor) | Run | Rating [{stats.level:.0%} interval] "
        "| Log-odds against the anchor | Item verdicts |",
        "| --- | --- | --: | --: | --: |",
    ]
    for row in rows.itertuples(index=False):
        log_odds = "—" if pd.isna(row.rating) else f"{row.rating:+.2f}"
        lines.append(
            f"| `{row.group}` | `{row.run}` | {_elo_cell(row)} | {log_odds} | {row.comparisons} |"
        )
    draws = int(rows["draws"].max()) if len(rows) else 0
    if 0 < draws < stats.bootstrap_samples:
        lines += [
            "",
            f"The intervals rest on {draws} of {stats.bootstrap_samples} bootstrap refits: the "
            "others had no finite maximum (a run won, or lost, all its drawn comparisons).",
        ]
    return lines


def _overall_consistency(tables: PairwiseTables, judge: str) -> str:
    """A judge's position consistency and first-position share over all its pairs."""
    pc = tables.position_consistency
    row = pc[(pc["judge"] == judge) & (pc["run_a"] == ALL) & (pc["run_b"] == ALL)]
    if row.empty or not row["judged"].iloc[0]:
        return "No item was judged in both orders."
    r = row.iloc[0]
    first = "—" if pd.isna(r["first_position"]) else f"{r['first_position']:.2f}"
    return (
        f"Over all pairs the two orders agree on {r['consistent']:.0f} of {r['judged']:.0f} "
        f"items ({r['consistency']:.0%}); of the {r['order_verdicts']:.0f} single-order "
        f"verdicts that pick an answer, a share of {first} picks the one shown first (0.5 "
        "without position bias)."
    )


def _judge_lines(
    verdicts: pd.DataFrame,
    tables: PairwiseTables,
    judge: str,
    runs: pd.DataFrame | None,
    stats: StatsConfig,
) -> list[str]:
    """One judge's part of the section: its pairs, unjudged items, consistency, ratings."""
    ratings = tables.bradley_terry[tables.bradley_terry["judge"] == judge]
    lines = [*pairs_table(tables, judge, runs, stats.level), ""]
    unjudged = unjudged_lines(verdicts, judge)
    lines += [*unjudged, ""] if unjudged else []
    lines += [_overall_consistency(tables, judge), ""]
    if len(ratings):
        lines += ["Bradley–Terry ratings:", "", *ratings_table(ratings, stats), ""]
    return lines


def pairwise_markdown(
    verdicts: pd.DataFrame,
    runs: pd.DataFrame | None,
    stats: StatsConfig | None = None,
    figures: FigureFiles | None = None,
    *,
    tables: PairwiseTables | None = None,
) -> str:
    """The report's head-to-head section: per judge the table of pairs (items judged, A's wins,
    ties and B's wins, A's win rate with its interval, the length-controlled win rate, position
    consistency), the items left unjudged by status, the Bradley–Terry ratings, and `figures`
    (paths under `figures/`) with any skipped. `tables` (`pairwise_tables(verdicts, stats)`)
    saves computing them again."""
    stats = stats or StatsConfig()
    lines = [SECTION_TITLE, ""]
    if verdicts.empty:
        lines += [
            f"{NOT_JUDGED[0].upper()}{NOT_JUDGED[1:]}: a sweep with it has a pairwise judge "
            "compare its runs' answers, pair by pair, when it closes, and logs the verdicts to "
            f"its parent run (`{contract.ARTIFACT_PAIRWISE_VERDICTS}`).",
            "",
        ]
        return "\n".join(lines)
    tables = tables or pairwise_tables(verdicts, stats)
    lines += [_preamble(stats), ""]
    parents = verdicts.attrs.get("parents") or []
    if parents:
        names = ", ".join(f"`{p}`" for p in parents)
        several = len(parents) > 1
        again = "; an item judged again by a later sweep counts once, with the later verdict"
        lines += [
            f"Verdicts of the head-to-head stage of sweep{'s' * several} {names}{again * several}.",
            "",
        ]
    judges = sorted(verdicts["judge"].unique())
    for judge in judges:
        if len(judges) > 1:
            lines += [f"### Judge `{judge}`", ""]
        else:
            lines += [f"Judge `{judge}`:", ""]
        lines += _judge_lines(verdicts, tables, judge, runs, stats)
    lines += figures.markdown_lines() if figures else []
    return "\n".join(lines).rstrip("\n") + "\n"


@dataclass
class PairwiseFiles:
    """What `write_pairwise` wrote: the section's Markdown and its figures."""

    markdown: str
    figures: FigureFiles


def write_pairwise(
    verdicts: pd.DataFrame,
    runs: pd.DataFrame | None,
    out_dir: str | Path,
    stats: StatsConfig | None = None,
    *,
    formats: Sequence[str] = ("png", "svg"),
) -> PairwiseFiles:
    """The head-to-head figures into `out_dir/figures` and the section (for
    `out_dir/report.md`), the statistics computed once for both."""
    stats = stats or StatsConfig()
    if verdicts.empty:
        figures = FigureFiles(skipped=dict.fromkeys(PAIRWISE_FIGURES, NOT_JUDGED))
        return PairwiseFiles(pairwise_markdown(verdicts, runs, stats, figures), figures)
    tables = pairwise_tables(verdicts, stats)
    figures = write_pairwise_figures(tables, runs, Path(out_dir) / "figures", formats=formats)
    markdown = pairwise_markdown(verdicts, runs, stats, figures, tables=tables)
    return PairwiseFiles(markdown, figures)
