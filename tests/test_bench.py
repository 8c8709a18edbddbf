"""The benchmarks under bench/ keep running: each in its smoke mode (`--smoke`: tiny sizes, the
same figure lines as a full run) as a subprocess with every output under tmp_path, and the demo
sweep's report reading a store that also holds the base's pretraining run."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lorabench import contract
from tests.helpers.checkout import REPO_ROOT
from tests.helpers.cli import run_cli

BENCH = REPO_ROOT / "bench"
WATCHED = ("mlruns", "outputs", "multirun", "reports", ".cache", "bench")
"""The checkout's folders of runs, reports and caches (the user's), and the scripts' own."""
DEMO_POINTS = [f"{m}_{d}" for m in ("lora", "ft") for d in ("0.6m", "2m", "4m")]
GPU_CHECK_TRAINING = ("tokens_per_second_per_gpu", "mfu", "step_seconds", "peak_memory_gb")
"""bench/gpu_check.py's figures per method and attention implementation."""
FIGURES = {
    "anatomy_svd.py": [
        *("size", "repeats", "threads", "device", "gpu", "svd_seconds", "anatomy_seconds"),
        *("matrices_7b", "projected_7b_seconds", "projected_7b_hours"),
    ],
    "data_prep.py": [
        *("samples", "corpus_gb", "generate_seconds", "load_average_1min"),
        *("prep_seconds", "prep_cpu_seconds", "samples_per_second"),
        *("tokenizer_only_samples_per_second", "ratio_to_tokenizer", "cached_seconds"),
        *("peak_rss_gb", "peak_rss_sum_gb", "rows_read", "rows_kept", "skipped_empty_field"),
        *("tokens", "mean_length", "p95_length", "nonpad_share_padded"),
        *("nonpad_share_grouped", "nonpad_share_packed", "nonpad_share_default"),
    ],
    "generation_backends.py": [
        *("items", "new_tokens", "batch_size", "concurrency", "hf_seconds"),
        *("hf_answers_per_second", "server_seconds", "server_answers_per_second"),
        *("server_to_hf", "identical_answers"),
    ],
    "judge_throughput.py": [
        *("judge_items", "judge_latency_seconds", "judge_concurrency", "judge_floor_seconds"),
        *("judge_seconds", "judge_calls", "cached_seconds", "cached_calls"),
        *("pairwise_pairs", "pairwise_calls", "pairwise_floor_seconds", "pairwise_seconds"),
        "pairwise_to_floor",
        *("generation_questions", "generation_batch_size", "generation_batched_seconds"),
        *("generation_single_seconds", "generation_speedup"),
    ],
    "train_throughput.py": [
        *("model", "method", "data", "steps", "repeats", "threads"),
        *("project_run0_tokens_per_second", "project_run0_wall_seconds"),
        *("baseline_run0_tokens_per_second", "baseline_run0_wall_seconds"),
        *("project_tokens_per_second", "baseline_tokens_per_second", "ratio", "best_ratio"),
    ],
    "gpu_check.py": [
        *("device", "gpu", "peak_tflops", "precision", "architecture", "seq_len", "micro_batch"),
        *("warmup_steps", "measured_steps", "lora_params", "ft_params"),
        *(
            f"{m}_{a}_{f}"
            for m in ("lora", "ft")
            for a in ("sdpa", "eager")
            for f in GPU_CHECK_TRAINING
        ),
        *("hf_items", "hf_new_tokens", "hf_batch_size", "hf_seconds", "hf_answers_per_second"),
        # On a GPU with flash-attn, liger-kernel and vLLM: their figures in place of these reasons.
        *("flash_attention_2_skipped", "liger_kernel_skipped", "vllm_skipped", "total_seconds"),
    ],
    "sweep_overhead.py": [
        *("repeats", "steps", "cpus", "load_average_start"),
        *("sweep_seconds_run0", "direct_seconds_run0", "points", "sweep_seconds"),
        *("direct_seconds", "overhead_seconds_per_point", "demo_sweep_seconds"),
        *(f"demo_{p}_{f}" for p in DEMO_POINTS for f in ("steps", "train_seconds", "eval_seconds")),
        *("demo_train_seconds", "demo_eval_seconds", "demo_bench_seconds"),
        "demo_pretraining_seconds",
        "demo_other_seconds",
    ],
}
"""Each script's figures, as its full run prints them (its docstring lists them)."""

