"""Training throughput: train.py's path against a bare HF Trainer + PEFT loop.

    .venv/bin/python bench/train_throughput.py [--method lora|ft] [--steps 80] [--repeats 7]
        [--threads 1] [--untracked] [--smoke]

Both sides train the demo's tiny base (`profile=demo`; the same pretrained weights, made in the
temporary directory first, about 1.5 min and untimed, unless LORABENCH_PRETRAINED_DIR holds
them) on the same tokenised demo data with the same hyper-parameters, one process on the CPU:

* project: `lorabench.training.train(cfg)`, i.e. everything train.py does after composing the
  config (MLflow run and per-step metric logging, checkpoints, the adapter / model save).
  Its figure is the project's own `train/tokens_per_second` metric.
* baseline: `transformers.Trainer` on `peft.get_peft_model(...)` (or the bare model for `ft`),
  the same TrainingArguments values but no saving and no tracking.

Both are timed the same way: non-padding input tokens seen (`include_num_input_tokens_seen`)
divided by the seconds from the Trainer's `on_train_begin` to its `on_train_end` (any
checkpoint the project saves inside that window counts against it). After one short
warm-up of each side, the repetitions rotate which side goes first, and each side's figure is
the median of its repetitions. Both sides use the same number of torch threads, one by default:
with a thread per core, the tiny model's many short parallel regions stall whenever another
process takes a core (10-50x slower on a busy machine), while one thread degrades gracefully;
`--threads 0` keeps torch's default. Everything is written to a temporary directory that is
removed at the end.

Prints `name=value` lines: the settings (`model=`, `method=`, `data=`, `steps=`, `repeats=`,
`threads=`), each run's figures, and `project_tokens_per_second=`,
`baseline_tokens_per_second=` and `ratio=` (project / baseline medians; the target is >= 0.95),
plus `best_ratio=` (fastest run of each side). `--untracked` adds a third side, train.py's path
with `tracking.enabled=false`, and its `untracked_ratio=`: what MLflow costs. The training runs'
own output goes to stderr. About 2-4 minutes with the defaults on a 2-core CPU; `--smoke` runs
it in seconds on tiny sizes (the same lines).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import transformers
from benchutil import parse_with_smoke
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainerCallback, TrainingArguments

from lorabench.config import Config, compose, validate
from lorabench.data import build_train_dataset, make_collator, trainer_arguments
from lorabench.demo.pretraining import resolved_model
from lorabench.methods import method_for
from lorabench.modeling.base import DTYPES, build_model, build_tokenizer
from lorabench.training import train, training_arguments

NO_PERIODIC_SAVE = 1_000_000
"""`training.save_steps` past any run's end: periodic checkpoints stay out of the measurement
(a checkpoint the project saves by design still counts)."""

WARMUP_STEPS = 3
"""Optimiser steps of each side's warm-up run (builds caches, the MLflow store, kernels)."""

SAVING_ARGUMENTS = ("output_dir", "logging_dir", "save_strategy", "save_steps", "save_total_limit")
"""The only TrainingArguments the baseline may set otherwise than the project: it saves nothing."""

SMOKE = {"steps": 2, "repeats": 1}

