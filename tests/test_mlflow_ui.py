"""The MLflow UI as a user meets it: `mlflow ui` on a demo store opens the experiment on its
runs, with their training data, checked through the REST API and headless Chromium's rendered
page. `LORABENCH_SCREENSHOTS=<dir>` keeps the screenshots (experiment page, runs compared)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lorabench import contract
from lorabench.evaluation import evaluate
from lorabench.training import train
from tests.helpers.mlflow_server import free_port, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RENDER_TIMEOUT_MS = 240_000
"""How long the UI may take to render (its scripts are large; a loaded CI machine is slow)."""
ML_WORKFLOW = "workflowType=machine_learning"
FAST = ("training.max_steps=3", "eval.demo_per_class=1", "eval.decoding.max_new_tokens=4")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.loads(reply.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@pytest.fixture
def ui(tmp_path: Path, demo_config, store_file: Path) -> Iterator[tuple[str, list[str]]]:
    """A demo store with two evaluated runs (LoRA, FT), and `mlflow ui` on it."""
    run_ids = []
    for method in ("lora", "ft"):
        point = (f"method={method}", "data=math_0.25m", f"training.output_dir={tmp_path}/{method}")
        run_ids.append(train(demo_config(*point, *FAST)).run_id)
        evaluate(demo_config(*point, *FAST, f"run={run_ids[-1]}"))
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "ui", "--backend-store-uri", f"sqlite:///{store_file}"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running_server(command, tmp_path, url, log_name="ui.log", stop=signal.SIGKILL):
        yield url, run_ids


def _screenshots(url: str, exp_id: str, run_ids: list[str], out: Path) -> tuple[str, str]:
    """The experiment page's and the run comparison's rendered text; screenshots of both."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])  # root
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # MLflow 3.17's UI follows its GenAI / Model training switch (kept in the browser);
        # this is the link the README gives.
        page.goto(f"{url}/#/experiments/{exp_id}?{ML_WORKFLOW}", timeout=RENDER_TIMEOUT_MS)
        page.get_by_text("Dataset", exact=True).first.wait_for(timeout=RENDER_TIMEOUT_MS)
        page.get_by_text("math_0.25m").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        page.screenshot(path=out / "experiment.png")
        experiment = page.inner_text("body")
        runs = urllib.parse.quote(json.dumps(run_ids))
        exps = urllib.parse.quote(json.dumps([exp_id]))
        page.goto(f"{url}/#/compare-runs?runs={runs}&experiments={exps}")
        page.get_by_text(contract.EVAL_AVERAGE_SCORE).first.wait_for(timeout=RENDER_TIMEOUT_MS)
        page.screenshot(path=out / "compare.png", full_page=True)
        compared = page.inner_text("body")
        browser.close()
    keep = os.environ.get("LORABENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name in ("experiment.png", "compare.png"):
            shutil.copy(out / name, Path(keep) / name)
    return experiment, compared


@pytest.mark.slow
def test_the_ui_opens_the_experiment_on_its_runs_with_datasets(ui, tmp_path: Path) -> None:
    url, run_ids = ui
    api = f"{url}/ajax-api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name=lorabench-demo")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags[contract.TAG_EXPERIMENT_KIND] == contract.EXPERIMENT_KIND_TRAINING
    runs = _post(f"{api}/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert {r["info"]["run_id"] for r in runs} == set(run_ids)
    for run in runs:
        (dataset_input,) = run["inputs"]["dataset_inputs"]
        dataset = dataset_input["dataset"]
        assert dataset["name"] == "math_0.25m" and dataset["source_type"] == "demo"
        assert json.loads(dataset["profile"])["num_rows"] > 0
        context = {t["key"]: t["value"] for t in dataset_input["tags"]}
        assert context["mlflow.data.context"] == contract.DATASET_CONTEXT_TRAINING
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert contract.EVAL_AVERAGE_SCORE in metrics

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="drives the browser: pip install playwright")
    experiment_page, compared = _screenshots(url, experiment["experiment_id"], run_ids, tmp_path)
    assert "Model training" in experiment_page and "Runs" in experiment_page
    assert "tiny+lora(math_0.25m)[steps=3]" in experiment_page
    assert "tiny+ft(math_0.25m)[steps=3]" in experiment_page
    assert contract.EVAL_AVERAGE_SCORE in compared
