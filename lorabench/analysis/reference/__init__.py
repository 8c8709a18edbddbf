"""The paper's reported numbers (facts, copied from its Table 4 and appendix).

`paper_table4.csv`: run, base model, method, data, base run, average score, additional
parameters, training hours per epoch. `paper_appendix_scores.csv`: the per-category judge scores
of the same 8 runs and their average.
"""

from __future__ import annotations

import csv
from importlib import resources


def _rows(name: str) -> list[dict[str, str]]:
    with resources.files(__package__).joinpath(name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def table4() -> list[dict[str, str]]:
    """The paper's Table 4, one dict per row, values as printed."""
    return _rows("paper_table4.csv")


def appendix_scores() -> dict[str, dict[str, float]]:
    """Per-category scores of the appendix table: run name → {category or 'average': score}."""
    return {
        row.pop("run"): {k: float(v) for k, v in row.items()}
        for row in _rows("paper_appendix_scores.csv")
    }
