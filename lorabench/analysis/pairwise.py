"""The statistics of head-to-head (pairwise) judging: a judge sees two runs' answers to one item
and says which is better, once with each answer shown first.

Input is a tidy frame of item verdicts (`VERDICT_COLUMNS`), one row per (judge, pair of runs,
item). `first` is the verdict with A's answer shown first, `second` the one with B's shown first
(mapped back to A/B), and `verdict` their MT-Bench combination (Zheng et al. 2023, "Judging
LLM-as-a-Judge with MT-Bench and Chatbot Arena", §3.4 swapped positions): A only if both orders
say A, B only if both say B, otherwise a tie; None when either order could not be judged. An
unjudged row is left out of every rate and counted (`unjudged`), never taken for a tie.

- `win_rates` / `category_win_rates`: per (judge, A, B) and per category, A's wins, losses and
  ties over the judged items and A's win rate with a tie as half a win, with a percentile
  bootstrap interval at `level` (items resampled within their category, as in `bootstrap`, from
  one numpy Generator seeded with `seed`, so a report is reproducible).
- `position_consistency`: per judge and pair, the share of items judged in both orders whose two
  orders agree (computed from `first` and `second`; the `consistent` column is not read), and
  the first-position share: of the order-level verdicts that pick an answer (not a tie), the
  share that pick whichever answer was shown first (0.5 without position bias). Swapping the
  order turns a position-biased verdict into a tie, so the combined `verdict` is pushed towards
  neither run: the bias costs resolution, not direction.
- `bradley_terry`: ratings of all of a judge's runs at once from every pair's item verdicts, as
  Arena-Hard does (Li et al. 2024, "From Crowdsourced Data to High-Quality Benchmarks:
  Arena-Hard and BenchBuilder Pipeline"): a logistic regression without intercept of "A beats
  B" on +1 (A) / −1 (B) run indicators, a tie half a win for each (a fractional response,
  statsmodels' GLM Binomial; the same fit as Arena-Hard's duplicated rows with a tie split into
  one win each way). One run, the anchor, is fixed at 0 (default: the run in the most judged
  comparisons, the first alphabetically among equals); ratings are log-odds against it and also
  on Arena-Hard's Elo-like scale (anchor 1000, 400 points a factor of 10 in odds). The interval
  refits on bootstrap draws of the items (within categories, every pair's verdicts on a drawn
  item kept together: the same item's difficulty touches every pair). Ratings with no finite
  maximum (a run that won, or lost, all its comparisons) are NaN, and a draw without one is
  left out of the interval and counted (`draws`).
- `length_controlled_win_rates`: AlpacaEval 2's length control (Dubois et al. 2024,
  "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic Evaluators"): per (judge, A,
  B) a logistic GLM of A's item outcome (1 win, 0.5 tie, 0 loss) on an intercept and
  tanh((length_a − length_b) / the pair's standard deviation of that difference); the
  length-controlled win rate is the fitted probability with the length term at 0. This is the
  formula of AlpacaEval's `length_controlled_minimal` GLM, fitted by maximum likelihood: its
  default's instruction-difficulty term (estimated across many models against one baseline)
  and regularisation towards that baseline are left out, since each pair here is fitted alone.

    from lorabench.analysis.pairwise import bradley_terry, win_rates
    table = win_rates(verdicts, samples=stats.bootstrap_samples, level=stats.level,
                      seed=stats.seed)                     # `verdicts`: VERDICT_COLUMNS
    ratings = bradley_terry(verdicts, anchor="tiny+ft(2m)")
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from lorabench import contract
from lorabench.analysis.bootstrap import item_draws, percentile_interval
from lorabench.config.schema import StatsConfig

VERDICT_COLUMNS = contract.PAIRWISE_VERDICT_COLUMNS
"""The item-verdict frame's columns: one row per (judge, run_a, run_b, item); see the module
doc for `first`, `second`, `verdict` ("A", "B", "tie" or None) and `consistent` (None when
unjudged); `length_a`/`length_b` are the answers' lengths in characters."""

