"""sweep.py: grid points as nested MLflow runs, skipped when done, resumed when killed, chained
runs that start from their base run, the plan mode, and the exit code of a sweep whose points
failed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lorabench import contract
from lorabench.console import outcome_line
from lorabench.sweeping.multirun import SweepCallback, record_outcome
from lorabench.sweeping.points import PointOutcome, print_plan
from lorabench.training import train
from tests.helpers.benchmarks import PANEL
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.cli import run_cli
from tests.helpers.runs import CONTRACT_METRICS, runs_of

EVAL_METRICS = {"eval/average_score", "eval/score/others", "eval/judge_calls"}
BENCH_METRICS = {
    contract.bench_metric("lorabench_retention", "acc"),
    contract.bench_metric("lorabench_target", "logprob_per_char"),
    contract.BENCH_WORLD_PERPLEXITY,
}
"""The demo's panel (`benchmarks=demo`), on every demo run."""
FAST = ("training.max_steps=6", "eval.demo_per_class=1", "eval.decoding.max_new_tokens=4")


def _children(store, parent_id: str) -> list:
    return [r for r in runs_of(store) if r.data.tags.get("mlflow.parentRunId") == parent_id]


def _parents(store) -> list:
    return [r for r in runs_of(store) if r.data.tags.get("sweep") == "true"]


def saved_at(run) -> dict[str, int]:
    """When each file of a run's saved model was written."""
    saved = Path(run.data.tags[contract.TAG_MODEL_PATH])
    return {p.name: p.stat().st_mtime_ns for p in saved.iterdir() if p.is_file()}


