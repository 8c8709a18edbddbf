"""Training one grid point with the HF Trainer, tracked in MLflow.

Data flow: config → tokenizer → data → model + method → Trainer (DeepSpeed when configured) →
adapter or checkpoint → metrics. Only rank 0 talks to MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import OmegaConf
from transformers import (
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from lorabench.chaining import resolve_base_model
from lorabench.config.schema import Config
from lorabench.data import (
    configured_nonpad_share,
    make_collator,
    prepare_train_data,
    trainer_arguments,
)
from lorabench.launching import DistEnv
from lorabench.modeling import (
    DTYPES,
    ParameterCounts,
    apply_method,
    build_model,
    build_tokenizer,
    count_parameters,
)
from lorabench.tracking import (
    RESOLVED_CONFIG_ARTIFACT,
    Run,
    config_hash,
    git_commit,
    tracked_run,
    training_params,
)

log = logging.getLogger(__name__)

COMPLETE_MARKER = "training_complete.json"
"""Written into the output directory when training has finished and the model is saved."""

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
        activation_checkpointing=hw.activation_checkpointing,
        dataloader_num_workers=hw.dataloader_num_workers,
        use_cpu=hw.device == "cpu",
        ddp_backend="gloo" if hw.device == "cpu" and hw.world_size > 1 else None,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not training.progress_bar,
        **trainer_arguments(cfg.data.batching),
    )


def peak_memory_gb(device: str) -> float:
    """Peak accelerator memory allocated, or the process's peak RSS on CPU, in GB."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB


class ContractMetricsCallback(TrainerCallback):
    """Logs per-step metrics under the contract's names and measures this session's throughput.

    Step metrics are buffered and written in batches: one synchronous MLflow write per step
    cost a third of a tiny model's step time. The buffer is flushed every `flush_every` logged
    steps, at each checkpoint (so a resumed run's history matches its checkpoint), and when
    training ends or fails.
    """

    def __init__(self, run: Run | None, flush_every: int = 50) -> None:
        self.run = run
        self.flush_every = flush_every
        self.session: dict[str, float] = {}
        self._pending: list[tuple[str, float, int]] = []
        self._pending_steps = 0

    def flush(self) -> None:
        """Write the buffered step metrics."""
        if self.run is not None and self._pending:
            self.run.log_metric_steps(self._pending)
        self._pending, self._pending_steps = [], 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen
        self._epoch0 = state.epoch or 0.0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return
        metrics = [
            (STEP_METRICS[k], v, state.global_step) for k, v in logs.items() if k in STEP_METRICS
        ]
        if metrics:
            self._pending.extend(metrics)
            self._pending_steps += 1
            if self._pending_steps >= self.flush_every:
                self.flush()

    def on_save(self, args, state, control, **kwargs):
        self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()  # inside the timed span: its cost counts against throughput
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


def completed_result(output_dir: Path) -> TrainResult | None:
    """The result recorded by a finished training in `output_dir`, if there is one."""
    marker = output_dir / COMPLETE_MARKER
    if not marker.is_file():
        return None
    record = json.loads(marker.read_text())
    return TrainResult(
        run_id=record["run_id"],
        output_dir=output_dir,
        model_path=Path(record["model_path"]),
        counts=ParameterCounts(**record["counts"]),
        metrics=record["metrics"],
    )


def _record_completion(result: TrainResult) -> None:
    record = {
        "run_id": result.run_id,
        "model_path": str(result.model_path),
        "counts": asdict(result.counts),
        "metrics": result.metrics,
    }
    (result.output_dir / COMPLETE_MARKER).write_text(json.dumps(record, indent=2))