VERDICTS = ("A", "B", "tie")
"""A judged verdict's values (None: not judged)."""
VERDICT_FIELDS = ("first", "second", "verdict")
"""The columns that hold a verdict."""
OUTCOME = {"A": 1.0, "tie": 0.5, "B": 0.0}
"""A's score for a verdict: a tie is half a win."""
ALL = "all"
"""`run_a`/`run_b` of position_consistency's row over all of a judge's pairs."""
ELO_ANCHOR = 1000.0
"""The anchor's Elo-like rating (Arena-Hard's)."""
ELO_SCALE = 400 / np.log(10)
"""Elo points per unit of log-odds: 400 points are a factor of 10 in odds (Arena-Hard's)."""

PAIR = ["judge", "run_a", "run_b"]
WIN_RATE_COLUMNS = (
    *PAIR,
    "judged",
    "wins",
    "losses",
    "ties",
    "win_rate",
    "ci_low",
    "ci_high",
    "unjudged",
)
"""win_rates' columns (category_win_rates adds `category` after `run_b`)."""

_DEFAULTS = StatsConfig()


def check_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """`verdicts` with every unjudged marker (None, NaN) as None; ValueError naming a missing
    column or a verdict value outside A, B, tie and None."""
    missing = [c for c in VERDICT_COLUMNS if c not in verdicts.columns]
    if missing:
        raise ValueError(f"item verdicts lack column(s) {', '.join(missing)}")
    out = verdicts.copy()
    for column in VERDICT_FIELDS:
        values = out[column].astype(object).where(out[column].notna(), None)
        bad = sorted({str(v) for v in values.dropna()} - set(VERDICTS))
        if bad:
            raise ValueError(f"column {column} holds {', '.join(map(repr, bad))}: not A, B, tie")
        out[column] = values
    return out


def _outcomes(rows: pd.DataFrame) -> np.ndarray:
    return rows["verdict"].map(OUTCOME).to_numpy(dtype=float)


