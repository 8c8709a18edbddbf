"""The benchmark stage (`lorabench.benchmarks`) on the tiny demo base: lm-eval through the project
equals lm-eval's own `simple_evaluate`, the demo's target task is the log-likelihood of the worked
answers computed by hand, an adapter's scores are its own, a missing dataset fails
its task and the run, a rerun asks the model nothing, and an unknown task stops a sweep before
training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import huggingface_hub
import lm_eval
import pytest
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from mlflow.tracking import MlflowClient
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from lorabench import contract
from lorabench.benchmarks import BenchmarkIncomplete, bench_hash, run_benchmarks
from lorabench.benchmarks.tasks import include_paths
from lorabench.config import compose, validate
from lorabench.demo import panel
from lorabench.evaluation.targets import resolve_target
from lorabench.planning.benchmarks import estimate_benchmarks
from lorabench.tracking.runs import tracked_run
from tests.helpers.cli import run_cli
from tests.helpers.models import base_model

RETENTION = "lorabench_retention"
TARGET = "lorabench_target"
SMALL_PANEL = ("eval.demo_panel.retention_rounds=1", "eval.lm_eval.batch_size=32")
"""One round of the 148 pretraining-only statements: enough to tell models apart, in seconds."""
MISSING_TASK = """\
task: lorabench_missing_probe
dataset_path: lorabench-tests/no-such-dataset
test_split: test
output_type: multiple_choice
doc_to_text: q
doc_to_choice: c
doc_to_target: l
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


def config(root: Path, *overrides: str):
    """A demo config scoring the retention task alone, every output under `root`."""
    return validate(
        compose(
            [
                "profile=demo",
                f"tracking.tracking_uri=sqlite:///{root}/mlflow.db",
                f"tracking.artifact_location={root}/artifacts",
                f"cache_dir={root}/cache",
                f"eval.output_dir={root}/eval",
                f"eval.benchmarks=[{RETENTION}]",
                "eval.world_perplexity=false",
                *SMALL_PANEL,
                *overrides,
            ]
        )
    )


def benchmark(cfg, name: str):
    """The stage on `cfg`'s target, in a run of its own named `name`: (result or error, run)."""
    target = resolve_target(cfg)
    try:
        with tracked_run(cfg.tracking, name, target.eval_dir) as run:
            outcome = run_benchmarks(cfg, target, run)
    except BenchmarkIncomplete as err:
        outcome = err
    return outcome, MlflowClient(cfg.tracking.tracking_uri).get_run(run.run_id)


def items_of(run, task: str, root: Path) -> dict[str, float]:
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    path = client.download_artifacts(run.info.run_id, contract.bench_items_artifact(task))
    return {r["item"]: r["value"] for r in map(json.loads, Path(path).read_text().splitlines())}


@pytest.fixture(scope="module")
def base_run(root: Path):
    """The base's retention scores through the project (once for the module)."""
    outcome, run = benchmark(config(root), "base")
    return outcome, run


@pytest.fixture(scope="module")
def planted_adapter(root: Path) -> Path:
    """A LoRA adapter on the tiny base with random (not zero) B matrices: a model that is not
    the base, saved as training saves one."""
    cfg = config(root)
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(base_model(cfg), lora)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.2)
    path = root / "planted" / "adapter"
    model.save_pretrained(path)
    return path


def test_the_stage_scores_as_lm_evals_own_simple_evaluate(root: Path, base_run) -> None:
    outcome, run = base_run
    cfg = config(root)
    model, tokenizer = resolve_target(cfg).spec.load(cfg.cache_dir)
    manager = TaskManager(include_path=[str(p) for p in include_paths(cfg)])
    direct = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8),
        tasks=[RETENTION],
        task_manager=manager,
        log_samples=True,
    )

    reported = direct["results"][RETENTION]
    metrics = run.data.metrics
    assert metrics[contract.bench_metric(RETENTION, "acc")] == pytest.approx(reported["acc,none"])
    assert metrics[contract.bench_stderr(RETENTION, "acc")] == pytest.approx(
        reported["acc_stderr,none"]
    )
    assert 0.5 < reported["acc,none"] < 1.0  # the base knows most of its pretraining-only facts
    ours = items_of(run, RETENTION, root)
    theirs = {s["doc"]["id"]: s["acc"] for s in direct["samples"][RETENTION]}
    assert ours == theirs and len(ours) == 148
    client = MlflowClient(cfg.tracking.tracking_uri)
    summary = client.download_artifacts(run.info.run_id, contract.ARTIFACT_BENCH_SUMMARY)
    (row,) = csv.DictReader(Path(summary).open())
    assert tuple(row) == contract.BENCH_SUMMARY_COLUMNS
    assert (row["task"], row["role"], row["metric"], row["items"]) == (
        RETENTION,
        contract.BENCH_ROLE_RETENTION,
        "acc",
        "148",
    )
    assert run.data.tags[contract.TAG_BENCH_HASH]


def test_an_adapter_is_scored_with_the_adapter_applied(root: Path, base_run, planted_adapter):
    _, base = base_run
    _, tuned = benchmark(config(root, f"model_path={planted_adapter}"), "planted")

    key = contract.bench_metric(RETENTION, "acc")
    assert tuned.data.metrics[key] != base.data.metrics[key]
    base_items, tuned_items = items_of(base, RETENTION, root), items_of(tuned, RETENTION, root)
    assert base_items.keys() == tuned_items.keys()
    assert base_items != tuned_items


