"""Training one grid point with the HF Trainer, tracked in MLflow.

Data flow: config → tokenizer → data → model + method → Trainer (DeepSpeed when configured) →
adapter or checkpoint → metrics. Only rank 0 talks to MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import (
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from lorabench.config.schema import Config
from lorabench.data import build_train_dataset
from lorabench.launching import DistEnv
from lorabench.modeling import (
    DTYPES,
    ParameterCounts,
    apply_method,
    build_model,
    build_tokenizer,
    count_parameters,
)
from lorabench.prompts import IGNORE_INDEX
from lorabench.tracking import (
    RESOLVED_CONFIG_ARTIFACT,
    Run,
    config_hash,
    flatten,
    git_commit,
    tracked_run,
)

log = logging.getLogger(__name__)

# Trainer log keys → the MLflow contract's per-step metric names.
STEP_METRICS = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
}


@dataclass
class TrainResult:
    """What a finished training call reports (also logged to MLflow)."""

    run_id: str | None
    output_dir: Path
    model_path: Path
    counts: ParameterCounts
    metrics: dict[str, float] = field(default_factory=dict)


def load_dtype(cfg: Config) -> torch.dtype:
    """Weights' dtype at load time.

    A frozen LoRA base can sit in half precision. Full fine-tuning under plain AMP needs fp32
    master weights; DeepSpeed keeps its own fp32 copy, so there the half dtype saves host memory
    (8 ranks × 27 GB of fp32 LLaMA-7B would not fit most nodes).
    """
    dtype = DTYPES[cfg.precision]
    if cfg.method.lora is not None or cfg.hardware.deepspeed is not None:
        return dtype
    return torch.float32


def training_arguments(cfg: Config) -> TrainingArguments:
    """HF TrainingArguments from the typed config (create before the model: ZeRO-3 needs it)."""
    method, hw, training = cfg.method, cfg.hardware, cfg.training
    deepspeed = cfg.deepspeed_config_path()
    return TrainingArguments(
        output_dir=training.output_dir,
        per_device_train_batch_size=hw.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps(),
        num_train_epochs=method.epochs,
        max_steps=training.max_steps,
        learning_rate=method.learning_rate,
        lr_scheduler_type=method.lr_scheduler,
        # transformers reads a float in [0, 1) as a ratio of the total steps.
        warmup_steps=method.warmup_ratio or method.warmup_steps,
        weight_decay=method.weight_decay,
        max_grad_norm=method.max_grad_norm,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        logging_steps=training.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        seed=training.seed,
        data_seed=training.seed,
        report_to="none",
        deepspeed=str(deepspeed) if deepspeed else None,
        gradient_checkpointing=hw.gradient_checkpointing,
        dataloader_num_workers=hw.dataloader_num_workers,
        use_cpu=hw.device == "cpu",
        ddp_backend="gloo" if hw.device == "cpu" and hw.world_size > 1 else None,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not training.progress_bar,
    )


def peak_memory_gb(device: str) -> float:
    """Peak accelerator memory allocated, or the process's peak RSS on CPU, in GB."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB


