"""A fair comparison of methods: a development split held out of the training data, its loss
logged per run, the learning-rate pick per method on it (never on the eval set), and warnings
where two methods are compared at one learning rate unusual for one of them."""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
from peft import PeftModel
from torch.utils.data import DataLoader

from lorabench import contract
from lorabench.analysis.learning_rates import (
    best_learning_rates,
    candidates_name,
    shared_learning_rate_warnings,
)
from lorabench.analysis.paper_runs import paper_values
from lorabench.analysis.report import write_report
from lorabench.analysis.runs import AnalysisError, frame_from_records
from lorabench.config import compose, validate
from lorabench.config.schema import TrackingConfig
from lorabench.data import DataError, build_train_dataset, make_collator, split_dev
from lorabench.modeling.base import build_tokenizer
from lorabench.tracking.parents import close_parent, open_parent
from lorabench.training import train
from tests.helpers.analysis import experiment, log_run
from tests.helpers.models import base_model

# ---- the development split --------------------------------------------------------------------


def test_dev_split_is_held_out_the_same_for_every_method() -> None:
    rows = datasets.Dataset.from_dict({"i": list(range(200))})
    train_rows, dev = split_dev(rows, 0.1, seed=7)
    assert len(dev) == 20 and len(train_rows) == 180
    assert set(dev["i"]).isdisjoint(train_rows["i"])
    assert sorted([*dev["i"], *train_rows["i"]]) == list(range(200))
    assert split_dev(rows, 0.1, seed=7)[1]["i"] == dev["i"]  # the seed decides, not the method
    assert split_dev(rows, 0.1, seed=8)[1]["i"] != dev["i"]
    assert split_dev(rows, 0.0, seed=7) == (rows, None)
    with pytest.raises(DataError, match="holds out all 3"):
        split_dev(rows.select(range(3)), 0.9, seed=7)


def dev_loss_by_hand(model, cfg) -> float:
    """The development split's loss as the Trainer reports it: each micro batch's mean token
    loss, weighted by the batch's number of samples."""
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    rows = build_train_dataset(cfg.data, tokenizer, cfg.method.max_length, cfg.cache_dir)
    _, dev = split_dev(rows, cfg.data.dev_fraction, cfg.data.seed)
    collate = make_collator(cfg.data.batching, tokenizer, cfg.method.max_length)
    batches = DataLoader(list(dev), batch_size=cfg.hardware.micro_batch_size, collate_fn=collate)
    model.eval()
    total = samples = 0.0
    with torch.no_grad():
        for batch in batches:
            n = len(batch["input_ids"])
            total += model(**batch).loss.item() * n
            samples += n
    return total / samples


def test_training_logs_the_dev_loss_of_the_held_out_rows(demo_config, store) -> None:
    cfg = demo_config("data=math_0.25m", "data.dev_fraction=0.1", "training.max_steps=2")
    assert cfg.run_name == "tiny+lora(math_0.25m)[dev=0.1,steps=2]"
    result = train(cfg)

    run = store.get_run(result.run_id)
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    prepared = len(build_train_dataset(cfg.data, tokenizer, cfg.method.max_length, cfg.cache_dir))
    assert run.data.metrics[contract.DATA_DEV_ROWS] == round(prepared * 0.1)
    trained = PeftModel.from_pretrained(base_model(cfg), str(result.model_path))
    logged = run.data.metrics[contract.DEV_LOSS]
    assert logged == pytest.approx(dev_loss_by_hand(trained, cfg), rel=1e-4)
    assert result.metrics[contract.DEV_LOSS] == logged


# ---- picking and warning ----------------------------------------------------------------------

COMMON = {"base_model": "tiny", "data": "0.6m", "judge": None, "eval_set": None, "base_run": None}
LORA_RANGE = {"usual_lr_low": 1e-3, "usual_lr_high": 1e-2}
FT_RANGE = {"usual_lr_low": 1e-4, "usual_lr_high": 3e-3}


def frame(*rows: dict) -> pd.DataFrame:
    return frame_from_records({**COMMON, **row} for row in rows)


def search_rows() -> list[dict]:
    return [
        {"run_name": "tiny+lora(0.6m)[dev=0.05,lr=0.001]", "method": "lora", "learning_rate": 1e-3,
         "dev_loss": 5.1, **LORA_RANGE},
        {"run_name": "tiny+lora(0.6m)[dev=0.05]", "method": "lora", "learning_rate": 3e-3,
         "dev_loss": 4.7, **LORA_RANGE},
        {"run_name": "tiny+lora(0.6m)[dev=0.05,lr=0.01]", "method": "lora", "learning_rate": 1e-2,
         "dev_loss": 4.9, **LORA_RANGE},
        {"run_name": "tiny+ft(0.6m)[dev=0.05,lr=0.0003]", "method": "ft", "learning_rate": 3e-4,
         "dev_loss": 4.4, **FT_RANGE},
        {"run_name": "tiny+ft(0.6m)[dev=0.05]", "method": "ft", "learning_rate": 1e-3,
         "dev_loss": 4.6, **FT_RANGE},
    ]  # fmt: skip


