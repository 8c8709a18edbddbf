"""What preparation read, skipped and kept: per-source counts, the bad-row threshold, metrics."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.compute as pc

from lorabench import contract
from lorabench.data.readers import LINE, CheckedSource
from lorabench.data.validation import REASONS, VALID
from lorabench.errors import DataError

log = logging.getLogger(__name__)

FIRST_BAD = 5
"""Offending rows named per source in logs and errors."""

NO_TRAINABLE_TOKEN = "no_trainable_token"
"""Skip reason of valid rows whose prompt alone fills the max length (found by tokenising)."""


@dataclass
class SourceReport:
    """Validation counts of one source."""

    name: str
    location_kind: str
    rows_read: int
    skipped: dict[str, int]
    """Rows skipped, by validation reason (only reasons that occurred)."""
    first_bad: list[tuple[int, str]]
    """(location, reason) of the first FIRST_BAD skipped rows."""

    @property
    def rows_bad(self) -> int:
        return sum(self.skipped.values())

    def where(self) -> str:
        """The first offending rows, e.g. `lines 3 (bad_json), 8 (empty_field)`."""
        kind = "lines" if self.location_kind == LINE else "rows"
        return f"{kind} " + ", ".join(f"{loc} ({reason})" for loc, reason in self.first_bad)


@dataclass
class DataReport:
    """The outcome of preparing one training set."""

    sources: list[SourceReport]
    rows_tokenised: int
    """Valid rows drawn and tokenised (the sample, plus replacements for dropped ones)."""
    rows_kept: int
    """Samples in the training set."""
    tokens: int
    mean_length: float
    p95_length: float
    cache_path: str = ""
    cache_hit: bool = False

    @property
    def rows_read(self) -> int:
        return sum(s.rows_read for s in self.sources)

    @property
    def rows_valid(self) -> int:
        return sum(s.rows_read - s.rows_bad for s in self.sources)

    @property
    def skipped(self) -> dict[str, int]:
        """Rows skipped by reason, every reason listed (validation ones, then tokenisation)."""
        counts = dict.fromkeys(REASONS, 0)
        for s in self.sources:
            for reason, n in s.skipped.items():
                counts[reason] += n
        counts[NO_TRAINABLE_TOKEN] = self.rows_tokenised - self.rows_kept
        return counts

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: `data/rows_read`, `data/rows_kept`, `data/skipped_<reason>`, ..."""
        metrics = {
            contract.DATA_ROWS_READ: self.rows_read,
            contract.DATA_ROWS_VALID: self.rows_valid,
            contract.DATA_ROWS_KEPT: self.rows_kept,
            **{contract.data_skipped(reason): n for reason, n in self.skipped.items()},
            contract.DATA_TOKENS: self.tokens,
            contract.DATA_MEAN_LENGTH: self.mean_length,
            contract.DATA_P95_LENGTH: self.p95_length,
        }
        return {k: float(v) for k, v in metrics.items()}

    def summary(self) -> list[str]:
        """`name=value` lines for people and scripts."""
        lines = [
            f"rows_read={self.rows_read}",
            f"rows_valid={self.rows_valid}",
            *(f"skipped_{reason}={n}" for reason, n in self.skipped.items()),
            f"rows_kept={self.rows_kept}",
            f"tokens={self.tokens}",
            f"mean_length={self.mean_length:.1f}",
            f"p95_length={self.p95_length:.1f}",
        ]
        for s in self.sources:
            if s.first_bad:
                lines.append(f"first_skipped[{s.name}]={s.where()}")
        return [*lines, f"cache_path={self.cache_path}", f"cache_hit={str(self.cache_hit).lower()}"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> DataReport:
        sources = [
            SourceReport(**{**s, "first_bad": [tuple(b) for b in s["first_bad"]]})
            for s in record["sources"]
        ]
        return cls(**{**record, "sources": sources})


def source_report(source: CheckedSource) -> SourceReport:
    """Count a checked source's rows by reason (in Arrow, without loading the rows)."""
    table = source.rows.data
    reasons = table.column("reason")
    counts = {item["values"].as_py(): item["counts"].as_py() for item in pc.value_counts(reasons)}
    counts.pop(VALID, None)
    bad = pc.not_equal(reasons, VALID)
    locations = pc.filter(table.column("location"), bad)[:FIRST_BAD].to_pylist()
    first_reasons = pc.filter(reasons, bad)[:FIRST_BAD].to_pylist()
    return SourceReport(
        name=source.name,
        location_kind=source.location_kind,
        rows_read=len(reasons),
        skipped=dict(sorted(counts.items(), key=lambda kv: REASONS.index(kv[0]))),
        first_bad=list(zip(locations, first_reasons, strict=True)),
    )


def valid_rows(source: CheckedSource) -> np.ndarray:
    """Indices of a checked source's valid rows."""
    valid = pc.equal(source.rows.data.column("reason"), VALID)
    return np.flatnonzero(valid.to_numpy(zero_copy_only=False))


def check_bad_fraction(sources: list[SourceReport], max_bad_fraction: float) -> None:
    """Log each source's skipped rows; stop when one has more than `max_bad_fraction` bad."""
    for s in sources:
        log.info("%s: %d rows read, %d skipped", s.name, s.rows_read, s.rows_bad)
        if s.rows_read == 0:
            raise DataError(f"{s.name}: the source holds no rows")
        if not s.rows_bad:
            continue
        counts = ", ".join(f"{reason}={n}" for reason, n in s.skipped.items())
        log.warning("%s: skipped %s; first at %s", s.name, counts, s.where())
        if s.rows_bad / s.rows_read > max_bad_fraction:
            raise DataError(
                f"{s.name}: {s.rows_bad} of {s.rows_read} rows fail validation "
                f"({s.rows_bad / s.rows_read:.2%} > data.max_bad_fraction={max_bad_fraction}; "
                f"{counts}); first at {s.where()}"
            )
