"""HF TrainingArguments from the typed config, and the figures a run reports about itself."""

from __future__ import annotations

import resource

import torch
from transformers import TrainingArguments

from lorabench.config.schema import Config
from lorabench.data import trainer_arguments


def save_steps(cfg: Config) -> int | float:
    """`training.save_steps`, or a ratio of the run's total steps that saves
    `training.saves_per_epoch` times an epoch (transformers reads a float below 1 as a ratio)."""
    if cfg.training.save_steps is not None:
        return cfg.training.save_steps
    return 1 / (cfg.training.saves_per_epoch * cfg.method.epochs)


def training_arguments(cfg: Config) -> TrainingArguments:
    """HF TrainingArguments from the typed config (create before the model: ZeRO-3 needs it)."""
    method, hw, training = cfg.method, cfg.hardware, cfg.training
    deepspeed = cfg.deepspeed_config_path()
    return TrainingArguments(
        output_dir=training.output_dir,
        per_device_train_batch_size=hw.micro_batch_size,
        per_device_eval_batch_size=hw.micro_batch_size,
        prediction_loss_only=True,  # the dev split's loss alone: no logits kept
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
        save_steps=save_steps(cfg),
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
        use_liger_kernel=training.liger_kernel,
        **trainer_arguments(cfg.data.batching),
    )


def peak_memory_gb(device: str) -> float:
    """Peak accelerator memory allocated, or the process's peak RSS on CPU, in GB."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB
