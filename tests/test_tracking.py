"""The MLflow run lifecycle: opened, closed as it ended, reopened when resumed."""

from __future__ import annotations

import pytest

from lorabench.contract import RUN_ID_FILE
from lorabench.tracking.runs import tracked_run


def test_finished_run_keeps_params_metrics_and_artifacts(tracking, store, tmp_path) -> None:
    params = {"method.name": "lora", "too.long": "x" * 10_000}
    with tracked_run(
        tracking, "tiny+lora(2m)", tmp_path / "out", params=params, tags={"profile": "x"}
    ) as run:
        run.log_metrics({"train/loss": 2.5}, step=3)
        run.log_text("a: 1\n", "config/resolved.yaml")
    got = store.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "tiny+lora(2m)"
    assert got.data.params == {"method.name": "lora"}  # over-long values live in the artifact
    assert got.data.metrics == {"train/loss": 2.5} and got.data.tags["profile"] == "x"
    assert store.get_experiment_by_name("unit").artifact_location.startswith("file://")
    assert (tmp_path / "artifacts").is_dir()


def test_exception_marks_the_run_failed_with_the_error(tracking, store, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with tracked_run(tracking, "r", tmp_path / "out") as run:
            raise RuntimeError("boom")
    got = store.get_run(run.run_id)
    assert got.info.status == "FAILED" and "RuntimeError: boom" in got.data.tags["error"]


def test_interrupt_marks_the_run_killed(tracking, store, tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(tracking, "r", tmp_path / "out") as run:
            raise KeyboardInterrupt
    assert store.get_run(run.run_id).info.status == "KILLED"


def test_resume_reopens_the_run_recorded_in_the_output_dir(tracking, store, tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(tracking, "r", out) as first:
            raise KeyboardInterrupt
    assert (out / RUN_ID_FILE).read_text() == first.run_id
    with tracked_run(tracking, "r", out) as second:
        assert store.get_run(second.run_id).info.status == "RUNNING"
    assert second.run_id == first.run_id
    assert store.get_run(first.run_id).info.status == "FINISHED"
    with tracked_run(tracking, "r", out, resume=False) as fresh:
        pass
    assert fresh.run_id != first.run_id


def test_resume_clears_an_earlier_error(tracking, store, tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with tracked_run(tracking, "r", out) as first:
            raise RuntimeError("boom")
    assert store.get_run(first.run_id).info.status == "FAILED"
    with tracked_run(tracking, "r", out) as resumed:
        pass
    got = store.get_run(resumed.run_id)
    assert resumed.run_id == first.run_id and got.info.status == "FINISHED"
    assert "error" not in got.data.tags
