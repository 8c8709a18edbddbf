"""Evaluation: the eval set (`eval_set`), what is evaluated (`targets`), answer generation
(`generation`), judge scores aggregated (`scoring`), the stage logged to MLflow (`pipeline`).

The judges themselves live in `lorabench.judging`, which reads this package's eval set; the
pipeline is imported lazily so that importing `lorabench.evaluation.eval_set` stays light and
free of cycles.
"""

from __future__ import annotations

from typing import Any

_PIPELINE = ("EvalResult", "estimate", "evaluate")


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from lorabench.evaluation import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'lorabench.evaluation' has no attribute {name!r}")


__all__ = list(_PIPELINE)
