"""Synthetic runs with known structure for the statistics tests: item scores built from an
item effect, a run effect (method, data size, seed) and noise, in the tidy tables the analysis
reads (`runs.frame_from_records`, `items.ITEM_COLUMNS`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lorabench.analysis.items import ITEM_COLUMNS
from lorabench.analysis.pairwise import VERDICT_COLUMNS
from lorabench.analysis.runs import frame_from_records
from lorabench.evaluation.eval_set import CATEGORIES

JUDGE = "reference:f1"
EVAL_SET = "demo"


def item_table(per_category: int) -> pd.DataFrame:
    """The eval items: key and category."""
    cats = np.repeat(CATEGORIES, per_category)
    return pd.DataFrame({"item": [f"i{k}" for k in range(len(cats))], "category": cats})


def scored_items(
    run_id: str,
    scores: np.ndarray,
    eval_items: pd.DataFrame,
    judge: str = JUDGE,
    lengths: np.ndarray | None = None,
    repeat: int = 0,
) -> pd.DataFrame:
    """One run's item rows (ITEM_COLUMNS)."""
    n = len(eval_items)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "judge": judge,
            "repeat": repeat,
            "item": eval_items["item"].to_numpy(),
            "category": eval_items["category"].to_numpy(),
            "score": np.clip(scores, 0, 1),
            "answer_length": np.full(n, 100) if lengths is None else lengths,
            "temperature": 0.0 if repeat else np.nan,
        },
        columns=list(ITEM_COLUMNS),
    )


def runs_table(specs: Sequence[dict]) -> pd.DataFrame:
    """The tidy run table of `specs` (run_name, method, data, num_samples, run_id, ...)."""
    records = [
        {
            "base_model": "tiny",
            "judge": JUDGE,
            "eval_set": EVAL_SET,
            "evaluated": True,
            "source": "ours",
            "status": "FINISHED",
            **spec,
        }
        for spec in specs
    ]
    return frame_from_records(records)


def combined_verdict(first: str | None, second: str | None) -> str | None:
    """MT-Bench's combination of the two orders' verdicts (both A/B mapped to the pair's A)."""
    if first is None or second is None:
        return None
    return first if first == second and first != "tie" else "tie"


def pairwise_verdicts(
    first: Sequence[str | None],
    second: Sequence[str | None],
    *,
    judge: str = "judge",
    run_a: str = "a",
    run_b: str = "b",
    categories: Sequence[str] | None = None,
    length_a: Sequence[float] | None = None,
    length_b: Sequence[float] | None = None,
) -> pd.DataFrame:
    """One pair's item verdicts (`pairwise.VERDICT_COLUMNS`) from the two orders' verdicts, the
    combined `verdict` and `consistent` derived as the judges derive them."""
    n = len(first)
    verdict = [combined_verdict(f, s) for f, s in zip(first, second, strict=True)]
    return pd.DataFrame(
        {
            "judge": judge,
            "run_a": run_a,
            "run_b": run_b,
            "item": np.arange(n),
            "category": list(categories) if categories is not None else "others",
            "first": list(first),
            "second": list(second),
            "verdict": verdict,
            "consistent": [
                None if v is None else f == s
                for v, f, s in zip(verdict, first, second, strict=True)
            ],
            "length_a": np.full(n, 100.0) if length_a is None else np.asarray(length_a, float),
            "length_b": np.full(n, 100.0) if length_b is None else np.asarray(length_b, float),
            "status": ["ok" if v is not None else "failed" for v in verdict],
            "reason": "",
        },
        columns=list(VERDICT_COLUMNS),
    )


def planted_outcomes(rng: np.random.Generator, n: int, win: float, tie: float) -> np.ndarray:
    """`n` consistent verdicts ("A", "B", "tie") with P(A) = `win`, P(tie) = `tie`."""
    return rng.choice(
        np.array(["A", "tie", "B"], dtype=object), size=n, p=[win, tie, 1 - win - tie]
    )