def _rate_draws(
    judged: pd.DataFrame, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(samples,) bootstrap draws of the judged items' mean outcome, items resampled within
    their category, and from the same draws each category's (samples,) mean."""
    outcomes = _outcomes(judged)
    categories = judged["category"].to_numpy()
    by_category = {c: outcomes[categories == c][None, :] for c in pd.unique(categories)}
    draws = item_draws(by_category, samples, rng)
    sums = {c: m[0][draws[c]].sum(axis=1) for c, m in by_category.items()}
    total = np.sum(list(sums.values()), axis=0) / max(len(outcomes), 1)
    return total, {c: sums[c] / by_category[c].shape[1] for c in by_category}


def _rate_row(rows: pd.DataFrame, draws: np.ndarray | None, level: float) -> dict:
    judged = rows[rows["verdict"].notna()]
    counts = judged["verdict"].value_counts()
    low, high = percentile_interval(draws, level) if draws is not None else (np.nan, np.nan)
    return {
        "judged": len(judged),
        "wins": int(counts.get("A", 0)),
        "losses": int(counts.get("B", 0)),
        "ties": int(counts.get("tie", 0)),
        # The hand count: the bootstrap only gives the interval.
        "win_rate": float(_outcomes(judged).mean()) if len(judged) else np.nan,
        "ci_low": float(low),
        "ci_high": float(high),
        "unjudged": len(rows) - len(judged),
    }


def _rate_tables(
    verdicts: pd.DataFrame, samples: int, level: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """win_rates and category_win_rates from the same draws: one Generator, pairs in sorted
    order, so either table is reproducible from `seed`."""
    verdicts = check_verdicts(verdicts)
    rng = np.random.default_rng(seed)
    overall, per_category = [], []
    for key, rows in verdicts.groupby(PAIR, sort=True):
        judged = rows[rows["verdict"].notna()]
        total, categories = _rate_draws(judged, samples, rng) if len(judged) else (None, {})
        overall.append({**dict(zip(PAIR, key, strict=True)), **_rate_row(rows, total, level)})
        for category, cat_rows in rows.groupby("category", sort=False):
            row = _rate_row(cat_rows, categories.get(category), level)
            per_category.append({**dict(zip(PAIR, key, strict=True)), "category": category, **row})
    category_columns = (*PAIR, "category", *WIN_RATE_COLUMNS[3:])
    return (
        pd.DataFrame(overall, columns=list(WIN_RATE_COLUMNS)),
        pd.DataFrame(per_category, columns=list(category_columns)),
    )


def win_rates(
    verdicts: pd.DataFrame,
    *,
    samples: int = _DEFAULTS.bootstrap_samples,
    level: float = _DEFAULTS.level,
    seed: int = _DEFAULTS.seed,
) -> pd.DataFrame:
    """Per (judge, run_a, run_b): judged items, A's wins, losses and ties (of `verdict`), A's win
    rate with a tie as half a win, its `level` percentile bootstrap interval (`samples` draws
    of the judged items, resampled within categories) and the unjudged items
    (`WIN_RATE_COLUMNS`)."""
    return _rate_tables(verdicts, samples, level, seed)[0]


def category_win_rates(
    verdicts: pd.DataFrame,
    *,
    samples: int = _DEFAULTS.bootstrap_samples,
    level: float = _DEFAULTS.level,
    seed: int = _DEFAULTS.seed,
) -> pd.DataFrame:
    """win_rates per (judge, run_a, run_b, category), categories in order of appearance; the
    intervals come from the same draws as win_rates' with the same seed."""
    return _rate_tables(verdicts, samples, level, seed)[1]


def _consistency_row(rows: pd.DataFrame) -> dict:
    # Only items judged in both orders: each then shows A first once and B first once, so a
    # judge without position bias picks the first-shown answer half the time however strong A
    # is (an item judged in one order only would let A's strength leak into the share).
    both = rows[rows["first"].notna() & rows["second"].notna()]
    consistent = int((both["first"] == both["second"]).sum())
    # Order 1 shows A first, order 2 shows B first (its verdict already mapped back to A/B).
    first_shown = int((both["first"] == "A").sum() + (both["second"] == "B").sum())
    picks = int((both["first"] != "tie").sum() + (both["second"] != "tie").sum())
    return {
        "judged": len(both),
        "consistent": consistent,
        "consistency": consistent / len(both) if len(both) else np.nan,
        "order_verdicts": picks,
        "first_preferred": first_shown,
        "first_position": first_shown / picks if picks else np.nan,
    }


def position_consistency(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per judge and pair, then per judge over all its pairs (`run_a` = `run_b` = ALL): items
    judged in both orders, how many of them the two orders agree on and that share
    (`consistency`), and the order-level verdicts that pick an answer, how many pick the one
    shown first and that share (`first_position`: 0.5 without position bias)."""
    verdicts = check_verdicts(verdicts)
    rows = []
    for judge, by_judge in verdicts.groupby("judge", sort=True):
        for (run_a, run_b), pair in by_judge.groupby(["run_a", "run_b"], sort=True):
            rows.append({"judge": judge, "run_a": run_a, "run_b": run_b, **_consistency_row(pair)})
        rows.append({"judge": judge, "run_a": ALL, "run_b": ALL, **_consistency_row(by_judge)})
    columns = [
        *PAIR,
        "judged",
        "consistent",
        "consistency",
        "order_verdicts",
        "first_preferred",
        "first_position",
    ]
    return pd.DataFrame(rows, columns=columns)


# Bradley–Terry ------------------------------------------------------------------------------


def _item_pair_matrices(
    judged: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray]:
    """A's summed outcome and the verdict count per (item × pair), the pairs (run_a, run_b)
    and each item's category; an item is its (category, item)."""
    keys = judged[["category", "item"]].drop_duplicates().reset_index(drop=True)
    item = pd.MultiIndex.from_frame(keys).get_indexer(
        pd.MultiIndex.from_frame(judged[["category", "item"]])
    )
    pairs = judged[["run_a", "run_b"]].drop_duplicates().sort_values(["run_a", "run_b"])
    pairs = pairs.reset_index(drop=True)
    pair = pd.MultiIndex.from_frame(pairs).get_indexer(
        pd.MultiIndex.from_frame(judged[["run_a", "run_b"]])
    )
    scores = np.zeros((len(keys), len(pairs)))
    counts = np.zeros_like(scores)
    np.add.at(scores, (item, pair), _outcomes(judged))
    np.add.at(counts, (item, pair), 1.0)
    return scores, counts, pairs, keys["category"].to_numpy()


def _design(pairs: pd.DataFrame, runs: list[str], anchor: str) -> np.ndarray:
    """(pairs × runs other than the anchor): +1 for A, −1 for B; the anchor's column is
    dropped, which fixes its rating at 0."""
    free = [r for r in runs if r != anchor]
    x = np.zeros((len(pairs), len(free)))
    for i, (a, b) in enumerate(pairs[["run_a", "run_b"]].itertuples(index=False)):
        if a in free:
            x[i, free.index(a)] += 1.0
        if b in free:
            x[i, free.index(b)] -= 1.0
    return x


def _pair_ends(pairs: pd.DataFrame, runs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's run A and run B, as positions in `runs`."""
    index = {r: i for i, r in enumerate(runs)}
    return pairs["run_a"].map(index).to_numpy(), pairs["run_b"].map(index).to_numpy()


def _finite_mle(score: np.ndarray, count: np.ndarray, ends: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether the ratings have a finite maximum: every run must have beaten, through a chain
    of wins (a tie counts both ways), every other (the win graph is strongly connected; Ford
    1957). Otherwise a run that won, or lost, all its comparisons has a rating of ±∞."""
    a, b = ends
    runs = int(max(a.max(), b.max())) + 1
    beat = np.concatenate([a[score > 0], b[count - score > 0]])
    beaten = np.concatenate([b[score > 0], a[count - score > 0]])
    graph = csr_matrix((np.ones(len(beat)), (beat, beaten)), shape=(runs, runs))
    return connected_components(graph, directed=True, connection="strong")[0] == 1


def _fit_bt(
    score: np.ndarray,
    count: np.ndarray,
    x: np.ndarray,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """The free runs' ratings: a Binomial GLM of A's share of each pair's verdicts, weighted by
    the pair's count (the same estimating equations as one row per verdict)."""
    used = count > 0
    model = sm.GLM(
        score[used] / count[used], x[used], family=sm.families.Binomial(), var_weights=count[used]
    )
    with warnings.catch_warnings():
        # `_finite_mle` has checked the maximum exists. A saturated fit (as many pairs as free
        # runs, e.g. two runs) predicts every pair's share exactly, which statsmodels takes for
        # separation, and its residual scale divides by 0 degrees of freedom: neither is used.
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(model.fit(start_params=start).params)


def _draw_counts(categories: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples × items) how often each item is drawn, items resampled within categories."""
    positions = {c: np.flatnonzero(categories == c) for c in pd.unique(categories)}
    draws = item_draws({c: p[None, :] for c, p in positions.items()}, samples, rng)
    counts = np.zeros((samples, len(categories)))
    rows = np.arange(samples)[:, None]
    for category, where in positions.items():
        np.add.at(counts, (rows, where[draws[category]]), 1.0)
    return counts


def _bt_draws(
    matrices: tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray],
    ends: tuple[np.ndarray, np.ndarray],
    x: np.ndarray,
    fitted: np.ndarray,
    samples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(samples × free runs) refitted ratings; NaN rows for draws without a finite maximum."""
    scores, counts, _, categories = matrices
    weights = _draw_counts(categories, samples, rng)
    out = np.full((samples, x.shape[1]), np.nan)
    for s, (score, count) in enumerate(zip(weights @ scores, weights @ counts, strict=True)):
        if _finite_mle(score, count, ends):
            out[s] = _fit_bt(score, count, x, start=fitted)
    return out


def _comparisons(judged: pd.DataFrame) -> pd.Series:
    return pd.concat([judged["run_a"], judged["run_b"]]).value_counts()


def default_anchor(judged: pd.DataFrame) -> str:
    """The run in the most judged comparisons, the first alphabetically among equals."""
    comparisons = _comparisons(judged)
    return str(min(comparisons.index, key=lambda r: (-comparisons[r], r)))


def _bt_judge(
    judge: str,
    judged: pd.DataFrame,
    samples: int,
    level: float,
    rng: np.random.Generator,
    anchor: str | None,
) -> pd.DataFrame:
    """One judge's rows of bradley_terry."""
    comparisons = _comparisons(judged)
    runs = sorted(comparisons.index)
    anchor = anchor if anchor is not None else default_anchor(judged)
    if anchor not in runs:
        raise ValueError(f"anchor {anchor} has no judged comparison by judge {judge}")
    matrices = _item_pair_matrices(judged)
    scores, counts, pairs, _ = matrices
    x = _design(pairs, runs, anchor)
    score, count, ends = scores.sum(axis=0), counts.sum(axis=0), _pair_ends(pairs, runs)
    free = low = high = np.full(x.shape[1], np.nan)
    refits = 0
    if _finite_mle(score, count, ends):
        free = _fit_bt(score, count, x)
        draws = _bt_draws(matrices, ends, x, free, samples, rng)
        refits = int(np.isfinite(draws[:, 0]).sum())
        if refits:
            low, high = percentile_interval(draws, level)
    # The anchor is fixed at 0, exactly: its interval is a point.
    at = [runs.index(r) for r in runs if r != anchor]
    rating, ci_low, ci_high = (np.zeros(len(runs)) for _ in range(3))
    rating[at], ci_low[at], ci_high[at] = free, low, high
    out = pd.DataFrame(
        {
            "judge": judge,
            "run": runs,
            "anchor": [r == anchor for r in runs],
            "rating": rating,
            "ci_low": ci_low,
            "ci_high": ci_high,
        }
    )
    for elo, column in (("elo", "rating"), ("elo_low", "ci_low"), ("elo_high", "ci_high")):
        out[elo] = ELO_ANCHOR + ELO_SCALE * out[column]
    out["comparisons"] = comparisons[runs].to_numpy()
    out["draws"] = refits
    out["group"] = anchor
    return out


def comparison_groups(judged: pd.DataFrame) -> list[list[str]]:
    """The runs in groups that were compared with each other, through any chain of pairs (the
    comparison graph's connected components), each sorted, the groups in order of their first
    run. Ratings compare runs within a group only: nothing ties one group's scale to
    another's."""
    runs = sorted(set(judged["run_a"]) | set(judged["run_b"]))
    index = {r: i for i, r in enumerate(runs)}
    a, b = judged["run_a"].map(index).to_numpy(), judged["run_b"].map(index).to_numpy()
    graph = csr_matrix((np.ones(len(a)), (a, b)), shape=(len(runs), len(runs)))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[str]] = {}
    for run, label in zip(runs, labels, strict=True):
        groups.setdefault(int(label), []).append(run)
    return list(groups.values())


BT_COLUMNS = (
    "judge",
    "group",
    "run",
    "anchor",
    "rating",
    "ci_low",
    "ci_high",
    "elo",
    "elo_low",
    "elo_high",
    "comparisons",
    "draws",
)
"""bradley_terry's columns: `group` the comparison group's anchor (`comparison_groups`: runs
compared through some chain of pairs; a rating means something against its group only),
`rating` in log-odds against the anchor (0), `elo` the same on Arena-Hard's scale (anchor
1000), `comparisons` the run's judged item verdicts, `draws` the bootstrap refits with a finite
maximum (the interval's; see `_finite_mle`)."""


def bradley_terry(
    verdicts: pd.DataFrame,
    *,
    samples: int = _DEFAULTS.bootstrap_samples,
    level: float = _DEFAULTS.level,
    seed: int = _DEFAULTS.seed,
    anchor: str | None = None,
) -> pd.DataFrame:
    """Per judge and comparison group (`comparison_groups`: runs compared through some chain
    of pairs; a sweep's LoRA-vs-FT pairs at three data sizes are three groups), the
    Bradley–Terry rating of every run from all its group's judged verdicts (see the module
    doc; `BT_COLUMNS`), with `level` percentile intervals from `samples` item bootstrap refits.
    Each group's anchor (its `default_anchor`, the run in the most comparisons; `anchor` in the
    group that holds it) is fixed at 0; ValueError when a judge never compared `anchor`.
    Ratings are NaN when they have no finite maximum (some run won, or lost, every
    comparison of its group)."""
    verdicts = check_verdicts(verdicts)
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame(columns=list(BT_COLUMNS))]
    for judge, by_judge in verdicts.groupby("judge", sort=True):
        judged = by_judge[by_judge["verdict"].notna()]
        if anchor is not None and len(judged) and anchor not in _comparisons(judged).index:
            raise ValueError(f"anchor {anchor} has no judged comparison by judge {judge}")
        for group in comparison_groups(judged) if len(judged) else []:
            rows = judged[judged["run_a"].isin(group)]
            fixed = anchor if anchor in group else None
            frames.append(_bt_judge(str(judge), rows, samples, level, rng, fixed))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.reindex(columns=list(BT_COLUMNS))


# Length control ------------------------------------------------------------------------------


def _length_fit(outcome: np.ndarray, length: np.ndarray, level: float) -> dict:
    """The GLM of one pair's outcomes on the normalised length difference."""
    x = sm.add_constant(length, has_constant="add")
    with warnings.catch_warnings():
        # A separable pair (e.g. A wins exactly when longer) has no finite maximum: say so.
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            # Fractional outcomes (ties) make the binomial variance wrong: a sandwich one.
            fit = sm.GLM(outcome, x, family=sm.families.Binomial()).fit(cov_type="HC0")
        except (PerfectSeparationWarning, ConvergenceWarning) as err:
            return {"lc_win_rate": np.nan, "note": f"no finite fit: {type(err).__name__}"}
    low, high = fit.conf_int(alpha=1 - level)[0]
    return {
        "lc_win_rate": float(_logistic(fit.params[0])),
        "lc_ci_low": float(_logistic(low)),
        "lc_ci_high": float(_logistic(high)),
        "length_coef": float(fit.params[1]),
        "note": "",
    }


def _logistic(z: float) -> float:
    return 1.0 / (1.0 + np.exp(-z))


def _lc_row(judged: pd.DataFrame, level: float) -> dict:
    outcome = _outcomes(judged)
    delta = (judged["length_a"] - judged["length_b"]).to_numpy(dtype=float)
    raw = float(outcome.mean()) if len(outcome) else np.nan
    row = {
        "judged": len(judged),
        "win_rate": raw,
        "mean_length_a": float(judged["length_a"].mean()),
        "mean_length_b": float(judged["length_b"].mean()),
        "lc_win_rate": raw,
        "lc_ci_low": np.nan,
        "lc_ci_high": np.nan,
        "length_coef": np.nan,
    }
    spread = delta.std(ddof=1) if len(delta) > 1 else 0.0
    if not len(outcome):
        return {**row, "note": "no judged item"}
    if len(np.unique(outcome)) < 2:
        # One outcome throughout: nothing can depend on length, and the fit would diverge.
        return {**row, "note": "every judged item has one outcome: not length controlled"}
    if not spread > 0:
        # No variation in the length difference: the term is the intercept's, the rate raw.
        return {**row, "note": "one length difference throughout: not length controlled"}
    return {**row, **_length_fit(outcome, np.tanh(delta / spread), level)}


LC_COLUMNS = (
    "judge",
    "run_a",
    "run_b",
    "judged",
    "win_rate",
    "lc_win_rate",
    "lc_ci_low",
    "lc_ci_high",
    "length_coef",
    "mean_length_a",
    "mean_length_b",
    "note",
)
"""length_controlled_win_rates' columns: `win_rate` the raw one (a tie half a win), `lc_win_rate`
the length-controlled one and its interval, `length_coef` the slope on tanh(Δlength / std),
`note` why a pair was not (or could not be) length controlled (then `lc_win_rate` is the raw
rate, or NaN when the fit has no finite maximum)."""


def length_controlled_win_rates(
    verdicts: pd.DataFrame, *, level: float = _DEFAULTS.level
) -> pd.DataFrame:
    """Per (judge, run_a, run_b), AlpacaEval 2's length-controlled win rate of A (see the module
    doc; `LC_COLUMNS`), with a `level` Wald interval from a heteroscedasticity-robust (HC0)
    covariance mapped through the logistic. ValueError when a judged row lacks a length."""
    verdicts = check_verdicts(verdicts)
    judged = verdicts[verdicts["verdict"].notna()]
    for column in ("length_a", "length_b"):
        if judged[column].isna().any():
            raise ValueError(f"judged item verdicts lack {column} (answer length)")
    rows = []
    for key, pair in verdicts.groupby(PAIR, sort=True):
        row = _lc_row(pair[pair["verdict"].notna()], level)
        rows.append({**dict(zip(PAIR, key, strict=True)), **row})
    return pd.DataFrame(rows, columns=list(LC_COLUMNS))
