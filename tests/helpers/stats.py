"""Synthetic runs with known structure for the statistics tests: item scores built from an
item effect, a run effect (method, data size, seed) and noise, in the tidy tables the analysis
reads (`runs.frame_from_records`, `items.ITEM_COLUMNS`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lorabench.analysis.items import ITEM_COLUMNS
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
