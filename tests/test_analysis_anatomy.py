"""The report's anatomy section (lorabench.analysis.anatomy): runs in a real MLflow store with
planted `anatomy/*` metrics and `anatomy/layers.csv` artifacts, read back, tabulated, checked
and drawn."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.analysis.anatomy import CANNOT_TELL, LAYER_FRAME_COLUMNS, load_anatomy_layers
from lorabench.analysis.anatomy_section import (
    ANATOMY_FIGURES,
    anatomy_markdown,
    write_anatomy_figures,
)
from lorabench.analysis.report import run, write_report
from lorabench.analysis.runs import load_runs
from lorabench.config import report_options
from tests.helpers.analysis import assert_real_image, demo_run, experiment, log_run

LAYERS = 4
MODULES = ("q_proj", "v_proj")
EVERY_SIZE_RANK = "FT's updates are of higher effective rank than LoRA's at every data size"
NO_FT_INTRUDERS = "LoRA introduces intruder dimensions, FT does not"


def uri(store_file: Path) -> str:
    return f"sqlite:///{store_file}"


def log_anatomy(
    client: MlflowClient, run_id: str, rank: float, intruders: int, tmp: Path, outside: bool = False
) -> None:
    """Plant a run's anatomy: per layer and module a matrix whose effective rank varies around
    `rank` (mean `rank`), each with `intruders` intruder dimensions; the run-level means as
    metrics. `outside`: one more matrix outside the blocks (empty `layer`), of the same rank."""
    rows = [
        {
            "tensor": f"model.layers.{layer}.self_attn.{module}.weight",
            "layer": layer,
            "module": module,
            "effective_rank": rank + layer - (LAYERS - 1) / 2,
            "intruders": intruders,
        }
        for layer in range(LAYERS)
        for module in MODULES
    ]
    if outside:
        rows.append({"tensor": "lm_head.weight", "layer": "", "module": "lm_head"})
        rows[-1].update(effective_rank=rank, intruders=intruders)
    for row in rows:
        row.update(rows=64, cols=64, relative_change=0.01, delta_norm=0.1, base_norm=10.0)
    folder = tmp / run_id
    folder.mkdir(parents=True)
    with (folder / "layers.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(contract.ANATOMY_LAYER_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    client.log_artifact(run_id, str(folder / "layers.csv"), "anatomy")
    metrics = {
        contract.ANATOMY_EFFECTIVE_RANK: rank,
        contract.ANATOMY_RELATIVE_CHANGE: 0.01,
        contract.ANATOMY_INTRUDERS: intruders,
        contract.ANATOMY_MATRICES: len(rows),
    }
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)


def study(
    client: MlflowClient,
    tmp: Path,
    planted: Mapping[tuple[str, str], tuple[float, int]],
    *,
    chained: tuple[float, int] | None = (3.0, 1),
    unmeasured: bool = True,
) -> dict[str, str]:
    """Runs of `tiny` {(method, data): (effective rank, intruders per matrix)}, measured; a
    chained row `tiny+ft(2m)+lora(math_0.25m)` on FT(2m) (measured unless `chained` is None);
    `unmeasured`: an FT(4m) run without anatomy. Returns {run name: run id}."""
    exp = experiment(client, "lorabench-demo", tmp / "artifacts")
    ids = {}
    for (method, data), (rank, intruders) in planted.items():
        run_id = demo_run(client, exp, method, data)
        log_anatomy(client, run_id, rank, intruders, tmp / "planted", outside=method == "ft")
        ids[f"tiny+{method}({data})"] = run_id
    name = "tiny+ft(2m)+lora(math_0.25m)"
    ids[name] = log_run(
        client,
        exp,
        name,
        params={"model.name": "tiny", "method.name": "lora", "data.name": "math_0.25m"},
        tags={contract.TAG_BASE_RUN_ID: ids["tiny+ft(2m)"]},
    )
    if chained is not None:
        log_anatomy(client, ids[name], *chained, tmp / "planted")
    if unmeasured:
        ids["tiny+ft(4m)"] = demo_run(client, exp, "ft", "4m")
    return ids


AS_THE_PAPERS_SAY = {
    ("lora", "0.6m"): (4.0, 2),
    ("lora", "2m"): (5.0, 2),
    ("ft", "0.6m"): (20.0, 0),
    ("ft", "2m"): (30.0, 0),
}


def section(store: MlflowClient, store_file: Path) -> str:
    runs = load_runs(uri(store_file), "lorabench-demo")
    return anatomy_markdown(load_anatomy_layers(uri(store_file), runs["run_id"]), runs)


def test_loader_reads_measured_runs_and_leaves_out_the_rest(store, store_file, tmp_path):
    ids = study(store, tmp_path, AS_THE_PAPERS_SAY)
    layers = load_anatomy_layers(uri(store_file), list(ids.values()))
    assert list(layers.columns) == list(LAYER_FRAME_COLUMNS)
    assert set(layers["run_id"]) == set(ids.values()) - {ids["tiny+ft(4m)"]}
    per_run = layers.groupby("run_id").size()
    assert per_run[ids["tiny+lora(2m)"]] == LAYERS * len(MODULES)
    assert per_run[ids["tiny+ft(2m)"]] == LAYERS * len(MODULES) + 1  # lm_head, outside blocks
    ft = layers[layers["run_id"] == ids["tiny+ft(2m)"]]
    assert ft["effective_rank"].mean() == pytest.approx(30.0)
    assert ft["layer"].isna().sum() == 1  # the empty layer is NaN, not an error
    # A client works as well as a URI; a run without the artifact alone: no rows, same columns.
    alone = load_anatomy_layers(store, [ids["tiny+ft(4m)"]])
    assert alone.empty and list(alone.columns) == list(LAYER_FRAME_COLUMNS)


def test_runs_table_holds_the_run_level_means(store, store_file, tmp_path):
    ids = study(store, tmp_path, AS_THE_PAPERS_SAY)
    runs = load_runs(uri(store_file), "lorabench-demo").set_index("run_id")
    lora = runs.loc[ids["tiny+lora(2m)"]]
    assert (lora["effective_rank"], lora["relative_change"], lora["intruders"]) == (5.0, 0.01, 2)
    assert runs.loc[ids["tiny+ft(4m)"], ["effective_rank", "intruders"]].isna().all()


def test_findings_as_planted(store, store_file, tmp_path):
    study(store, tmp_path, AS_THE_PAPERS_SAY)
    text = section(store, store_file)
    assert f"{EVERY_SIZE_RANK} (2 sizes): 0.6m: FT 20.0 against LoRA 4.0; 2m: FT 30.0" in text
    assert f"{NO_FT_INTRUDERS}, at every data size" in text
    assert "0.6m: LoRA 2.00 against FT 0.00" in text
    # The §4.5 row against its base run's own update.
    assert (
        "`tiny+ft(2m)+lora(math_0.25m)`: effective rank 3.0, 1.00 intruder dimensions per "
        "matrix; its base `tiny+ft(2m)`'s own update 30.0 and 0.00 (rank lower, more intruders)"
    ) in text
    assert "| `tiny+lora(2m)` | lora | 2m | 8 | 5.0 | 0.01 | 2.00 |" in text
    assert "| `tiny+ft(2m)` | ft | 2m | 9 | 30.0 | 0.01 | 0.00 |" in text
    assert "1 tuned run, `tiny+ft(4m)`" in text  # not measured, and said so


def test_findings_do_not_claim_what_one_size_contradicts(store, store_file, tmp_path):
    planted = dict(AS_THE_PAPERS_SAY)
    planted[("lora", "2m")] = (35.0, 1)  # LoRA above FT at 2m
    planted[("ft", "2m")] = (30.0, 1)  # FT with intruders at 2m, as many as LoRA
    study(store, tmp_path, planted, chained=None, unmeasured=False)
    text = section(store, store_file)
    assert EVERY_SIZE_RANK not in text and NO_FT_INTRUDERS not in text
    assert (
        "LoRA's at 0.6m, not at 2m: 0.6m: FT 20.0 against LoRA 4.0; 2m: FT 30.0 against LoRA 35.0"
    ) in text
    assert (
        "LoRA 1.50 against FT 0.50 intruder dimensions per matrix (mean over 2 data sizes)" in text
    )
    assert "LoRA's more than FT's at 0.6m, not at 2m" in text
    # The chained row exists but is not measured: nothing to say about the §4.5 rows.
    assert f"{CANNOT_TELL}: no chained run" in text
    assert "Not measured" in text and "`tiny+ft(2m)+lora(math_0.25m)`" in text


def test_more_intruders_at_every_size_is_said_when_fts_are_not_none(store, store_file, tmp_path):
    planted = dict(AS_THE_PAPERS_SAY)
    planted[("ft", "2m")] = (30.0, 1)  # FT with an intruder at 2m, fewer than LoRA's 2
    study(store, tmp_path, planted, chained=None, unmeasured=False)
    text = section(store, store_file)
    assert NO_FT_INTRUDERS not in text
    assert (
        "LoRA's updates hold more intruder dimensions than FT's at every data size, though "
        "FT's are not none: LoRA 2.00 against FT 0.50"
    ) in text


def test_cannot_tell_without_lora_and_ft_on_the_same_data(store, store_file, tmp_path):
    planted = {("lora", "0.6m"): (4.0, 2), ("ft", "2m"): (30.0, 0), ("lora-r64", "2m"): (9.0, 1)}
    study(store, tmp_path, planted, chained=None, unmeasured=False)
    text = section(store, store_file)
    assert text.count(f"{CANNOT_TELL}: no LoRA run (the paper's rank, `lora`) and FT run") == 2
    assert EVERY_SIZE_RANK not in text


def test_figures_are_drawn_or_skipped_with_a_reason(store, store_file, tmp_path):
    study(store, tmp_path, {**AS_THE_PAPERS_SAY, ("lora-r64", "2m"): (9.0, 1)})
    runs = load_runs(uri(store_file), "lorabench-demo")
    layers = load_anatomy_layers(store, runs["run_id"])
    figures = write_anatomy_figures(layers, runs, tmp_path / "figures")
    assert figures.skipped == {}
    for name in ANATOMY_FIGURES:
        assert_real_image(tmp_path / "figures" / f"{name}.png")
        assert_real_image(tmp_path / "figures" / f"{name}.svg")
    none = write_anatomy_figures(layers.iloc[:0], runs, tmp_path / "none")
    assert none.files == [] and set(none.skipped) == set(ANATOMY_FIGURES)
    assert not (tmp_path / "none").exists()
    chained = runs.set_index("run_name").loc["tiny+ft(2m)+lora(math_0.25m)", "run_id"]
    unchained = layers[layers["run_id"] != chained]
    part = write_anatomy_figures(unchained, runs, tmp_path / "part", formats=("png",))
    assert list(part.skipped) == ["anatomy_chained"]
    assert "no chained run" in part.skipped["anatomy_chained"]


def test_report_holds_the_section_and_its_figures(store, store_file, tmp_path, monkeypatch):
    study(store, tmp_path, AS_THE_PAPERS_SAY)
    runs = load_runs(uri(store_file), "lorabench-demo")
    layers = load_anatomy_layers(store, runs["run_id"])
    files = write_report(runs, tmp_path / "rep", overlay_paper=False, anatomy=layers)
    page = files.report.read_text()
    assert "## Weight-update anatomy" in page and EVERY_SIZE_RANK in page
    for name in ANATOMY_FIGURES:
        assert f"![{name}](figures/{name}.png)" in page
        assert tmp_path / "rep" / "figures" / f"{name}.png" in files.files
    # Without anatomy (the paper-only report, or none given): no section.
    plain = write_report(runs, tmp_path / "plain", overlay_paper=False)
    assert "Weight-update anatomy" not in plain.report.read_text()
    assert not any(p.name.startswith("anatomy_") for p in plain.files)
    # The command reads the anatomy of the report's own runs.
    monkeypatch.chdir(tmp_path)
    args = ["experiment=lorabench-demo", f"tracking_uri={uri(store_file)}", "out=cli"]
    run(report_options([*args, "statistics=false", "overlay=false"]))
    page = (tmp_path / "cli" / "report.md").read_text()
    assert f"{NO_FT_INTRUDERS}, at every data size" in page
    assert (tmp_path / "cli" / "figures" / "anatomy_intruders.png").is_file()
    assert pd.read_csv(tmp_path / "cli" / "runs.csv")["effective_rank"].notna().sum() == 5
