"""The paper's findings, checked on runs with known numbers (lorabench.analysis.findings)."""

from __future__ import annotations

import pandas as pd
import pytest

from lorabench.analysis.findings import (
    AGREES,
    CANNOT_TELL,
    DISAGREES,
    check_findings,
    findings_markdown,
    write_findings,
)
from lorabench.analysis.runs import frame_from_records
from lorabench.evaluation.eval_set import CATEGORIES

SIZES = {"tiny": 920_000, "tiny-13b": 1_580_000}
SAMPLES = {"0.6m": 600, "2m": 2000, "4m": 4000, "math_0.25m": 250}


def run(
    model: str,
    method: str,
    data: str | None,
    average: float,
    *,
    half: float = 0.02,
    base_run: str | None = None,
    others: float | None = None,
    judge: str = "reference:f1",
) -> dict:
    """A tidy-table row: every category at `average` (`others` apart), ± `half`."""
    if method == "base":
        name = f"{model} (base)"
    else:
        name = f"{base_run or model}+{method}({data})"
    row = {
        "run_name": name,
        "base_model": model,
        "method": method,
        "data": data,
        "num_samples": SAMPLES.get(data),
        "base_run": base_run,
        "average_score": average,
        "ci_low": average - half,
        "ci_high": average + half,
        "base_params": SIZES[model],
        "judge": judge,
        "eval_set": "demo",
        "evaluated": True,
        "status": "FINISHED",
        "source": "ours",
    }
    for category in CATEGORIES:
        value = others if category == "others" and others is not None else average
        row.update({category: value, f"{category}_ci_low": value - 2 * half})
        row[f"{category}_ci_high"] = value + 2 * half
    return row


def verdicts(rows: list[dict]) -> list[str]:
    return [f.verdict for f in check_findings(frame_from_records(rows))]


PAPER_LIKE = [
    run("tiny", "base", None, 0.05),
    run("tiny-13b", "base", None, 0.06),
    run("tiny", "lora", "0.6m", 0.30),
    run("tiny", "lora", "2m", 0.36),
    run("tiny", "lora", "4m", 0.40),
    run("tiny", "ft", "0.6m", 0.45),
    run("tiny", "ft", "2m", 0.52),
    run("tiny-13b", "lora", "2m", 0.44),
    run("tiny", "lora", "math_0.25m", 0.53, base_run="tiny+ft(2m)", others=0.60, half=0.01),
    run("tiny", "ft", "math_0.25m", 0.54, base_run="tiny+ft(2m)", others=0.62, half=0.005),
]


def test_a_run_set_like_the_papers_agrees_with_every_finding() -> None:
    assert verdicts(PAPER_LIKE) == [AGREES] * 5


def test_a_reversed_run_set_disagrees() -> None:
    rows = [
        run("tiny", "base", None, 0.50),  # above every tuned run: tuning did not work
        run("tiny", "lora", "0.6m", 0.45),
        run("tiny", "lora", "4m", 0.30),  # more data, clearly worse
        run("tiny", "ft", "0.6m", 0.35),  # FT clearly below LoRA
        run("tiny-13b", "lora", "0.6m", 0.20),  # the larger base clearly worse
        run("tiny", "lora", "math_0.25m", 0.30, base_run="tiny+ft(0.6m)", others=0.20),
        run("tiny", "ft", "math_0.25m", 0.40, base_run="tiny+ft(0.6m)", others=0.45),
    ]
    assert verdicts(rows) == [DISAGREES] * 5


def test_overlapping_intervals_cannot_tell() -> None:
    wide = 0.1
    rows = [
        run("tiny", "base", None, 0.30, half=wide),
        run("tiny", "lora", "0.6m", 0.32, half=wide),
        run("tiny", "lora", "4m", 0.34, half=wide),
        run("tiny", "ft", "0.6m", 0.35, half=wide),
        run("tiny-13b", "lora", "0.6m", 0.36, half=wide),
        # 0.02 below, but the difference's interval reaches far below the 0.05 margin.
        run("tiny", "lora", "math_0.25m", 0.5, base_run="tiny+ft(0.6m)", others=0.50, half=wide),
        run("tiny", "ft", "math_0.25m", 0.5, base_run="tiny+ft(0.6m)", others=0.52, half=wide),
    ]
    assert verdicts(rows) == [CANNOT_TELL] * 5