Side = Callable[[int, str], float]
"""One contender: (optimiser steps, run name) → tokens per second."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("lora", "ft"), default="lora")
    parser.add_argument("--steps", type=int, default=80, help="optimiser steps per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs of each side")
    parser.add_argument("--data", default="2m", help="data scale (demo corpus at 1/1000)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both sides; 0: torch's default, one per core (default: 1, which "
        "holds up far better when other processes compete for the cores)",
    )
    parser.add_argument(
        "--untracked",
        action="store_true",
        help="also run train.py's path with tracking.enabled=false (isolates MLflow's cost)",
    )
    args = parse_with_smoke(parser, argv, SMOKE)
    if args.steps < 1 or args.repeats < 1 or args.threads < 0:
        parser.error("--steps and --repeats must be >= 1, --threads >= 0")
    return args


def compose_config(method: str, data: str, steps: int, workdir: Path, *extra: str) -> Config:
    """The demo config as train.py would compose it, with every output under `workdir`.

    Composed once per side, so that config files edited during the benchmark cannot change it.
    """
    overrides = [
        "profile=demo",
        f"method={method}",
        f"data={data}",
        f"training.max_steps={steps}",
        f"training.output_dir={workdir / 'unused'}",
        f"training.save_steps={NO_PERIODIC_SAVE}",
        "training.progress_bar=false",
        f"tracking.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
        f"tracking.artifact_location={workdir / 'artifacts'}",
        f"cache_dir={workdir / 'cache'}",
        *extra,
    ]
    return validate(compose(overrides))


def for_run(base: Config, steps: int, output_dir: Path) -> Config:
    """A copy of `base` that trains `steps` steps into a fresh `output_dir` (nothing to resume)."""
    cfg = copy.deepcopy(base)
    cfg.training.max_steps = steps
    cfg.training.output_dir = str(output_dir)
    return cfg


class ThroughputTimer(TrainerCallback):
    """Non-padding input tokens and seconds from `on_train_begin` to `on_train_end`."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self._start
        self.tokens = state.num_input_tokens_seen - self._tokens0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


@dataclass
class Baseline:
    """What the bare loop shares across repetitions: config, tokenizer and tokenised data."""

    cfg: Config
    tokenizer: transformers.PreTrainedTokenizerBase
    dataset: datasets.Dataset


def prepare_baseline(cfg: Config) -> Baseline:
    """Tokenizer and data exactly as the project builds them (not timed)."""
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    dataset = build_train_dataset(cfg.data, tokenizer, cfg.method.max_length)
    return Baseline(cfg, tokenizer, dataset)


def baseline_arguments(cfg: Config) -> TrainingArguments:
    """The project's training hyper-parameters, written out for a plain Trainer, no saving.

    No activation checkpointing: the demo hardware has none (`check_same_arguments` would say
    if that changed).
    """
    method, hw, training = cfg.method, cfg.hardware, cfg.training
    per_step = hw.micro_batch_size * hw.world_size
    return TrainingArguments(
        output_dir=training.output_dir,
        per_device_train_batch_size=hw.micro_batch_size,
        per_device_eval_batch_size=hw.micro_batch_size,
        prediction_loss_only=True,
        gradient_accumulation_steps=method.global_batch_size // per_step,
        num_train_epochs=method.epochs,
        max_steps=training.max_steps,
        learning_rate=method.learning_rate,
        lr_scheduler_type=method.lr_scheduler,
        warmup_steps=method.warmup_ratio or method.warmup_steps,
        weight_decay=method.weight_decay,
        max_grad_norm=method.max_grad_norm,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        logging_steps=training.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        seed=training.seed,
        data_seed=training.seed,
        report_to="none",
        dataloader_num_workers=hw.dataloader_num_workers,
        use_cpu=hw.device == "cpu",
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not training.progress_bar,
        # The same batching (length-grouped sampling by default) as the project's data path.
        **trainer_arguments(cfg.data.batching),
    )


def check_same_arguments(cfg: Config) -> None:
    """Stop if the baseline's TrainingArguments differ from the project's beyond saving."""
    ours, theirs = baseline_arguments(cfg).to_dict(), training_arguments(cfg).to_dict()
    diff = {
        name: (ours.get(name), theirs.get(name))
        for name in ours.keys() | theirs.keys()
        if name not in SAVING_ARGUMENTS and ours.get(name) != theirs.get(name)
    }
    if diff:
        raise SystemExit(f"baseline TrainingArguments (ours, project's) differ: {diff}")