@pytest.mark.slow
def test_grid_runs_nested_then_skips_when_done(tmp_path: Path, isolated, store) -> None:
    args = ["-m", "profile=demo", "method=lora,ft", "data=0.6m,math_0.25m", *isolated, *FAST]
    args += PANEL  # every demo run has its benchmarks
    args = [a for a in args if not a.startswith("training.output_dir=")]
    args.append(f"training.output_dir={tmp_path}/out/${{run_name}}")
    # The first sweep without the anatomy: the second measures it without training again.
    first = run_cli("sweep.py", *args, "sweep.anatomy=false", cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-4000:]
    # A quiet console: one summary line a point, no per-step dicts (they go to the log file).
    summaries = [line for line in first.stdout.splitlines() if ": finished  loss " in line]
    assert len(summaries) == 4, first.stdout
    assert "{'loss'" not in first.stdout + first.stderr

    (parent,) = _parents(store)
    children = _children(store, parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["grid_points"] == "4"
    assert sorted(r.info.run_name for r in children) == [
        "tiny+ft(0.6m)[steps=6]",
        "tiny+ft(math_0.25m)[steps=6]",
        "tiny+lora(0.6m)[steps=6]",
        "tiny+lora(math_0.25m)[steps=6]",
    ]
    for run in children:
        assert run.info.status == "FINISHED"
        assert CONTRACT_METRICS | EVAL_METRICS | BENCH_METRICS <= set(run.data.metrics)
        assert contract.ANATOMY_MATRICES not in run.data.metrics
    trained = {r.info.run_name: saved_at(r) for r in children}
    # The demo judges the study's pairs head to head when the sweep closes (LoRA vs FT per data).
    assert parent.data.tags[contract.TAG_PAIRWISE_JUDGE] == "reference-pairwise:f1"
    for data in ("0.6m", "math_0.25m"):
        pair = f"tiny+lora({data})[steps=6] vs tiny+ft({data})[steps=6]"
        assert 0 <= parent.data.metrics[contract.pairwise_win_rate(pair)] <= 1, pair

    second = run_cli("sweep.py", *args, cwd=tmp_path, timeout=900)  # the demo measures them
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count(": finished") == 4
    tuned = [r for r in runs_of(store) if "sweep" not in r.data.tags]
    assert {r.info.run_name: saved_at(r) for r in tuned} == trained  # not trained again
    for run in tuned:
        assert run.data.metrics[contract.ANATOMY_MATRICES] == 12, run.info.run_name  # 2 × 6

    third = run_cli("sweep.py", *args, cwd=tmp_path, timeout=900)
    assert third.returncode == 0, third.stderr[-4000:]
    assert third.stdout.count(": skipped") == 4
    assert len([r for r in runs_of(store) if "sweep" not in r.data.tags]) == 4


@pytest.mark.slow
def test_killed_grid_point_resumes_on_the_next_sweep(tmp_path: Path, isolated, store) -> None:
    total, every = 30, 5
    args = [
        sys.executable,
        str(REPO_ROOT / "sweep.py"),
        "profile=demo",
        "data=math_0.25m",
        *isolated,
        f"training.max_steps={total}",
        f"training.save_steps={every}",
        "eval.demo_per_class=1",
        "eval.decoding.max_new_tokens=4",
    ]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        checkpoint = tmp_path / "out" / f"checkpoint-{every}"
        while not checkpoint.is_dir():
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            subprocess.run(["sleep", "0.2"])
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    (killed,) = runs_of(store)
    assert killed.info.status == "KILLED"

    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs_of(store)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    steps = [m.step for m in store.get_metric_history(run.info.run_id, "train/learning_rate")]
    assert max(steps) == total and len(steps) < 2 * total  # resumed, not started over
    assert "eval/average_score" in run.data.metrics


def test_chained_run_starts_from_its_base_run(demo_config, store) -> None:
    base = train(demo_config("method=ft", "data=0.6m", "training.max_steps=40"))
    chained = train(
        demo_config(
            "method=lora_incremental",
            "data=math_0.25m",
            "base_run='tiny+ft(0.6m)[steps=40]'",
            "training.max_steps=2",
            f"training.output_dir={base.output_dir.parent}/chained",
        )
    )
    fresh = train(
        demo_config(
            "method=lora",
            "data=math_0.25m",
            "training.max_steps=2",
            f"training.output_dir={base.output_dir.parent}/fresh",
        )
    )
    run = store.get_run(chained.run_id)
    assert run.info.run_name == "tiny+ft(0.6m)[steps=40]+lora(math_0.25m)[steps=2]"
    assert run.data.tags["base_run_id"] == base.run_id

    def first_loss(run_id: str) -> float:
        return store.get_metric_history(run_id, "train/loss")[0].value

    # Both runs start from the same pretrained tiny base with the same seed, data order and first
    # batch, and CPU training is deterministic: a chain that did not load its base run's weights
    # would log exactly the fresh run's first loss. Any margin beyond that would be a number that
    # holds for one set of library versions (the weights themselves: test_chained_runs.py).
    assert first_loss(chained.run_id) < first_loss(fresh.run_id)


def test_plan_lists_points_without_running_them(tmp_path: Path, isolated, store) -> None:
    result = run_cli(
        "sweep.py",
        "profile=demo",
        "experiment=paper_table4",
        "sweep.plan=true",
        *isolated,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if ": train lr=" in line]
    names = [line.split(":")[0] for line in lines]
    assert len(names) == 8 and all("GiB per process" in line for line in lines)
    assert names.index("tiny+ft(2m)") < names.index("tiny+ft(2m)+lora(math_0.25m)")
    assert names.index("tiny+ft(2m)") < names.index("tiny+ft(2m)+ft(math_0.25m)")
    assert "tiny-13b+lora(2m)" in names
    assert "10 grid points: 2 evaluate, 8 train" in result.stdout
    # The untuned bases the rows are read against come first, as base rows.
    assert result.stdout.index("tiny (base): evaluate") < result.stdout.index(lines[0])
    assert "tiny-13b (base): evaluate" in result.stdout
    # The demo's offline judge calls nothing and costs nothing, and the plan says so.
    assert all(line.endswith("| judge: 0 calls, 0.00M tokens, $0.00") for line in lines)
    assert "judge: 0 calls, 0.00M tokens, $0.00 (offline judge: calls no API" in result.stdout
    assert runs_of(store) == []


def gpu_hours(stdout: str) -> dict[str, float]:
    """Each plan line's GPU hours, by run name."""
    found = (re.search(r"^(.+?): .* ([\d.e+]+) GPU hours", line) for line in stdout.splitlines())
    return {m[1]: float(m[2]) for m in found if m}


def test_plan_hours_follow_each_methods_flops_epochs_and_mfu(tmp_path: Path, isolated) -> None:
    result = run_cli(
        "sweep.py", "-m", "method=lora,ft", "data=2m", "sweep.plan=true", *isolated, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    hours = gpu_hours(result.stdout)
    # Per token and parameter FT executes 6 + 2 FLOPs (checkpointing recomputes the forward)
    # for 3 epochs at MFU 0.40, LoRA 4 + 2 for 4 epochs at MFU 0.35.
    assert hours["llama-7b+ft(2m)"] / hours["llama-7b+lora(2m)"] == pytest.approx(
        (8 * 3 / 0.40) / (6 * 4 / 0.35), rel=0.01
    )
    total = re.search(r"total: ([\d.e+]+) GPU hours", result.stdout)
    assert float(total[1]) == pytest.approx(sum(hours.values()), rel=0.01)


def test_plan_prints_each_paper_rows_memory_hours_learning_rate_and_epochs(
    tmp_path: Path, isolated
) -> None:
    # Offline (HF_HUB_OFFLINE=1 in run_cli) on the paper's hardware preset, gpu8: 8×A100-40GB.
    result = run_cli(
        "sweep.py", "experiment=paper_table4", "sweep.plan=true", *isolated, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split(": ")[0]: line for line in result.stdout.splitlines() if "h/epoch" in line}
    assert len(rows) == 8
    for line in rows.values():
        assert re.search(r"[\d.]+/39.4 GiB per GPU", line) and " h/epoch" in line, line
        assert "| fits |" in line, line
    assert "lr=5e-07 epochs=2" in rows["llama-7b+ft(2m)+ft(math_0.25m)"]  # §4.5
    assert "lr=5e-06 epochs=3" in rows["llama-7b+ft(2m)"]  # Table 2
    assert "lr=0.0002 epochs=4" in rows["llama-7b+ft(2m)+lora(math_0.25m)"]  # Table 3
    # Nothing is downloaded by a plan: without BELLE's eval set here, its judge cost is unknown.
    assert all(line.endswith("| judge: cost unknown (see below)") for line in rows.values())
    assert "cost unknown:\n  the eval set is not on this machine yet" in result.stdout


def test_a_point_that_cannot_be_planned_says_why_once(demo_config, capsys) -> None:
    outcome = print_plan(
        demo_config("model=causal-lm", "model.name=mine", "model.pretrained=/nowhere/mine")
    )
    assert outcome.failed
    out = capsys.readouterr().out
    assert out.count("error:") == 1 and "model.architecture" in out


@pytest.mark.slow
def test_a_plan_reports_the_points_it_cannot_plan_and_plans_the_others(
    tmp_path: Path, isolated
) -> None:
    result = run_cli(
        "sweep.py",
        "-m",
        "model=llama-7b,causal-lm",
        "model.name=mine",
        "model.pretrained=/nowhere/mine",
        "hardware.gpu=h100-80gb,v100",
        "method=ft",
        "sweep.plan=true",
        *isolated,
        f"hydra.sweep.dir={tmp_path}/multirun",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    planned = [line for line in lines if "GiB per GPU" in line]
    assert len(planned) == 1 and "/79.1 GiB per GPU" in planned[0]  # llama-7b on h100-80gb
    unknown = [line for line in lines if "unknown GPU type" in line]
    assert len(unknown) == 2 and all("a100-40gb, a100-80gb, h100-80gb" in u for u in unknown)
    assert sum("model.architecture" in line for line in lines) == 1  # causal-lm on h100-80gb
    assert "4 grid points: 1 train, 3 failed" in result.stdout


def test_a_multirun_with_a_failed_point_ends_non_zero(tmp_path: Path, capsys) -> None:
    record_outcome(PointOutcome("a", "finished"), tmp_path, 0)
    record_outcome(PointOutcome("b", "failed"), tmp_path, 1)
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}}, "sweep": {"plan": False}}
    )
    with pytest.raises(SystemExit) as ended:
        SweepCallback().on_multirun_end(config)
    assert ended.value.code == 1
    assert capsys.readouterr().out.splitlines() == [
        "2 grid points: 1 finished, 1 failed",
        "failed: b",
    ]

    plan = OmegaConf.merge(config, {"sweep": {"plan": True}})
    SweepCallback().on_multirun_start(plan)  # a new sweep into the same directory
    record_outcome(PointOutcome("a", "train", gpu_hours=2.5, fits=True), tmp_path, 0)
    record_outcome(PointOutcome("b", "train", gpu_hours=1.0, fits=False), tmp_path, 1)
    SweepCallback().on_multirun_end(plan)
    assert capsys.readouterr().out.splitlines() == [
        "2 grid points: 2 train",
        "total: 3.5 GPU hours to train or resume",
        "do not fit as configured: b",
    ]


def test_a_points_summary_line_names_its_loss_score_interval_and_time() -> None:
    metrics = {
        contract.TRAIN_FINAL_LOSS: 1.23456,
        contract.EVAL_AVERAGE_SCORE: 0.345,
        contract.EVAL_AVERAGE_SCORE_CI_LOW: 0.301,
        contract.EVAL_AVERAGE_SCORE_CI_HIGH: 0.389,
    }
    line = outcome_line(PointOutcome("tiny+lora(2m)", "finished", seconds=65.2, metrics=metrics))
    assert line == "tiny+lora(2m): finished  loss 1.235  score 0.345 (95% CI 0.301-0.389)  1m05s"
    failed = outcome_line(PointOutcome("tiny (base)", "failed", seconds=3.0))
    assert (
        failed.startswith("tiny (base): failed  (the error is in the log file") and "3s" in failed
    )
