"""The report's head-to-head section (lorabench.analysis.pairwise_section): pairwise verdicts
planted on sweep parents in a real sqlite MLflow store, read back, tabulated, drawn, and shown
under the findings; every output under tmp_path."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.findings import AGREES, CANNOT_TELL, DISAGREES, findings_markdown
from lorabench.analysis.pairwise import (
    bradley_terry,
    category_win_rates,
    check_verdicts,
    length_controlled_win_rates,
    position_consistency,
    win_rates,
)
from lorabench.analysis.pairwise_judging import HeadToHead, record_head_to_head
from lorabench.analysis.pairwise_section import (
    CELL_COLUMNS,
    NOT_JUDGED,
    PAIRWISE_FIGURES,
    SECTION_TITLE,
    load_pairwise_verdicts,
    pairwise_markdown,
    plot_win_rates,
    verdict_frame,
    win_rate_cells,
    write_pairwise,
)
from lorabench.analysis.report import run, write_report
from lorabench.analysis.runs import frame_from_records, load_runs
from lorabench.config import report_options
from lorabench.config.schema import StatsConfig
from tests.helpers.analysis import assert_real_image, demo_sweep, experiment
from tests.helpers.stats import pairwise_verdicts

FAST = StatsConfig(bootstrap_samples=200, seed=1)
JUDGE = "reference-pairwise:f1"
LORA, FT = "tiny+lora(2m)", "tiny+ft(2m)"


def uri(store_file: Path) -> str:
    return f"sqlite:///{store_file}"


def pair(run_a: str, run_b: str, labels: list[str | None], **kwargs) -> pd.DataFrame:
    """A pair's item verdicts, both orders giving `labels` (None: not judged)."""
    return pairwise_verdicts(labels, labels, run_a=run_a, run_b=run_b, **kwargs)


def head_to_head_of(verdicts: pd.DataFrame) -> HeadToHead:
    """What the sweep's stage would record for these verdicts."""
    sampling = {"samples": FAST.bootstrap_samples, "level": FAST.level, "seed": FAST.seed}
    return HeadToHead(
        judge=str(verdicts["judge"].iloc[0]),
        verdicts=verdicts,
        win_rates=win_rates(verdicts, **sampling),
        category_win_rates=category_win_rates(verdicts, **sampling),
        position_consistency=position_consistency(verdicts),
        bradley_terry=bradley_terry(verdicts, **sampling),
        length_controlled=length_controlled_win_rates(verdicts),
    )


def sweep_parent(
    client: MlflowClient, exp: str, name: str, started: int, verdicts: pd.DataFrame | None
) -> str:
    """A finished sweep parent (tag sweep=true) started at `started` (ms), with `verdicts`
    recorded as the head-to-head stage records them (none: a sweep without that stage)."""
    tags = {contract.TAG_SWEEP: "true"}
    parent = client.create_run(exp, run_name=name, start_time=started, tags=tags).info.run_id
    if verdicts is not None:
        record_head_to_head(client, parent, head_to_head_of(verdicts))
    client.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))
    return parent


# Loading ----------------------------------------------------------------------------------------


def test_loading_keeps_the_newest_parents_row_and_only_the_given_parents(
    store, store_file, tmp_path
):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    now = int(time.time() * 1000)
    # The newer sweep is created first: the start time decides, not the order of creation.
    newer_ab = pair("a", "b", ["B"] * 4).assign(item=[2, 3, 4, 5])
    newer = sweep_parent(store, exp, "newer", now, pd.concat([newer_ab, pair("c", "d", ["tie"])]))
    older = sweep_parent(store, exp, "older", now - 60_000, pair("a", "b", ["A"] * 4))
    plain = sweep_parent(store, exp, "no head to head", now - 30_000, None)
    # A run not tagged as a sweep with the artifact is no sweep's: never read.
    other = store.create_run(exp, run_name="not a sweep").info.run_id
    store.log_text(other, pair("a", "b", ["tie"] * 9).to_csv(index=False),
                   contract.ARTIFACT_PAIRWISE_VERDICTS)  # fmt: skip

    every = load_pairwise_verdicts(uri(store_file), "lorabench-demo")
    assert list(every.columns) == list(contract.PAIRWISE_VERDICT_COLUMNS)
    assert every.attrs["parents"] == [older, newer]
    ab = every[every["run_a"] == "a"].set_index("item")["verdict"].sort_index()
    assert ab.to_dict() == {0: "A", 1: "A", 2: "B", 3: "B", 4: "B", 5: "B"}  # 2, 3: the newer's
    assert len(every) == 6 + 1

    only = load_pairwise_verdicts(uri(store_file), "lorabench-demo", parent_run_id=older)
    assert only["verdict"].tolist() == ["A"] * 4 and only.attrs["parents"] == [older]
    none = load_pairwise_verdicts(uri(store_file), "lorabench-demo", parent_run_id=plain)
    assert none.empty and list(none.columns) == list(contract.PAIRWISE_VERDICT_COLUMNS)