def train(cfg: Config, env: DistEnv | None = None) -> TrainResult:
    """Train one grid point; log it to MLflow as one run (rank 0 only) and save the result.

    With `training.resume` (the default) a finished output directory is not trained again, and
    an unfinished one continues from its last checkpoint into the same MLflow run.
    """
    env = env or DistEnv.from_environ()
    output_dir = Path(cfg.training.output_dir)
    if cfg.training.resume and (done := completed_result(output_dir)) is not None:
        log.info("%s already finished training; nothing to do", output_dir)
        return done
    if cfg.hardware.deepspeed is not None and cfg.hardware.device == "cpu":
        # DeepSpeed picks its accelerator once, by probing the machine: a CPU config run on a box
        # with a CUDA build of torch would get the CUDA one while the Trainer keeps the model on
        # the CPU. Nothing has asked DeepSpeed yet at this point (the Trainer does).
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    resolved = OmegaConf.structured(cfg)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    tags = {
        "config_hash": config_hash(resolved),
        "git_commit": git_commit(),
        "profile": cfg.profile,
    }
    if cfg.tracking.parent_run_id is not None:
        tags[MLFLOW_PARENT_RUN_ID] = cfg.tracking.parent_run_id
    model_cfg = cfg.model
    if cfg.base_run is not None:
        # Before the run opens: a base run that is missing or unfinished is an input error.
        base_run_id, base_model = resolve_base_model(cfg)
        model_cfg = replace(cfg.model, pretrained=str(base_model))
        tags["base_run_id"] = base_run_id

    tracking = (
        tracked_run(
            cfg.tracking,
            cfg.run_name,
            output_dir,
            resume=cfg.training.resume,
            params=training_params(resolved),
            tags=tags,
        )
        if env.is_main and cfg.tracking.enabled
        else contextlib.nullcontext(None)
    )
    with tracking as run:
        if run is not None:
            run.log_text(OmegaConf.to_yaml(resolved, resolve=True), RESOLVED_CONFIG_ARTIFACT)
        args = training_arguments(cfg)
        tokenizer = build_tokenizer(model_cfg, cfg.cache_dir)
        with args.main_process_first(desc="training data"):  # rank 0 prepares, others load
            prepared = prepare_train_data(
                cfg.data, tokenizer, cfg.method.max_length, Path(cfg.cache_dir)
            )
        if run is not None:
            run.log_metrics(
                {
                    **prepared.report.metrics(),
                    "data/nonpad_share": configured_nonpad_share(cfg, prepared.dataset),
                }
            )
        model = build_model(model_cfg, tokenizer, dtype=load_dtype(cfg), seed=cfg.training.seed)
        if cfg.hardware.activation_checkpointing and cfg.method.lora is not None:
            model.enable_input_require_grads()  # frozen embeddings would cut the graph
        model = apply_method(model, cfg.method)
        counts = count_parameters(model)
        log.info("parameters: %s", counts)

        callback = ContractMetricsCallback(run)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=prepared.dataset,
            data_collator=make_collator(cfg.data.batching, tokenizer, cfg.method.max_length),
            processing_class=tokenizer,
            callbacks=[callback],
        )
        previous_gpu_hours = 0.0
        if run is not None:
            previous_gpu_hours = max(run.metric_history("train/gpu_hours"), default=0.0)
        try:
            trainer.train(resume_from_checkpoint=_resume_checkpoint(cfg))
        finally:
            callback.flush()  # what was logged before a failure or interrupt is kept

        model_path = output_dir / ("adapter" if cfg.method.lora is not None else "model")
        trainer.save_model(str(model_path))  # every rank: ZeRO-3 gathers the weights
        metrics = _summary_metrics(callback.session, counts, cfg, previous_gpu_hours)
        result = TrainResult(
            run_id=run.run_id if run is not None else None,
            output_dir=output_dir,
            model_path=model_path,
            counts=counts,
            metrics=metrics,
        )
        if run is not None:
            tokenizer.save_pretrained(str(model_path))
            run.log_metrics(metrics, step=trainer.state.global_step)
            run.set_tags({"model_path": str(model_path.resolve())})
            if cfg.method.lora is not None:
                run.log_artifacts(model_path, "adapter")
        if env.is_main:
            _record_completion(result)
    return result