def test_missing_runs_cannot_tell_and_say_what_is_missing() -> None:
    findings = check_findings(frame_from_records([run("tiny", "lora", "2m", 0.3)]))
    assert [f.verdict for f in findings] == [CANNOT_TELL] * 5
    assert all(f.missing and not f.checks for f in findings)
    assert "base row" in findings[0].missing


def test_one_disagreeing_pair_outweighs_agreeing_ones() -> None:
    rows = [
        run("tiny", "lora", "0.6m", 0.30),
        run("tiny", "ft", "0.6m", 0.45),  # agrees
        run("tiny", "lora", "2m", 0.50),
        run("tiny", "ft", "2m", 0.35),  # disagrees
    ]
    (finding,) = [f for f in check_findings(frame_from_records(rows)) if "Full fine" in f.claim]
    assert [c.verdict for c in finding.checks] == [AGREES, DISAGREES]
    assert finding.verdict == DISAGREES


def test_close_needs_the_interval_within_the_margin() -> None:
    def verdict(lora: float, ft: float, half: float) -> str:
        rows = [
            run("tiny", "lora", "math_0.25m", 0.5, base_run="b", others=lora, half=half),
            run("tiny", "ft", "math_0.25m", 0.5, base_run="b", others=ft, half=half),
        ]
        return check_findings(frame_from_records(rows))[4].verdict

    assert verdict(0.58, 0.60, 0.005) == AGREES  # 0.02 below, tight intervals
    assert verdict(0.62, 0.60, 0.005) == AGREES  # above it is close too
    assert verdict(0.40, 0.60, 0.005) == DISAGREES  # 0.2 below, tight intervals
    assert verdict(0.55, 0.60, 0.02) == CANNOT_TELL  # 0.05 below: the interval straddles


def test_each_judge_is_checked_on_its_own() -> None:
    rows = [
        run("tiny", "lora", "0.6m", 0.30),
        run("tiny", "ft", "0.6m", 0.45),
        run("tiny", "lora", "0.6m", 0.60, judge="openai:gpt-4o"),
        run("tiny", "ft", "0.6m", 0.40, judge="openai:gpt-4o"),
    ]
    text = findings_markdown(frame_from_records(rows))
    assert text.count("### Judge") == 2
    first, second = text.split("### Judge")[1:]
    assert (
        "scores above LoRA at equal training data, on a base without instruction tuning: "
        "**agrees**" in first
    )
    assert "**disagrees**" in second


def test_the_report_section_names_verdicts_and_runs(tmp_path) -> None:
    text = write_findings(frame_from_records(PAPER_LIKE), tmp_path)
    assert (tmp_path / "findings.md").read_text(encoding="utf-8") == text
    assert text.startswith("## The paper's findings")
    assert "`tiny (base)` 0.050 (0.030–0.070)" in text
    assert "`tiny+ft(0.6m)` 0.450 (0.430–0.470) against `tiny+lora(0.6m)` 0.300" in text
    assert sum(line.endswith(": **agrees**") for line in text.splitlines()) == 5


@pytest.mark.parametrize("column", ["ci_low", "ci_high"])
def test_a_run_without_an_interval_cannot_tell(column: str) -> None:
    rows = [run("tiny", "lora", "0.6m", 0.30), run("tiny", "ft", "0.6m", 0.45)]
    frame = frame_from_records(rows)
    frame.loc[frame["method"] == "ft", column] = float("nan")
    finding = check_findings(frame)[1]
    assert finding.verdict == CANNOT_TELL and "no interval" in finding.checks[0].text


def test_no_evaluated_run_checks_nothing() -> None:
    frame = frame_from_records([{**run("tiny", "lora", "2m", 0.3), "evaluated": False}])
    assert "nothing to check" in findings_markdown(frame)
    assert isinstance(frame, pd.DataFrame)