def test_recorded_verdicts_read_back_as_the_statistics_take_them(store, store_file, tmp_path):
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    # Unjudged orders, a tie, an inconsistent item, and run names pandas would read as missing.
    first = ["A", "tie", None, "B", "A", "B"]
    second = ["A", "tie", "A", None, "B", "B"]
    planted = pairwise_verdicts(first, second, judge=JUDGE, run_a="NA", run_b="None",
                                categories=["math", "qa"] * 3)  # fmt: skip
    planted.loc[2, ["status", "reason"]] = ["error", "order ab: error: HTTP 500"]
    sweep_parent(store, exp, "sweep", int(time.time() * 1000), planted)

    loaded = load_pairwise_verdicts(uri(store_file), "lorabench-demo")
    pd.testing.assert_frame_equal(loaded, verdict_frame([planted]), check_dtype=False)
    assert loaded["consistent"].tolist() == [True, True, None, None, False, True]
    assert loaded["first"].tolist() == first and loaded["second"].tolist() == second
    assert loaded["verdict"].tolist() == ["A", "tie", None, None, "tie", "B"]
    assert set(loaded["run_a"]) == {"NA"} and set(loaded["run_b"]) == {"None"}
    assert loaded["reason"].tolist()[:3] == ["", "", "order ab: error: HTTP 500"]
    check_verdicts(loaded)  # accepted as it is
    pd.testing.assert_frame_equal(
        win_rates(loaded, **_sampling()), win_rates(planted, **_sampling())
    )


def _sampling() -> dict:
    return {"samples": FAST.bootstrap_samples, "level": FAST.level, "seed": FAST.seed}


# The win-rate matrix ----------------------------------------------------------------------------

# x against y: 3 wins, a tie, a loss (x's rate 3.5 / 5 = 0.7); z against x: a win and 3 losses
# (z's rate 0.25, so x's against z 0.75); y and z never judged; w against x: nothing judged.
PLANTED = pd.concat(
    [
        pair("x", "y", ["A", "A", "A", "tie", "B"]),
        pair("z", "x", ["A", "B", "B", "B"]),
        pair("w", "x", [None, None]),
    ],
    ignore_index=True,
)


def test_matrix_cells_are_the_win_rates_flipped_for_the_reverse_order():
    rates = win_rates(PLANTED, **_sampling())
    cells = win_rate_cells(rates).set_index(["run", "opponent"])
    assert list(win_rate_cells(rates).columns) == list(CELL_COLUMNS)
    assert set(cells.index) == {("x", "y"), ("y", "x"), ("z", "x"), ("x", "z")}
    assert cells.loc[("x", "y"), "win_rate"] == pytest.approx(0.7)
    assert cells.loc[("y", "x"), "win_rate"] == pytest.approx(0.3)
    assert cells.loc[("z", "x"), "win_rate"] == pytest.approx(0.25)
    assert cells.loc[("x", "z"), "win_rate"] == pytest.approx(0.75)
    zx = rates.set_index(["run_a", "run_b"]).loc[("z", "x")]
    assert cells.loc[("z", "x"), ["ci_low", "ci_high"]].tolist() == [zx.ci_low, zx.ci_high]
    assert cells.loc[("x", "z"), "ci_low"] == pytest.approx(1 - zx.ci_high)
    assert cells.loc[("x", "z"), "ci_high"] == pytest.approx(1 - zx.ci_low)
    assert cells.loc[("x", "z"), "judged"] == 4

    fig = plot_win_rates(rates)
    (ax,) = [a for a in fig.axes if a.get_title()]
    texts = sorted(t.get_text() for t in ax.texts)
    assert len(texts) == 4  # the judged cells; the others blank
    assert texts[-1].startswith("0.75\n[")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["w", "x", "y", "z"]
    image = ax.get_images()[0].get_array()
    assert image.mask.sum() == 16 - 4
    assert image[1, 2] == pytest.approx(0.7) and image[1, 3] == pytest.approx(0.75)


def test_one_panel_per_judge():
    other = pair("x", "y", ["B", "B"], judge="other")
    fig = plot_win_rates(win_rates(pd.concat([PLANTED, other]), **_sampling()))
    assert sorted(a.get_title() for a in fig.axes if a.get_title()) == [
        "judge judge",
        "judge other",
    ]