def test_the_demo_target_is_the_worked_answers_log_likelihood_per_character(root: Path) -> None:
    cfg = config(root, f"eval.benchmarks=[{TARGET}]", "eval.demo_panel.math_items=12")
    _, run = benchmark(cfg, "target")
    model, tokenizer = resolve_target(cfg).spec.load(cfg.cache_dir)

    def logprob_per_char(prompt: str, solution: str) -> float:
        # lm-eval's request, by hand: BOS, then the prompt whose trailing space it moves to the
        # answer's side; the answer's tokens scored after the prompt's.
        context = prompt.rstrip(" ")
        ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + solution, add_special_tokens=False)["input_ids"]
        ids, full = [tokenizer.bos_token_id, *ids], [tokenizer.bos_token_id, *full]
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0].float()
        picked = torch.log_softmax(logits[:-1], -1)[torch.arange(len(full) - 1), full[1:]]
        return float(picked[len(ids) - 1 :].sum()) / len(solution)

    rows = panel.target_items(12)
    expected = {r["id"]: logprob_per_char(r["prompt"], r["solution"]) for r in rows}
    ours = items_of(run, TARGET, root)
    assert ours.keys() == expected.keys()
    assert ours == pytest.approx(expected, abs=1e-4)
    metric = run.data.metrics[contract.bench_metric(TARGET, "logprob_per_char")]
    assert metric == pytest.approx(sum(expected.values()) / 12, abs=1e-4) and metric < 0


def test_a_new_demo_panel_version_measures_the_runs_again(root: Path, monkeypatch) -> None:
    demo, world_only = (
        config(root),
        config(root, "eval.benchmarks=[]", "eval.world_perplexity=true"),
    )
    before = {
        name: bench_hash(c, resolve_target(c))
        for name, c in (("demo", demo), ("world", world_only))
    }
    monkeypatch.setattr(panel, "PANEL_VERSION", panel.PANEL_VERSION + 1)
    after = {
        name: bench_hash(c, resolve_target(c))
        for name, c in (("demo", demo), ("world", world_only))
    }

    assert after["demo"] != before["demo"]  # a run benchmarked on the old panel is not done
    assert after["world"] == before["world"]  # no panel task: nothing to measure again


def test_a_rerun_asks_the_model_nothing(root: Path, base_run, monkeypatch) -> None:
    calls = []
    forward = LlamaForCausalLM.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", counted)
    _, first = base_run
    outcome, again = benchmark(config(root), "base")  # the same evaluation directory

    assert calls == []
    key = contract.bench_metric(RETENTION, "acc")
    assert again.data.metrics[key] == first.data.metrics[key]


def test_a_missing_dataset_fails_its_task_and_the_run_after_the_others(
    root: Path, tmp_path: Path, monkeypatch
) -> None:
    include = tmp_path / "tasks"
    include.mkdir()
    (include / "missing.yaml").write_text(MISSING_TASK)
    for variable in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(variable, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cfg = config(
        root,
        f"eval.benchmarks=[{RETENTION},lorabench_missing_probe]",
        "+eval.benchmark_roles.lorabench_missing_probe=retention",
        f"eval.lm_eval.include=[{include}]",
        f"eval.output_dir={tmp_path}/eval",
    )
    outcome, run = benchmark(cfg, "missing")

    assert isinstance(outcome, BenchmarkIncomplete)
    assert run.info.status == "FAILED"
    error = run.data.tags[contract.TAG_ERROR]
    assert "lorabench_missing_probe" in error and "lorabench-tests/no-such-dataset" in error
    assert "HF_DATASETS_CACHE" in error  # the offline hint
    assert contract.bench_metric(RETENTION, "acc") in run.data.metrics
    assert not any(k.startswith("bench/lorabench_missing_probe") for k in run.data.metrics)
    assert contract.TAG_BENCH_HASH not in run.data.tags


@pytest.mark.slow
def test_an_unknown_task_stops_a_sweep_before_training(tmp_path: Path) -> None:
    result = run_cli(
        "sweep.py",
        "profile=demo",
        "eval.benchmarks=[lorabench_retentoin]",
        f"training.output_dir={tmp_path}/out",
        f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"cache_dir={tmp_path}/cache",
        cwd=tmp_path,
    )

    assert result.returncode == 1
    assert "lorabench_retentoin" in result.stderr + result.stdout
    assert "nearest: lorabench_retention" in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_the_plan_line_times_c_eval_and_cmmlu_for_a_7b_on_one_gpu() -> None:
    cfg = validate(compose(["benchmarks=retention_zh", "hardware.gpu=a100-40gb"]))
    estimate = estimate_benchmarks(cfg, 6_738_415_616, cfg.gpus["a100-40gb"])  # LLaMA-7B

    assert estimate.items == 1346 + 11582 and not estimate.unsized
    assert 60 < estimate.seconds < 30 * 60  # the budget for C-Eval + CMMLU
    assert "benchmarks ceval-valid+cmmlu 12,928 items ≈ " in estimate.describe()
    unsized = validate(compose(["eval.benchmarks=[mmlu]", "+eval.benchmark_roles.mmlu=retention"]))
    line = estimate_benchmarks(unsized, 6_738_415_616, None).describe()
    assert "not sized: mmlu (plan.benchmark_items)" in line