def test_candidates_are_the_runs_that_differ_only_in_learning_rate() -> None:
    assert candidates_name("tiny+lora(0.6m)[dev=0.05,lr=0.001]") == "tiny+lora(0.6m)[dev=0.05]"
    assert candidates_name("tiny+ft(2m)+lora-r64(math_0.25m)[lr=0.1]") == (
        "tiny+ft(2m)+lora-r64(math_0.25m)"
    )
    assert candidates_name("tiny+lora(0.6m)[seed=2]") == "tiny+lora(0.6m)[seed=2]"


def test_the_lowest_dev_loss_picks_each_methods_learning_rate() -> None:
    picks = best_learning_rates(frame(*search_rows())).set_index("method")
    assert picks.loc["lora", "learning_rate"] == 3e-3 and picks.loc["lora", "tried"] == 3
    assert picks.loc["ft", "learning_rate"] == 3e-4 and picks.loc["ft", "dev_loss"] == 4.4
    with pytest.raises(AnalysisError, match="data.dev_fraction > 0"):
        best_learning_rates(frame({**search_rows()[0], "dev_loss": None}))


def test_methods_at_one_unusual_learning_rate_are_flagged() -> None:
    lora = {"run_name": "tiny+lora(0.6m)", "method": "lora", "learning_rate": 3e-3, **LORA_RANGE}
    ft_usual = {"run_name": "tiny+ft(0.6m)", "method": "ft", "learning_rate": 1e-3, **FT_RANGE}
    ft_at_loras = {**ft_usual, "run_name": "tiny+ft(0.6m)[lr=0.003]", "learning_rate": 3e-3}
    # Each at its own rate, or at one inside both ranges (3e-3 is the top of ft's): fair.
    assert shared_learning_rate_warnings(frame(lora, ft_usual, ft_at_loras)) == []
    both_at_5e3 = [{**lora, "learning_rate": 5e-3}, {**ft_at_loras, "learning_rate": 5e-3}]
    (warning,) = shared_learning_rate_warnings(frame(ft_usual, *both_at_5e3))
    assert warning.startswith("tiny+lora(0.6m) and tiny+ft(0.6m)[lr=0.003] compare lora with ft")
    assert "outside ft's usual 0.0001-0.003" in warning and "lora's usual" not in warning
    # Other base models are other comparisons; runs without a usual range are not judged.
    elsewhere = {**both_at_5e3[1], "base_model": "tiny-13b"}
    assert shared_learning_rate_warnings(frame(both_at_5e3[0], elsewhere)) == []
    unranged = {**both_at_5e3[1], "usual_lr_low": None, "usual_lr_high": None}
    assert shared_learning_rate_warnings(frame(both_at_5e3[0], unranged)) == []


def test_report_warns_about_a_comparison_at_one_unusual_learning_rate(tmp_path: Path) -> None:
    lora = {"run_name": "tiny+lora(0.6m)", "method": "lora", "learning_rate": 3e-2, **LORA_RANGE}
    ft = {"run_name": "tiny+ft(0.6m)[lr=0.03]", "method": "ft", "learning_rate": 3e-2, **FT_RANGE}
    files = write_report(frame(lora, ft), tmp_path / "report", overlay_paper=False)
    page = files.report.read_text()
    assert "## Learning rates" in page and files.warnings[0] in page
    quiet = write_report(frame(lora), tmp_path / "quiet", overlay_paper=False)
    assert "## Learning rates" not in quiet.report.read_text() and quiet.warnings == []


def child_runs(client, parent: str, rows: list[dict], artifacts: Path) -> None:
    exp = experiment(client, TrackingConfig.experiment_name, artifacts)
    for row in rows:
        params = {
            "model.name": "tiny",
            "data.name": "0.6m",
            "method.learning_rate": row["learning_rate"],
            "method.usual_learning_rates.low": row["usual_lr_low"],
            "method.usual_learning_rates.high": row["usual_lr_high"],
        }
        metrics = {} if row["dev_loss"] is None else {contract.DEV_LOSS: row["dev_loss"]}
        tags = {contract.TAG_PARENT_RUN_ID: parent}
        log_run(client, exp, row["run_name"], params=params, metrics=metrics, tags=tags)


