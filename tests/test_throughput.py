"""Throughput and MFU of a training run: tokens per second (non-padding) and per device, the MFU
counted as the plan counts its hours, per logged step and as the session's summary, absent on a
CPU; and the report's Table 4 showing them beside hours per epoch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from lorabench import contract
from lorabench.analysis.runs import frame_from_records, load_runs
from lorabench.analysis.tables import MFU_ABSENT, table4, table4_markdown
from lorabench.config import compose, validate
from lorabench.data import sample_lengths
from lorabench.modeling.base import ParameterCounts
from lorabench.planning import Utilisation, utilisation
from lorabench.training import callbacks
from lorabench.training.callbacks import ContractMetricsCallback
from lorabench.training.recipe import TrainingRecipe, _summary_metrics
from tests.helpers.analysis import demo_run, experiment

LLAMA_7B = 6_738_415_616
SESSION = {
    "seconds": 1000.0,
    "checkpoint_seconds": 100.0,
    "tokens": 9_000_000.0,
    "epochs": 0.5,
    "gpu_hours": 2.0,
}
"""A session of known figures: 9M non-padding tokens in 1,000 s, 100 s of them checkpoints."""


def summary(*overrides: str, nonpad_share: float = 1.0) -> dict[str, float]:
    """The summary metrics of `SESSION` for LLaMA-7B under the config of `overrides`."""
    cfg = validate(compose(list(overrides)))
    counts = ParameterCounts(additional=0, trainable=LLAMA_7B, total=LLAMA_7B)
    return _summary_metrics(SESSION, counts, cfg, nonpad_share)


def test_mfu_is_the_plans_flops_over_the_gpus_peak() -> None:
    # The paper's hardware: 8 × A100-40GB (312 bf16 TFLOP/s each), activation checkpointing.
    metrics = summary("method=ft", "hardware.gpu=a100-40gb", nonpad_share=0.8)

    assert metrics[contract.TRAIN_TOKENS_PER_SECOND] == 9_000  # wall clock, checkpoints in
    assert metrics[contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE] == 9_000 / 8
    # By hand: 10,000 tokens/s of optimisation (900 s), 12,500 positions/s at 80% real tokens,
    # 6 + 2 FLOPs (the recomputed forward) per position and parameter, over 8 × 312 TFLOP/s.
    by_hand = 12_500 * 8 * LLAMA_7B / (8 * 312e12)
    assert metrics[contract.TRAIN_MFU] == pytest.approx(by_hand)
    assert 0.26 < by_hand < 0.28
    # LoRA's step costs 4 + 2 FLOPs per token and parameter; an H100 peaks at 989.
    lora = summary("method=lora", "hardware.gpu=h100-80gb", "hardware.precision=bf16")
    assert lora[contract.TRAIN_MFU] == pytest.approx(10_000 * 6 * LLAMA_7B / (8 * 989e12))


@pytest.mark.parametrize(
    "hardware", [("hardware=cpu",), ("hardware.gpu=null",)], ids=["cpu", "no-gpu-type"]
)
def test_no_mfu_on_a_cpu_or_without_a_gpu_type(hardware: tuple[str, ...]) -> None:
    metrics = summary("method=ft", *hardware)
    assert contract.TRAIN_MFU not in metrics  # absent, never 0
    world = 1 if hardware == ("hardware=cpu",) else 8
    assert metrics[contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE] == 9_000 / world
    assert utilisation(validate(compose(list(hardware))), LLAMA_7B) is None


class Clock:
    """A stand-in for the callback's `time.perf_counter`, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingRun:
    """Keeps the step metrics a callback writes (`Run.log_metric_steps`)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, float, int]] = []

    def log_metric_steps(self, entries) -> None:
        self.entries.extend(entries)

    def history(self, key: str) -> list[tuple[int, float]]:
        return [(step, value) for name, value, step in self.entries if name == key]


def test_each_logged_step_gets_its_intervals_throughput(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(callbacks.time, "perf_counter", clock)
    run = RecordingRun()
    measure = Utilisation(flops_per_token=0.1, peak_flops=100.0)
    callback = ContractMetricsCallback(run, world_size=2, flush_every=1, utilisation=measure)
    state = SimpleNamespace(global_step=0, max_steps=3, num_input_tokens_seen=0, epoch=0.0)
    control = TrainerControl()
    callback.on_train_begin(None, state, control)

    def step(seconds: float, tokens: int, save_seconds: float = 0.0) -> None:
        clock.now += seconds
        state.global_step += 1
        state.num_input_tokens_seen += tokens
        control.should_save = save_seconds > 0
        callback.on_step_end(None, state, control)
        callback.on_log(None, state, control, logs={"loss": 1.0})
        if save_seconds:  # the Trainer saves after logging the step
            clock.now += save_seconds
            callback.on_save(None, state, control)

    step(2.0, 1000, save_seconds=1.0)
    step(2.0, 600)  # its interval holds the second of checkpoint writing
    step(1.0, 500)  # the last step: the session summary's

    per_second = run.history(contract.TRAIN_TOKENS_PER_SECOND)
    assert per_second == [(1, 500.0), (2, 200.0)]
    assert run.history(contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE) == [(1, 250.0), (2, 100.0)]
    # MFU over optimisation time: 600 tokens in the 2 s besides the checkpoint.
    mfu = run.history(contract.TRAIN_MFU)
    assert mfu == [(1, pytest.approx(0.5)), (2, pytest.approx(0.3))]


def test_a_step_without_counted_tokens_logs_no_throughput(monkeypatch) -> None:
    """The demo's pretraining counts no tokens: its steps get no throughput entries."""
    clock = Clock()
    monkeypatch.setattr(callbacks.time, "perf_counter", clock)
    run = RecordingRun()
    callback = ContractMetricsCallback(run, flush_every=1)
    state = SimpleNamespace(global_step=0, max_steps=5, num_input_tokens_seen=0, epoch=0.0)
    callback.on_train_begin(None, state, TrainerControl())
    clock.now += 1.0
    state.global_step = 1
    callback.on_log(None, state, TrainerControl(), logs={"loss": 1.0})
    assert run.history(contract.TRAIN_TOKENS_PER_SECOND) == []
    assert run.history(contract.TRAIN_LOSS) == [(1, 1.0)]