def baseline_model(cfg: Config, tokenizer) -> torch.nn.Module:
    """The same pretrained tiny base, wrapped in the same seeded LoRA adapters (or fully
    trainable)."""
    method = method_for(cfg.method)
    dtype = method.load_dtype(DTYPES[cfg.precision], cfg.hardware.deepspeed is not None)
    model = build_model(resolved_model(cfg), tokenizer, dtype=dtype, seed=cfg.training.seed)
    lora = cfg.method.lora
    if lora is None:
        return model
    torch.manual_seed(cfg.training.seed)
    return get_peft_model(
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(method.target_modules(model)),
            bias=lora.bias,
        ),
    )


def run_baseline(base: Baseline) -> float:
    """Train with a bare Trainer; tokens per second over on_train_begin → on_train_end."""
    timer = ThroughputTimer()
    trainer = Trainer(
        model=baseline_model(base.cfg, base.tokenizer),
        args=baseline_arguments(base.cfg),
        train_dataset=base.dataset,
        data_collator=make_collator(
            base.cfg.data.batching, base.tokenizer, base.cfg.method.max_length
        ),
        processing_class=base.tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    return timer.tokens_per_second


def run_project(cfg: Config) -> float:
    """train.py's training path; its own `train/tokens_per_second` metric."""
    return train(cfg).metrics["train/tokens_per_second"]


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    """Call `fn` with its output sent to stderr; (its tokens/s, its wall seconds)."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        value = fn()
    return value, time.perf_counter() - start


def quiet_libraries() -> None:
    """Keep progress bars and info logs out of the measurement and the output."""
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def make_sides(args: argparse.Namespace, project: Config, workdir: Path) -> dict[str, Side]:
    """The contenders by name: each trains `steps` steps into output `run`, returns tokens/s."""
    check_same_arguments(project)

    def side(base: Config, run_fn: Callable[[Config], float]) -> Side:
        return lambda steps, run: run_fn(for_run(base, steps, workdir / run))

    sides = {
        "project": side(project, run_project),
        "baseline": side(project, lambda cfg: run_baseline(prepare_baseline(cfg))),
    }
    if args.untracked:
        untracked = compose_config(
            args.method, args.data, args.steps, workdir, "tracking.enabled=false"
        )
        sides["project_untracked"] = side(untracked, run_project)
    return sides


def benchmark(args: argparse.Namespace, project: Config, workdir: Path) -> dict[str, list[float]]:
    """Warm up every side, then run them in rotating order; per-repetition tokens/s of each."""
    sides = make_sides(args, project, workdir)
    for name, side in sides.items():
        timed(lambda side=side, name=name: side(WARMUP_STEPS, f"warmup-{name}"))

    names = list(sides)
    results: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.repeats):
        shift = rep % len(names)  # who goes first rotates, so drift hits every side alike
        for name in names[shift:] + names[:shift]:
            run = f"{name}-{rep}"
            tps, wall = timed(lambda run=run, name=name: sides[name](args.steps, run))
            results[name].append(tps)
            print(f"{name}_run{rep}_tokens_per_second={tps:.1f}", flush=True)
            print(f"{name}_run{rep}_wall_seconds={wall:.1f}", flush=True)
    return results


def report(results: dict[str, list[float]]) -> None:
    """Medians of each side, and each ratio to the baseline (median and best-of-runs)."""
    baseline = results["baseline"]
    for name, values in results.items():
        print(f"{name}_tokens_per_second={statistics.median(values):.1f}")
    for name, values in results.items():
        if name == "baseline":
            continue
        prefix = "" if name == "project" else f"{name.removeprefix('project_')}_"
        print(f"{prefix}ratio={statistics.median(values) / statistics.median(baseline):.3f}")
        print(f"{prefix}best_ratio={max(values) / max(baseline):.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="lorabench-throughput-"))
    try:
        project = compose_config(args.method, args.data, args.steps, workdir)
        print(f"model={project.model.name}")
        print(f"method={project.method.name}")
        print(f"data={project.data.name}")
        print(f"steps={args.steps}")
        print(f"repeats={args.repeats}")
        print(f"threads={torch.get_num_threads()}", flush=True)
        results = benchmark(args, project, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
