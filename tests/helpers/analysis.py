"""Synthetic runs that follow the MLflow contract (lorabench.contract), for the analysis tests."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from PIL import Image

from lorabench import contract
from lorabench.evaluation.eval_set import CATEGORIES

DEMO_SIZES = {"0.6m": 600, "2m": 2000, "4m": 4000}


def experiment(client: MlflowClient, name: str, artifacts: Path) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifacts.resolve().as_uri())


def log_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    *,
    params: Mapping[str, object] = (),
    metrics: Mapping[str, float] = (),
    tags: Mapping[str, str] = (),
    status: str = "FINISHED",
) -> str:
    run_id = client.create_run(experiment_id, run_name=name, tags=dict(tags)).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in dict(metrics).items()],
        params=[Param(k, str(v)) for k, v in dict(params).items()],
        tags=[RunTag("mlflow.source.name", "tests")],
    )
    client.set_terminated(run_id, status)
    return run_id


def scores(base: float, spread: float = 0.02) -> dict[str, float]:
    """Per-category eval metrics around `base`, and their macro average."""
    per = {c: round(min(1.0, base + spread * (i - 4)), 4) for i, c in enumerate(CATEGORIES)}
    average = sum(per.values()) / len(per)
    return {
        **{f"eval/score/{c}": v for c, v in per.items()},
        "eval/average_score": average,
        "eval/average_score_ci_low": average - 0.03,
        "eval/average_score_ci_high": average + 0.03,
        "eval/judge_calls": 0,
    }


def eval_counts(
    parse_failures: Mapping[str, int] = (), truncated: Mapping[str, int] = ()
) -> dict[str, float]:
    """The counts an evaluation logs, from {category: count}: every category (zeros included)
    and the totals."""
    failures, cut = dict(parse_failures), dict(truncated)
    return {
        contract.EVAL_JUDGE_PARSE_FAILURES: sum(failures.values()),
        contract.EVAL_TRUNCATED_ANSWERS: sum(cut.values()),
        **{contract.eval_parse_failures(c): failures.get(c, 0) for c in CATEGORIES},
        **{contract.eval_truncated(c): cut.get(c, 0) for c in CATEGORIES},
    }


def demo_run(
    client: MlflowClient,
    experiment_id: str,
    method: str,
    data: str,
    *,
    model: str = "tiny",
    judge: str | None = "reference:f1",
    eval_set: str = "demo",
    parent: str | None = None,
    status: str = "FINISHED",
    score: float | None = None,
    more_metrics: Mapping[str, float] = (),
    more_tags: Mapping[str, str] = (),
) -> str:
    """One grid point of a demo sweep, with training metrics and (unless judge is None) eval;
    `more_metrics` and `more_tags` are logged too (e.g. `eval_counts`, the served judge model)."""
    n = DEMO_SIZES.get(data, 250)
    lora = method == "lora"
    base_params = 830_000 if model == "tiny" else 6_738_415_616
    additional = 11_264 if lora else 0
    metrics: dict[str, float] = {
        "train/loss": 2.0,
        "train/tokens_per_second": 5000.0,
        "train/hours_per_epoch": n * (1.2e-6 if lora else 2.0e-6),
        "train/gpu_hours": n * (4.8e-6 if lora else 6.0e-6),
        "model/additional_params": additional,
        "model/trainable_params": additional if lora else base_params,
        "model/total_params": base_params + additional,
        "system/peak_memory_gb": 0.5,
    }
    tags = {"profile": "demo", "config_hash": f"{method}{data}", "git_commit": "abc"}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    if judge is not None:
        if score is None:
            score = (0.30 if lora else 0.38) + 0.02 * list(DEMO_SIZES).index(data)
        metrics.update(scores(score))
        tags.update({"eval_judge": judge, "eval_set": eval_set, "eval_items": "45"})
    metrics.update(more_metrics)
    tags.update(more_tags)
    params = {
        "model.name": model,
        "method.name": method,
        "data.name": data,
        "data.num_samples": "None",
        "data.nominal_samples": int(n * 1000),
        "data.demo_fraction": 0.001,
        "method.learning_rate": 2e-4 if lora else 5e-6,
        "hardware.num_processes": 1,
    }
    return log_run(
        client,
        experiment_id,
        f"{model}+{method}({data})",
        params=params,
        metrics=metrics,
        tags=tags,
        status=status,
    )


def demo_sweep(
    client: MlflowClient, artifacts: Path, experiment_name: str = "lorabench-demo"
) -> tuple[str, list[str]]:
    """A parent run (tag sweep=true) and 6 children: tiny × lora/ft × 0.6m/2m/4m, evaluated."""
    exp = experiment(client, experiment_name, artifacts)
    parent = client.create_run(exp, run_name="sweep", tags={"sweep": "true"}).info.run_id
    children = [
        demo_run(client, exp, method, data, parent=parent)
        for method in ("lora", "ft")
        for data in DEMO_SIZES
    ]
    client.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))
    return parent, children


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_real_image(path: Path) -> None:
    """A PNG that PIL decodes, of a real figure's size, or an SVG document with drawing in it."""
    assert path.is_file(), path
    if path.suffix == ".png":
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            image.load()
            assert image.width >= 600 and image.height >= 400
            # Not blank: a drawn figure has many distinct colours.
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50
        assert path.stat().st_size > 20_000
    else:
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
        assert sum(1 for el in root.iter() if el.tag.endswith("path")) > 20