class ContractMetricsCallback(TrainerCallback):
    """Logs per-step metrics under the contract's names and measures this session's throughput.

    It also saves a checkpoint at the last step, so that re-running a finished run resumes at
    its end instead of retraining the tail.
    """

    def __init__(self, run: Run | None) -> None:
        self.run = run
        self.session: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen
        self._epoch0 = state.epoch or 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return
        metrics = {STEP_METRICS[k]: v for k, v in logs.items() if k in STEP_METRICS}
        if metrics:
            self.run.log_metrics(metrics, step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.session = {
            "seconds": time.perf_counter() - self._start,
            "tokens": float(state.num_input_tokens_seen - self._tokens0),
            "epochs": (state.epoch or 0.0) - self._epoch0,
        }


def _resume_checkpoint(cfg: Config) -> str | None:
    out = Path(cfg.training.output_dir)
    if not (cfg.training.resume and out.is_dir()):
        return None
    return get_last_checkpoint(str(out))


def _summary_metrics(
    session: dict[str, float], counts: ParameterCounts, cfg: Config, previous_gpu_hours: float
) -> dict[str, float]:
    metrics = {
        "model/additional_params": counts.additional,
        "model/trainable_params": counts.trainable,
        "model/total_params": counts.total,
        "system/peak_memory_gb": peak_memory_gb(cfg.hardware.device),
    }
    if session.get("epochs", 0) > 0 and session["seconds"] > 0:
        hours = session["seconds"] / 3600
        metrics.update(
            {
                "train/tokens_per_second": session["tokens"] / session["seconds"],
                "train/hours_per_epoch": hours / session["epochs"],
                "train/gpu_hours": previous_gpu_hours + hours * cfg.hardware.world_size,
            }
        )
    return metrics


def _terminate_as_interrupt(signum, frame):
    # torchrun sends SIGTERM to every rank when one fails; turning it into KeyboardInterrupt lets
    # the tracked run close as KILLED instead of staying RUNNING.
    raise KeyboardInterrupt(f"signal {signum}")


def dry_run(cfg: Config) -> ParameterCounts:
    """Build the model on the meta device (no weights, no download) and count its parameters."""
    model = apply_method(
        build_model(cfg.model, None, dtype=DTYPES[cfg.precision], meta=True), cfg.method
    )
    return count_parameters(model)


def train(cfg: Config, env: DistEnv | None = None) -> TrainResult:
    """Train one grid point; log it to MLflow as one run (rank 0 only) and save the result."""
    env = env or DistEnv.from_environ()
    output_dir = Path(cfg.training.output_dir)
    resolved = OmegaConf.structured(cfg)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)

    tracking = (
        tracked_run(
            cfg.tracking,
            cfg.run_name,
            output_dir,
            resume=cfg.training.resume,
            tags={
                "config_hash": config_hash(resolved),
                "git_commit": git_commit(),
                "profile": cfg.profile,
            },
        )
        if env.is_main and cfg.tracking.enabled
        else contextlib.nullcontext(None)
    )
    with tracking as run:
        if run is not None:
            run.log_params(flatten(OmegaConf.to_container(resolved, resolve=True)))
            run.log_text(OmegaConf.to_yaml(resolved, resolve=True), RESOLVED_CONFIG_ARTIFACT)
        args = training_arguments(cfg)
        tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
        dataset = build_train_dataset(cfg.data, tokenizer, cfg.method.max_length)
        model = build_model(cfg.model, tokenizer, dtype=load_dtype(cfg), seed=cfg.training.seed)
        if cfg.hardware.gradient_checkpointing and cfg.method.lora is not None:
            model.enable_input_require_grads()  # frozen embeddings would cut the graph
        model = apply_method(model, cfg.method)
        counts = count_parameters(model)
        log.info("parameters: %s", counts)

        callback = ContractMetricsCallback(run)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorForSeq2Seq(
                tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX
            ),
            processing_class=tokenizer,
            callbacks=[callback],
        )
        previous_gpu_hours = 0.0
        if run is not None:
            previous_gpu_hours = max(run.metric_history("train/gpu_hours"), default=0.0)
        trainer.train(resume_from_checkpoint=_resume_checkpoint(cfg))

        model_path = output_dir / ("adapter" if cfg.method.lora is not None else "model")
        trainer.save_model(str(model_path))  # every rank: ZeRO-3 gathers the weights
        metrics = _summary_metrics(callback.session, counts, cfg, previous_gpu_hours)
        if run is not None:
            tokenizer.save_pretrained(str(model_path))
            run.log_metrics(metrics, step=trainer.state.global_step)
            run.set_tags({"model_path": str(model_path.resolve())})
            if cfg.method.lora is not None:
                run.log_artifacts(model_path, "adapter")
    return TrainResult(
        run_id=run.run_id if run is not None else None,
        output_dir=output_dir,
        model_path=model_path,
        counts=counts,
        metrics=metrics,
    )
