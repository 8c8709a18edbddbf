"""Pretraining one demo base with the HF Trainer: a causal LM from random weights on the demo
world's plain text, with its perplexity on held-out world text measured before and after, tracked
as an MLflow run of its own (`run_kind=pretraining`: not a row of the study's tables)."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from lorabench import contract
from lorabench.config.schema import Config
from lorabench.demo.pretraining.cache import Record, files_of
from lorabench.demo.pretraining.corpus import token_blocks
from lorabench.demo.world import world_documents
from lorabench.identity import flatten, model_run_name
from lorabench.modeling.base import build_model
from lorabench.tracking.runs import Run, git_commit, tracked_run
from lorabench.training.callbacks import ContractMetricsCallback, use_stage_progress

TRAINER_DIR = "trainer"
"""Inside the staging directory: the Trainer's scratch output, removed before publishing."""


def _arguments(cfg: Config, output_dir: Path) -> TrainingArguments:
    p = cfg.model.pretrain
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size,
        num_train_epochs=p.epochs,
        learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler,
        # transformers reads a float in (0, 1) as a ratio of the total steps.
        warmup_steps=p.warmup_ratio or 0,
        weight_decay=p.weight_decay,
        logging_steps=cfg.training.logging_steps,
        logging_first_step=True,
        # A pretraining takes minutes and an interrupted one is rebuilt: checkpoints would cost
        # more than they save.
        save_strategy="no",
        report_to="none",
        seed=p.seed,
        data_seed=p.seed,
        use_cpu=cfg.hardware.device == "cpu",
        disable_tqdm=True,  # its one bar is `StageProgress`
    )


def _tracking(
    cfg: Config, key: str, staging: Path
) -> contextlib.AbstractContextManager[Run | None]:
    if not cfg.tracking.enabled:
        return contextlib.nullcontext(None)
    model = cfg.model
    return tracked_run(
        cfg.tracking,
        model_run_name(cfg.run_name, model.name, contract.RUN_KIND_PRETRAINING),
        staging,
        resume=False,
        params=flatten({"model": asdict(model)}),
        tags={
            contract.TAG_RUN_KIND: contract.RUN_KIND_PRETRAINING,
            contract.TAG_PRETRAIN_KEY: key,
            contract.TAG_PROFILE: cfg.profile,
            contract.TAG_GIT_COMMIT: git_commit(),
        },
    )


def pretrain_into(
    cfg: Config,
    tokenizer: PreTrainedTokenizerBase,
    key: str,
    values: dict,
    staging: Path,
    entry: Path,
) -> Record:
    """Pretrain `cfg.model` into `staging` (model, tokenizer, record); `entry` is where it
    will be published (tagged as the run's model path)."""
    model_cfg = cfg.model
    p = model_cfg.pretrain
    train, heldout = (
        token_blocks(world_documents(n, split=split, seed=p.corpus_seed), tokenizer, p.block_size)
        for n, split in ((p.documents, "train"), (p.heldout_documents, "heldout"))
    )
    # The architecture's random initialisation, seeded: the starting point of the pretraining.
    model = build_model(replace(model_cfg, pretrain=None), tokenizer, seed=p.seed)
    with _tracking(cfg, key, staging) as run:
        metrics_callback = ContractMetricsCallback(run)
        trainer = Trainer(
            model=model,
            args=_arguments(cfg, staging / TRAINER_DIR),
            train_dataset=train,
            eval_dataset=heldout,
            data_collator=default_data_collator,
            processing_class=tokenizer,
            callbacks=[metrics_callback],
        )
        use_stage_progress(trainer, f"{model_cfg.name} pretraining", cfg.training.progress_bar)
        initial = trainer.evaluate()["eval_loss"]
        start = time.perf_counter()
        try:
            trainer.train()
        finally:
            metrics_callback.flush()
        seconds = time.perf_counter() - start
        final = trainer.evaluate()["eval_loss"]
        trainer.save_model(str(staging))
        _remove_trainer_files(staging)
        metrics = _metrics(initial, final, len(train) * p.block_size, p.epochs, seconds, model)
        record = Record(
            key=key,
            material=values,
            files=files_of(staging),
            metrics=metrics,
            run_id=run.run_id if run is not None else None,
            tracking_uri=cfg.tracking.tracking_uri if run is not None else None,
        )
        if run is not None:
            run.log_metrics(metrics, step=trainer.state.global_step)
            run.set_tags({contract.TAG_MODEL_PATH: str(entry.resolve())})
    return record


def _metrics(
    initial: float, final: float, tokens: int, epochs: float, seconds: float, model: PreTrainedModel
) -> dict[str, float]:
    """The pretraining run's metrics: held-out loss and perplexity before and after, its
    tokens, time and throughput, and the model's size."""
    return {
        contract.PRETRAIN_HELDOUT_LOSS: final,
        contract.PRETRAIN_HELDOUT_PERPLEXITY: math.exp(final),
        contract.PRETRAIN_INITIAL_HELDOUT_PERPLEXITY: math.exp(initial),
        contract.PRETRAIN_TRAIN_TOKENS: tokens,
        contract.PRETRAIN_SECONDS: seconds,
        contract.TRAIN_TOKENS_PER_SECOND: tokens * epochs / seconds,
        contract.MODEL_TOTAL_PARAMS: sum(t.numel() for t in model.parameters()),
    }


def _remove_trainer_files(staging: Path) -> None:
    """Leave only the model and tokenizer: the Trainer's scratch and its arguments file hold
    nothing a user of the base needs (the record holds the config)."""
    shutil.rmtree(staging / TRAINER_DIR, ignore_errors=True)
    (staging / "training_args.bin").unlink(missing_ok=True)
