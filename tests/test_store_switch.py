"""A finished result belongs to a store: switching stores records it there, never retrains it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lorabench import contract
from lorabench.errors import ConfigError
from lorabench.training import train
from tests.helpers.cli import run_cli
from tests.helpers.runs import CONTRACT_METRICS, runs_of

FAST = ("training.max_steps=2", "eval.demo_per_class=1", "eval.decoding.max_new_tokens=4")


@pytest.fixture
def second_store(tmp_path: Path, empty_store_template: Path) -> tuple[str, MlflowClient]:
    path = tmp_path / "second.db"
    shutil.copyfile(empty_store_template, path)
    uri = f"sqlite:///{path}"
    return uri, MlflowClient(uri)


def test_finished_training_is_recorded_in_a_store_that_lacks_it(
    demo_config, store, second_store, caplog
) -> None:
    first = train(demo_config("method=lora", "data=0.6m", "training.max_steps=2"))
    uri, other = second_store
    moved = train(
        demo_config(
            "method=lora", "data=0.6m", "training.max_steps=2", f"tracking.tracking_uri={uri}"
        )
    )
    assert "recording the finished result there without training again" in caplog.text
    (imported,) = runs_of(other)
    assert imported.info.run_id == moved.run_id != first.run_id
    assert (
        imported.info.status == "FINISHED" and imported.info.run_name == "tiny+lora(0.6m)[steps=2]"
    )
    original = store.get_run(first.run_id)
    assert CONTRACT_METRICS <= set(imported.data.metrics)
    assert imported.data.metrics == original.data.metrics

    def untracked(params: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in params.items() if not k.startswith("tracking.")}

    assert untracked(imported.data.params) == untracked(original.data.params)
    tags = imported.data.tags
    assert tags[contract.TAG_IMPORTED_FROM_RUN] == first.run_id
    assert tags[contract.TAG_IMPORTED_FROM_URI] == store.tracking_uri
    assert tags[contract.TAG_MODEL_PATH] == original.data.tags[contract.TAG_MODEL_PATH]
    assert tags[contract.TAG_CONFIG_HASH] == original.data.tags[contract.TAG_CONFIG_HASH]
    assert {a.path for a in other.list_artifacts(moved.run_id)} >= {"adapter", "config"}
    # The first store still has its run: nothing new there, nothing trained again.
    again = train(demo_config("method=lora", "data=0.6m", "training.max_steps=2"))
    assert again.run_id == first.run_id and len(runs_of(store)) == 1
    record = json.loads((first.output_dir / contract.COMPLETE_MARKER).read_text())
    assert record["runs"] == {store.tracking_uri: first.run_id, uri: moved.run_id}


def test_a_completion_record_of_another_config_is_refused(demo_config, store) -> None:
    cfg = demo_config("method=lora", "data=0.6m", "training.max_steps=2")
    done = train(cfg)
    marker = done.output_dir / contract.COMPLETE_MARKER
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({**record, "config_hash": "0" * 16}))
    with pytest.raises(ConfigError, match="records a training of another config"):
        train(cfg)


@pytest.mark.slow
def test_the_same_sweep_against_a_new_empty_store(tmp_path: Path, isolated, store) -> None:
    args = ["-m", "profile=demo", "method=lora", "data=0.6m", *isolated, *FAST]
    first = run_cli("sweep.py", *args, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    new_store = tmp_path / "team" / "mlflow.db"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{new_store}"}
    args = [a for a in args if not a.startswith("tracking.tracking_uri=")]
    second = run_cli("sweep.py", *args, cwd=tmp_path, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "tiny+lora(0.6m)[steps=2]: finished" in second.stdout
    team = MlflowClient(env["MLFLOW_TRACKING_URI"])
    points = {}
    for client in (store, team):
        runs = runs_of(client)
        (points[client],) = [r for r in runs if "sweep" not in r.data.tags]
        (parent,) = [r for r in runs if "sweep" in r.data.tags]
        assert points[client].info.status == parent.info.status == "FINISHED"
        assert CONTRACT_METRICS | {"eval/average_score"} <= set(points[client].data.metrics)
        assert points[client].data.tags[contract.TAG_PARENT_RUN_ID] == parent.info.run_id
    assert points[team].data.tags[contract.TAG_IMPORTED_FROM_RUN] == points[store].info.run_id
    score = "eval/average_score"
    assert points[team].data.metrics[score] == points[store].data.metrics[score]