def test_sweep_logs_its_picks_and_warnings_to_the_parent(store, store_file, tmp_path, capsys):
    tracking = TrackingConfig(
        tracking_uri=f"sqlite:///{store_file}", artifact_location=str(tmp_path / "artifacts")
    )
    parent = open_parent(tracking, ["experiment=lr_search_demo"])
    rows = search_rows()
    rows.append({**rows[3], "run_name": "tiny+ft(0.6m)[dev=0.05,lr=0.01]", "learning_rate": 1e-2,
                 "dev_loss": 6.0})  # fmt: skip
    child_runs(store, parent, rows, tmp_path / "artifacts")

    close_parent(store, parent, pick_learning_rate=True)

    run = store.get_run(parent)
    assert run.info.status == "FINISHED"
    picks = run.data.tags[contract.TAG_SWEEP_LR_PICKS].splitlines()
    assert picks == [
        "tiny+ft(0.6m)[dev=0.05]: learning rate 0.0003 (dev loss 4.4000, best of 3)",
        "tiny+lora(0.6m)[dev=0.05]: learning rate 0.003 (dev loss 4.7000, best of 3)",
    ]
    assert "learning rates picked on the development split:" in capsys.readouterr().out
    table = pd.read_csv(store.download_artifacts(parent, contract.ARTIFACT_LR_PICKS))
    assert list(table["learning_rate"]) == [3e-4, 3e-3]
    # ft at 1e-2 against lora at 1e-2: outside ft's range.
    (warning,) = run.data.tags[contract.TAG_SWEEP_LR_WARNINGS].splitlines()
    assert "tiny+lora(0.6m)[dev=0.05,lr=0.01]" in warning
    assert "tiny+ft(0.6m)[dev=0.05,lr=0.01]" in warning and "outside ft's usual" in warning


def test_a_sweep_without_dev_losses_says_so_and_still_closes(store, store_file, tmp_path):
    tracking = TrackingConfig(
        tracking_uri=f"sqlite:///{store_file}", artifact_location=str(tmp_path / "artifacts")
    )
    parent = open_parent(tracking, [])
    child_runs(store, parent, [{**search_rows()[0], "dev_loss": None}], tmp_path / "artifacts")
    close_parent(store, parent, pick_learning_rate=True)
    run = store.get_run(parent)
    assert run.info.status == "FINISHED"
    assert "data.dev_fraction > 0" in run.data.tags[contract.TAG_SWEEP_LR_PICKS]


# ---- the search's experiment presets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("experiment_name", "profile"),
    [pytest.param("lr_search", [], marks=pytest.mark.slow), ("lr_search_demo", ["profile=demo"])],
)
def test_lr_search_brackets_each_methods_own_learning_rate(experiment_name, profile) -> None:
    cfg = validate(compose([f"experiment={experiment_name}", *profile]))
    assert cfg.sweep.pick_learning_rate and not cfg.sweep.evaluate
    points = [validate(compose([*profile, *row])) for row in cfg.sweep.rows]
    methods = {p.method.name for p in points}
    assert methods == {"lora", "dora", "rslora", "pissa", "loraplus", "qlora", "ft"}
    presets = {m: validate(compose([*profile, f"method={m}"])).method for m in methods}
    for method, preset in presets.items():
        rates = sorted(p.method.learning_rate for p in points if p.method.name == method)
        assert rates[1] == pytest.approx(preset.learning_rate), method  # the preset's, mid
        usual = preset.usual_learning_rates
        assert usual.low <= rates[0] and rates[-1] <= usual.high, method
    names = [p.run_name for p in points]
    assert len(set(names)) == len(names) and not set(names) & set(paper_values())
    assert all(p.data.dev_fraction > 0 and p.data.name == "0.6m" for p in points)


def test_rows_take_the_experiments_sweep_settings(monkeypatch, tmp_path) -> None:
    from hydra import initialize_config_dir

    from lorabench.config import CONF_DIR
    from lorabench.sweeping import rows
    from lorabench.sweeping.points import PointOutcome

    seen = []
    monkeypatch.setattr(
        rows, "print_plan", lambda cfg: seen.append(cfg) or PointOutcome(cfg.run_name, "train")
    )
    overrides = ["experiment=lr_search_demo", "profile=demo", "sweep.plan=true",
                 f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]  # fmt: skip
    cfg = validate(compose(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        rows.run_rows(cfg, overrides, "train.py")
    assert len(seen) == len(cfg.sweep.rows)
    assert all(not point.sweep.evaluate and point.sweep.pick_learning_rate for point in seen)
    assert {point.model.name for point in seen} == {"tiny"}