WITHOUT_BASE = {"anatomy_svd.py", "data_prep.py", "gpu_check.py"}
"""Scripts that need no pretrained demo base (gpu_check.py builds its model with random weights)."""
SLOW = {"sweep_overhead.py"}
"""Minutes even in smoke mode: a warm-up, a sweep and a direct loop of four points, then the
six-point demo sweep, each a fresh process."""


@pytest.fixture(scope="module")
def bench_path() -> Iterator[None]:
    """bench/ first on the module path, as when its scripts run (they import `benchutil`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        yield


@pytest.fixture(scope="module")
def pretrained_base(
    shared_pretrained_bases: Path, bench_path: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The session's shared tiny base (LORABENCH_PRETRAINED_DIR, which the scripts inherit),
    made now if missing, as the scripts would (minutes on a busy machine), rather than inside a
    benchmark, whose own run the subprocess timeout is for."""
    benchutil = importlib.import_module("benchutil")
    benchutil.demo_base(benchutil.demo_config(tmp_path_factory.mktemp("base-cache")))


def checkout_state() -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under the checkout's `WATCHED` folders, and
    the names at its root (a stray store or folder there)."""
    state = {path.name: (0, 0) for path in REPO_ROOT.iterdir()}
    for folder in WATCHED:
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.is_file():
                stat = path.stat()
                state[path.relative_to(REPO_ROOT).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return state


def figure_names(stdout: str) -> set[str]:
    """The names of the `name=value` words (a line may hold several)."""
    return {word.split("=", 1)[0] for word in stdout.split() if "=" in word}


def test_every_bench_script_has_a_smoke_test() -> None:
    scripts = {p.name for p in BENCH.glob("*.py") if '__name__ == "__main__"' in p.read_text()}
    assert scripts == FIGURES.keys()


@pytest.mark.parametrize(
    "script",
    [pytest.param(s, marks=[pytest.mark.slow] if s in SLOW else []) for s in sorted(FIGURES)],
)
def test_bench_script_runs_in_smoke_mode(
    script: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> None:
    if script not in WITHOUT_BASE:
        request.getfixturevalue("pretrained_base")
    env = {
        # The scripts' own work folders, the libraries' caches, any default MLflow store, and no
        # bytecode written next to the scripts: all of it under pytest's temporary folders. The
        # temporary folder is a short one: datasets' worker processes put a socket there, and a
        # socket's path is limited to 107 bytes (a test's tmp_path is long under xdist).
        "TMPDIR": str(tmp_path_factory.mktemp("t")),
        "HF_HOME": str(tmp_path / "hf"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/default-mlflow.db",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    before = checkout_state()

    result = run_cli(f"bench/{script}", "--smoke", cwd=tmp_path, env=env, timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    missing = [name for name in FIGURES[script] if name not in figure_names(result.stdout)]
    assert not missing, result.stdout
    after = checkout_state()
    assert sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p)) == []


@pytest.fixture
def sweep_overhead(bench_path: None):
    """bench/sweep_overhead.py as a module."""
    return importlib.import_module("sweep_overhead")


def test_demo_report_leaves_out_the_sweep_and_the_pretraining_run(
    sweep_overhead, store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{store_file}"
    client = MlflowClient(store)
    experiment = client.create_experiment("lorabench-demo")
    pretraining = contract.format_model_run_name("tiny", contract.RUN_KIND_PRETRAINING)
    runs = {
        "sweep": {contract.TAG_SWEEP: "true"},
        pretraining: {contract.TAG_RUN_KIND: contract.RUN_KIND_PRETRAINING},
        "tiny+lora(2m)[steps=1]": {},
    }
    for name, tags in runs.items():
        run = client.create_run(experiment, tags=tags, run_name=name, start_time=1_000)
        for step, metric in enumerate(("model/total_params", "train/loss")):
            client.log_metric(run.info.run_id, metric, 1.0, timestamp=4_000, step=step)
        if name == "tiny+lora(2m)[steps=1]":  # its evaluation's benchmark stage
            client.log_metric(run.info.run_id, contract.BENCH_SECONDS, 1.5, timestamp=5_000)
        client.set_terminated(run.info.run_id, end_time=6_000)

    sweep_overhead.report_demo(store, seconds=10.0)

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "demo_lora_2m_steps=1",
        "demo_lora_2m_train_seconds=3.0",
        "demo_lora_2m_eval_seconds=2.0",
        "demo_train_seconds=3.0",
        "demo_eval_seconds=2.0",
        "demo_bench_seconds=1.5",
        "demo_pretraining_seconds=5.0",
        "demo_other_seconds=5.0",
    ]