def test_groups_never_compared_are_rated_and_drawn_apart(tmp_path):
    # Two LoRA-vs-FT pairs at two data sizes, as a demo sweep judges them: two groups.
    verdicts = pd.concat(
        [pair("lora-s", "ft-s", ["A", "B", "B", "tie"]), pair("lora-l", "ft-l", ["A", "A", "B"])],
        ignore_index=True,
    )
    drawn = write_pairwise(verdicts, None, tmp_path / "rep", FAST)
    assert drawn.figures.skipped == {}
    assert_real_image(tmp_path / "rep" / "figures" / "pairwise_ratings.png")
    assert "| `ft-s` | `lora-s` |" in drawn.markdown and "| `ft-l` | `lora-l` |" in drawn.markdown


def test_figures_are_files_or_skipped_with_their_reason(tmp_path):
    # x, y and z beat each other in a circle: every rating has a finite maximum.
    rounds = pd.concat(
        [pair("x", "y", ["A", "A", "B"]), pair("y", "z", ["A", "A", "B"]),
         pair("z", "x", ["A", "A", "B"])], ignore_index=True,
    )  # fmt: skip
    drawn = write_pairwise(rounds, None, tmp_path / "rep", FAST)
    assert drawn.figures.skipped == {}
    for name in PAIRWISE_FIGURES:
        assert_real_image(tmp_path / "rep" / "figures" / f"{name}.png")
        assert_real_image(tmp_path / "rep" / "figures" / f"{name}.svg")
    # x wins every comparison: no finite rating, so no ratings figure, and the reason.
    sweep = write_pairwise(pair("x", "y", ["A", "A"]), None, tmp_path / "one", FAST)
    assert [p.name for p in sweep.figures.files] == ["pairwise_win_rates.png",
                                                      "pairwise_win_rates.svg"]  # fmt: skip
    assert "ratings with a finite maximum" in sweep.figures.skipped["pairwise_ratings"]
    assert "`pairwise_ratings` not drawn: Bradley–Terry ratings: no group" in sweep.markdown
    # Nothing judged at all: nothing drawn, each figure skipped with why.
    failed = write_pairwise(pair("x", "y", [None, None]), None, tmp_path / "failed", FAST)
    assert failed.figures.files == []
    assert "no pair of runs has a judged item" in failed.figures.skipped["pairwise_win_rates"]
    empty = write_pairwise(verdict_frame([]), None, tmp_path / "empty", FAST)
    assert empty.figures.skipped == dict.fromkeys(PAIRWISE_FIGURES, NOT_JUDGED)
    assert not (tmp_path / "empty").exists() and not (tmp_path / "failed" / "figures").exists()


# The section ------------------------------------------------------------------------------------


def test_the_sections_table_counts_as_by_hand():
    # Items 0-1: LoRA both orders; 2: a tie; 3-4: the orders disagree (a tie, inconsistent);
    # 5-8: FT both orders; 9: an order failed; 10: both failed.
    first = ["A", "A", "tie", "A", "B", "B", "B", "B", "B", "A", None]
    second = ["A", "A", "tie", "B", "A", "B", "B", "B", "B", None, None]
    verdicts = pairwise_verdicts(first, second, judge=JUDGE, run_a=LORA, run_b=FT)
    verdicts.loc[9, "status"] = "parse_failure"
    verdicts.loc[10, "status"] = "error"
    text = pairwise_markdown(verdicts, _runs(FT, LORA), FAST)
    assert text.startswith(SECTION_TITLE)
    # 9 judged: 2 LoRA wins, 3 ties, 4 FT wins; LoRA's rate (2 + 1.5) / 9 = 0.39. The orders
    # agree on 7 of the 9 items judged in both.
    row = next(line for line in text.splitlines() if line.startswith(f"| `{LORA}`"))
    assert row.startswith(f"| `{LORA}` | `{FT}` | 9 | 2 | 3 | 4 | 0.39 [")
    assert row.endswith("| 0.78 (7 of 9) |")
    assert f"- `{LORA}` vs `{FT}`: 2 unjudged (error 1, parse_failure 1)" in text
    assert "the two orders agree on 7 of 9 items (78%)" in text
    assert f"| `{FT}` |" in text and "(anchor)" in text
    assert "paired bootstrap over the items" in text and f"Judge `{JUDGE}`:" in text


def test_an_empty_frame_says_no_sweep_judged_head_to_head():
    text = pairwise_markdown(verdict_frame([]), None, FAST)
    assert text.startswith(SECTION_TITLE)
    assert "No sweep of this report judged runs head to head (sweep.pairwise=true)" in text


# Findings ---------------------------------------------------------------------------------------


def _runs(*names: str) -> pd.DataFrame:
    """LoRA and FT at 2m of `tiny`, evaluated (their item scores are not needed here)."""
    records = []
    for name in names:
        method = "lora" if "lora" in name else "ft"
        records.append(
            {"run_name": name, "run_id": name, "base_model": "tiny", "method": method,
             "data": "2m", "num_samples": 2000, "average_score": 0.4, "judge": "reference:f1",
             "eval_set": "demo", "evaluated": True, "status": "FINISHED", "source": "ours"}
        )  # fmt: skip
    return frame_from_records(records)