def test_a_cpu_run_logs_tokens_per_device_counting_no_padding_and_no_mfu(
    demo_config, store
) -> None:
    # Grouped batches (the default) pad each to its longest sample: a count of positions would
    # be larger than the samples' tokens.
    one_epoch = ("method.epochs=1", "training.save_steps=4")
    cfg = demo_config("method=lora", "data=math_0.25m", *one_epoch)
    recipe = TrainingRecipe(cfg)
    with recipe.claim(), recipe.open_run() as run:
        recipe.build(run)
        recipe.fit()
        result = recipe.finish(run)

    tokens = int(sample_lengths(recipe.trainer.train_dataset).sum())  # one epoch: each sample
    assert recipe.callback.session["tokens"] == tokens
    assert recipe.nonpad_share < 1  # the padding the count left out
    metrics = store.get_run(result.run_id).data.metrics
    assert contract.TRAIN_MFU not in metrics and contract.TRAIN_MFU not in result.metrics
    per_device = metrics[contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE]
    assert per_device == metrics[contract.TRAIN_TOKENS_PER_SECOND] > 0  # one process
    # One entry a step: each logged step's interval, the last step the session's summary.
    steps = recipe.trainer.state.global_step
    for key in (contract.TRAIN_TOKENS_PER_SECOND, contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE):
        history = store.get_metric_history(result.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, steps + 1)), key
    assert store.get_metric_history(result.run_id, contract.TRAIN_MFU) == []


def test_table_4_shows_tokens_per_gpu_and_mfu_beside_hours(store, store_file, tmp_path) -> None:
    exp = experiment(store, "lorabench-demo", tmp_path / "artifacts")
    measured = {
        contract.TRAIN_TOKENS_PER_SECOND_PER_DEVICE: 3120.4,
        contract.TRAIN_MFU: 0.3817,
    }
    demo_run(store, exp, "lora", "2m", more_metrics=measured)
    demo_run(store, exp, "ft", "2m")  # trained on a CPU: no MFU
    runs = load_runs(f"sqlite:///{store_file}", "lorabench-demo").set_index("run_name")
    assert runs.loc["tiny+lora(2m)", "mfu"] == pytest.approx(0.3817)
    assert runs.loc["tiny+lora(2m)", "tokens_per_second_per_device"] == pytest.approx(3120.4)

    text = table4_markdown(table4(runs.reset_index()))
    assert "| Hours per epoch | Paper | Tokens/s per GPU | MFU | GPU hours |" in text
    (lora,) = [line for line in text.splitlines() if line.startswith("| `tiny+lora(2m)`")]
    assert "| 3,120 | 38.2% |" in lora
    (ft,) = [line for line in text.splitlines() if line.startswith("| `tiny+ft(2m)`")]
    assert f"| {MFU_ABSENT} |" in ft and "0.0%" not in ft


def test_runs_without_throughput_figures_leave_them_empty() -> None:
    """The paper's rows and runs logged before these metrics: an empty rate, MFU absent."""
    record = {"run_name": "llama-7b+lora(2m)", "hours_per_epoch": 7.0, "source": "paper"}
    runs = frame_from_records([{**record, "evaluated": False, "judge": None, "eval_set": None}])
    row = table4_markdown(table4(runs)).splitlines()
    (line,) = [x for x in row if x.startswith("| `llama-7b+lora(2m)`")]
    assert f"| 7 h | 7 h |  | {MFU_ABSENT} |" in line  # ours, the paper's, no rate