def _head_to_head_line(text: str) -> str:
    (line,) = [s.strip() for s in text.splitlines() if "head to head (" in s]
    return line


@pytest.mark.parametrize(
    ("labels", "verdict", "rate"),
    [
        (["B"] * 36 + ["tie"] * 4, AGREES, "0.95"),  # FT wins clearly: as the paper says
        (["A", "B"] * 20, CANNOT_TELL, "0.50"),  # an even split
        (["A"] * 36 + ["tie"] * 4, DISAGREES, "0.05"),  # LoRA wins clearly
    ],
)
def test_a_findings_line_gives_the_head_to_head_verdict(labels, verdict, rate):
    runs = _runs(LORA, FT)
    # Judged as LoRA vs FT (the sweep's order), read from FT's side: the claim's.
    verdicts = pair(LORA, FT, labels, judge=JUDGE, categories=["qa", "math"] * 20)
    line = _head_to_head_line(findings_markdown(runs, None, FAST, verdicts))
    assert line.startswith(f"- head to head ({JUDGE}): `{FT}` wins {rate} [")
    assert line.endswith(f"of items against `{LORA}` (ties half; 40 items): {verdict}")


def test_findings_match_replicates_by_name_and_are_unchanged_without_verdicts():
    seeded = f"{LORA}[seed=2]"
    runs = _runs(seeded, FT)
    verdicts = pair(FT, seeded, ["A"] * 30, judge=JUDGE)  # judged in the claim's own order
    text = findings_markdown(runs, None, FAST, verdicts)
    assert f"`{FT}` wins 1.00 [1.00, 1.00] of items against `{seeded}`" in text
    assert _head_to_head_line(text).endswith(f": {AGREES}")
    plain = findings_markdown(runs, None, FAST)
    assert "head to head" not in plain
    assert findings_markdown(runs, None, FAST, verdict_frame([])) == plain


# The report -------------------------------------------------------------------------------------


def _demo_with_verdicts(store: MlflowClient, tmp_path: Path) -> str:
    """A demo sweep whose parent recorded LoRA vs FT at 2m: FT wins most items."""
    parent, _ = demo_sweep(store, tmp_path / "artifacts")
    labels = ["B"] * 12 + ["tie"] * 4 + ["A"] * 2
    verdicts = pair(LORA, FT, labels, judge=JUDGE, categories=["qa", "math"] * 9)
    record_head_to_head(store, parent, head_to_head_of(verdicts))
    return parent


def test_report_holds_the_section_and_its_figures(store, store_file, tmp_path, monkeypatch):
    parent = _demo_with_verdicts(store, tmp_path)
    runs = load_runs(uri(store_file), "lorabench-demo")
    verdicts = load_pairwise_verdicts(uri(store_file), "lorabench-demo", parent)
    files = write_report(runs, tmp_path / "rep", overlay_paper=False, stats=FAST,
                         pairwise=verdicts)  # fmt: skip
    page = files.report.read_text()
    assert SECTION_TITLE in page
    # After the findings and the report's figures, before the anatomy and statistics.
    assert page.index("## The paper's findings") < page.index(SECTION_TITLE)
    assert page.index("## Figures") < page.index(SECTION_TITLE)
    for name in PAIRWISE_FIGURES:
        assert f"![{name}](figures/{name}.png)" in page
        assert tmp_path / "rep" / "figures" / f"{name}.png" in files.files
    assert f"`{FT}` wins 0.78 [" in page  # (12 + 4 / 2) / 18 under the findings' LoRA vs FT
    # None found: the section says so, and no figure is reported missing (without a frame at
    # all, every other report test: no section).
    empty = write_report(runs, tmp_path / "empty", overlay_paper=False,
                         pairwise=verdict_frame([]))  # fmt: skip
    assert "No sweep of this report judged runs head to head" in empty.report.read_text()
    assert not set(empty.figures.skipped) & set(PAIRWISE_FIGURES)
    # The command reads the verdicts of the report's sweep.
    monkeypatch.chdir(tmp_path)
    args = ["experiment=lorabench-demo", f"tracking_uri={uri(store_file)}", "out=cli"]
    run(report_options([*args, f"parent_run={parent}", "log_to=none", "statistics=false",
                        "overlay=false"]))  # fmt: skip
    page = (tmp_path / "cli" / "report.md").read_text()
    assert SECTION_TITLE in page and f"| `{LORA}` | `{FT}` | 18 | 2 | 4 | 12 |" in page
    assert (tmp_path / "cli" / "figures" / "pairwise_win_rates.png").is_file()
