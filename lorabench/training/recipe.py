"""Training one grid point with the HF Trainer, tracked in MLflow, in four phases a reader can
follow: open the run, build, fit, finish.

    recipe = TrainingRecipe(cfg)
    with recipe.open_run() as run:   # identity checked, effective base resolved, run (re)opened
        recipe.build(run)            # tokenizer, prepared data, model + method, Trainer
        recipe.fit()                 # from the last checkpoint when resuming
        result = recipe.finish(run)  # saved model, summary metrics, completion record

Only rank 0 talks to MLflow. Process-wide state (signal handlers, environment variables) is the
entry point's (`lorabench.launching.topology.training_process`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from mlflow.exceptions import MlflowException
from omegaconf import OmegaConf
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from lorabench import contract
from lorabench.config.schema import Config
from lorabench.data import configured_nonpad_share, make_collator, prepare_train_data, split_dev
from lorabench.identity import (
    BASE_WEIGHTS_KEY,
    check_output_dir,
    digest,
    record_identity,
    recorded_identity,
)
from lorabench.launching.topology import DistEnv
from lorabench.locking import directory_lock
from lorabench.methods import method_for
from lorabench.modeling.base import (
    DTYPES,
    ParameterCounts,
    build_model,
    build_tokenizer,
    count_parameters,
)
from lorabench.modeling.trained import (
    RECORD_WEIGHTS,
    base_retrained,
    base_run_of,
    effective_base,
    training_identity,
    weights_digest,
)
from lorabench.planning.timing import utilisation
from lorabench.tracking.runs import Run, client_for, git_commit, tracked_run, training_params
from lorabench.training.arguments import peak_memory_gb, training_arguments
from lorabench.training.callbacks import (
    THROUGHPUT_METRICS,
    ContractMetricsCallback,
    TrackingLost,
    recorded_gpu_hours,
    throughput_metrics,
    use_stage_progress,
)
from lorabench.training.completion import (
    close_finished,
    read_record,
    recorded_runs,
    run_in_store,
    write_record,
)
from lorabench.training.inputs import training_input
from lorabench.training.trainer import LengthListTrainer

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished training call reports (also logged to MLflow)."""

    run_id: str | None
    output_dir: Path
    model_path: Path
    counts: ParameterCounts
    metrics: dict[str, float] = field(default_factory=dict)


def meta_model(cfg: Config, *, offline: bool = False) -> torch.nn.Module:
    """The model a run trains, its method applied, on the meta device (no weights, no download
    of them; `offline`: nor of its config)."""
    method = method_for(cfg.method)
    model = build_model(cfg.model, None, dtype=DTYPES[cfg.precision], meta=True, offline=offline)
    method.check(model)
    # No expensive initialisation (PiSSA's SVD): the shapes are those of the real run.
    return method.wrap(model, initialise=False)


def dry_run(cfg: Config) -> ParameterCounts:
    """Build the model on the meta device (no weights, no download), check that the method
    applies to it, and count its parameters."""
    return count_parameters(meta_model(cfg), method_for(cfg.method))


def completed_result(output_dir: Path, config_hash: str | None = None) -> TrainResult | None:
    """The result recorded by a finished training in `output_dir`, if there is one (checked to
    be of `config_hash` when given)."""
    marker = output_dir / contract.COMPLETE_MARKER
    if not marker.is_file():
        return None
    if config_hash is None:
        record = json.loads(marker.read_text())
    else:
        record = read_record(output_dir, config_hash)
    return TrainResult(
        run_id=record["run_id"],
        output_dir=output_dir,
        model_path=Path(record["model_path"]),
        counts=ParameterCounts(**record["counts"]),
        metrics=record["metrics"],
    )


TRAINER_STATE = "trainer_state.json"
"""Written last into a checkpoint by the Trainer: a checkpoint without it was cut short."""


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that was written to the end (a process killed while saving leaves
    a directory without the Trainer's state, which cannot be resumed from)."""
    found = []
    for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.rpartition("-")[2]
        if step.isdigit() and path.is_dir():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        if (path / TRAINER_STATE).is_file():
            return path
        log.warning(
            "%s was not written to the end (no %s); not resuming from it", path, TRAINER_STATE
        )
    return None


def _summary_metrics(
    session: dict[str, float], counts: ParameterCounts, cfg: Config, nonpad_share: float = 1.0
) -> dict[str, float]:
    """The session's summary: parameter counts, peak memory, final loss, and (when it trained)
    throughput, MFU (GPU hardware of a known type only), hours per epoch and GPU hours;
    `nonpad_share`: the share of the positions its batches compute that are real tokens."""
    metrics = {
        contract.MODEL_ADDITIONAL_PARAMS: counts.additional,
        contract.MODEL_TRAINABLE_PARAMS: counts.trainable,
        contract.MODEL_TOTAL_PARAMS: counts.total,
        contract.SYSTEM_PEAK_MEMORY_GB: peak_memory_gb(cfg.hardware.device),
    }
    if "final_loss" in session:
        metrics[contract.TRAIN_FINAL_LOSS] = session["final_loss"]
    if session.get("epochs", 0) > 0 and session["seconds"] > 0:
        training_seconds = session["seconds"] - session["checkpoint_seconds"]
        measure = utilisation(cfg, counts.total, nonpad_share)
        world = cfg.hardware.world_size
        metrics.update(
            throughput_metrics(
                session["tokens"], session["seconds"], training_seconds, world, measure
            )
        )
        metrics.update(
            {
                contract.TRAIN_HOURS_PER_EPOCH: training_seconds / 3600 / session["epochs"],
                contract.TRAIN_CHECKPOINT_HOURS: session["checkpoint_seconds"] / 3600,
                contract.TRAIN_GPU_HOURS: session["gpu_hours"],
            }
        )
    return metrics


class TrainingRecipe:
    """One grid point's training (see the module docstring for the phases)."""

    def __init__(self, cfg: Config, env: DistEnv | None = None) -> None:
        self.requested = cfg
        self.cfg = cfg  # becomes the effective config (the base actually trained on) on open
        self.env = env or DistEnv.from_environ()
        self.method = method_for(cfg.method)
        self.output_dir = Path(cfg.training.output_dir)
        self.base = base_run_of(cfg)
        self.identity = training_identity(cfg, self.base)
        self.hash = digest(self.identity)

    def claim(self) -> contextlib.AbstractContextManager[None]:
        """Hold the output directory for this process (rank 0; `locking.DirectoryBusy` when a
        live process holds it; a lock left by a dead one is taken over, with a message)."""
        if not self.env.is_main:
            return contextlib.nullcontext()
        return directory_lock(self.output_dir)

    def finished(self) -> TrainResult | None:
        """The recorded result when this config has already finished training here."""
        if not self.requested.training.resume:
            return None
        check_output_dir(self.output_dir, self.identity, ignore=[BASE_WEIGHTS_KEY])
        if self._base_retrained():
            return None
        # Rank 0 checks the record's config hash (a legacy one it has just updated).
        return completed_result(self.output_dir, self.hash if self.env.is_main else None)

    def _base_retrained(self) -> bool:
        """Whether the output directory holds training on an earlier version of the base run
        (retrained in place since): it is then trained again from scratch, not resumed.

        A directory trained before base digests were recorded trained on the current base when
        its run started from the current base run (`_legacy_run_on_base`); rank 0 records it.
        """
        recorded = recorded_identity(self.output_dir)
        if self.base is None or recorded is None:
            return False
        before = recorded.get(BASE_WEIGHTS_KEY)
        if before is None and (legacy := self._legacy_run_on_base()) is not None:
            before = self.base.weights
            if self.env.is_main:
                self._record_base_weights(legacy)
        if before == self.base.weights:
            return False
        log.warning(
            "%s: %s: retraining", self.requested.run_name, base_retrained(self.base, before)
        )
        if self.env.is_main:
            self._clear_training()
        training = replace(self.requested.training, resume=False)
        self.requested = self.cfg = replace(self.requested, training=training)
        return True

    def _legacy_run_on_base(self) -> str | None:
        """The run of this directory if it started from the base run current now (retraining
        a base in place opens a new run), else None."""
        id_file = self.output_dir / contract.RUN_ID_FILE
        if not (self.requested.tracking.enabled and id_file.is_file()):
            return None
        run_id = id_file.read_text().strip()
        try:
            tags = client_for(self.requested.tracking).get_run(run_id).data.tags
        except MlflowException:
            return None  # recorded in another store
        return run_id if tags.get(contract.TAG_BASE_RUN_ID) == self.base.run_id else None

    def _record_base_weights(self, run_id: str) -> None:
        """Record the base's digest in a directory trained before digests were (its completion
        record's config hash, its identity) and on its run, which a sweep then finds."""
        record = read_record(self.output_dir, digest(recorded_identity(self.output_dir)))
        if record is not None:
            write_record(self.output_dir, {**record, "config_hash": self.hash})
        record_identity(self.output_dir, self.identity)
        tags = {
            contract.TAG_CONFIG_HASH: self.hash,
            contract.TAG_BASE_WEIGHTS_DIGEST: self.base.weights,
        }
        Run(client_for(self.requested.tracking), run_id).set_tags(tags)

    def _clear_training(self) -> None:
        """Remove what a training on the base's earlier weights left that a new one would take
        up: its completion record and its checkpoints."""
        (self.output_dir / contract.COMPLETE_MARKER).unlink(missing_ok=True)
        for checkpoint in self.output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)

    def adopt(self, done: TrainResult) -> TrainResult:
        """The finished result, with its run in the store now in use (rank 0).

        A store that lacks the run gets it: a new run with the config's params and tags, the
        recorded metrics, the model path (and adapter artifact) and `imported_from_*` tags
        naming where it was trained. A run a killed process left open is closed FINISHED.
        """
        cfg = self.requested
        if not (self.env.is_main and cfg.tracking.enabled):
            return done
        record = read_record(self.output_dir, self.hash)
        client = client_for(cfg.tracking)
        if (run_id := run_in_store(client, cfg.tracking.experiment_name, record)) is not None:
            log.info("%s finished training (run %s); nothing to do", self.output_dir, run_id)
            close_finished(client, run_id)
            return replace(done, run_id=run_id)
        source = ", ".join(f"run {i} of {u}" for u, i in recorded_runs(record).items())
        log.warning(
            "%s finished training (%s), which %s lacks; recording the finished result there "
            "without training again (training.resume=false retrains it)",
            self.output_dir,
            source or "untracked",
            cfg.tracking.tracking_uri,
        )
        with self.open_run() as run:
            step = int(record.get("global_step", 0))
            run.log_metrics(record.get("run_metrics") or record["metrics"], step=step)
            first_uri, first_id = next(iter(recorded_runs(record).items()), ("", ""))
            tags = {
                contract.TAG_MODEL_PATH: str(done.model_path.resolve()),
                contract.TAG_IMPORTED_FROM_URI: first_uri,
                contract.TAG_IMPORTED_FROM_RUN: first_id,
            }
            if RECORD_WEIGHTS in record:
                tags[contract.TAG_WEIGHTS_DIGEST] = record[RECORD_WEIGHTS]
            run.set_tags(tags)
            if self.method.logs_result_artifact:
                run.log_artifacts(done.model_path, contract.ARTIFACT_ADAPTER_DIR)
        record["runs"] = {**recorded_runs(record), cfg.tracking.tracking_uri: run.run_id}
        write_record(self.output_dir, record)
        return replace(done, run_id=run.run_id)

    @contextlib.contextmanager
    def open_run(self) -> Iterator[Run | None]:
        """Check the output directory, resolve the base, and (re)open the MLflow run (rank 0)."""
        cfg = self.requested
        if cfg.training.resume:  # the base's weights were checked by `finished`
            check_output_dir(self.output_dir, self.identity, ignore=[BASE_WEIGHTS_KEY])
        tags = {
            contract.TAG_CONFIG_HASH: self.hash,
            contract.TAG_GIT_COMMIT: git_commit(),
            contract.TAG_PROFILE: cfg.profile,
            contract.TAG_METHOD: self.method.family,
        }
        if cfg.tracking.parent_run_id is not None:
            tags[contract.TAG_PARENT_RUN_ID] = cfg.tracking.parent_run_id
        if self.env.is_main and cfg.tracking.enabled:
            client_for(cfg.tracking)  # an unreachable store stops here, before a base pretrains
        # Before a demo base is pretrained or a base run merged (minutes), and before the
        # tokenizer or the data: a method that does not apply (target modules the architecture
        # lacks) is found on the meta-device model of the same architecture.
        self.method.check(build_model(cfg.model, None, meta=True))
        # Before the run opens: a base run that is missing or unfinished is an input error.
        model_cfg = effective_base(cfg, self.base)
        self.cfg = replace(cfg, model=model_cfg)
        tags[contract.TAG_BASE_MODEL] = model_cfg.pretrained or f"{model_cfg.name} (architecture)"
        if self.base is not None:
            tags[contract.TAG_BASE_RUN_ID] = self.base.run_id
            tags[contract.TAG_BASE_WEIGHTS_DIGEST] = self.base.weights
        else:
            from lorabench.demo.pretraining import pretrain_tags

            tags.update(pretrain_tags(model_cfg))
        if self.env.is_main:
            record_identity(self.output_dir, self.identity)
        resolved = OmegaConf.structured(self.cfg)
        if not (self.env.is_main and cfg.tracking.enabled):
            yield None
            return
        with tracked_run(
            cfg.tracking,
            cfg.run_name,
            self.output_dir,
            resume=cfg.training.resume,
            params=training_params(resolved),
            tags=tags,
        ) as run:
            run.log_text(
                OmegaConf.to_yaml(resolved, resolve=True), contract.ARTIFACT_RESOLVED_CONFIG
            )
            yield run

    def build(self, run: Run | None) -> None:
        """Tokenizer, prepared data (logged), model with the method applied, Trainer."""
        cfg = self.cfg
        args = training_arguments(cfg)  # before the model: ZeRO-3 needs it
        self.tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
        with args.main_process_first(desc="training data"):  # rank 0 prepares, others load
            prepared = prepare_train_data(
                cfg.data, self.tokenizer, cfg.method.max_length, Path(cfg.cache_dir)
            )
        train_set, self.dev_set = split_dev(prepared.dataset, cfg.data.dev_fraction, cfg.data.seed)
        # The positions the batches compute per real token: the MFU counts them as the plan does.
        self.nonpad_share = configured_nonpad_share(cfg, train_set)
        if run is not None:
            dev_rows = 0 if self.dev_set is None else len(self.dev_set)
            run.log_metrics(
                {
                    **prepared.report.metrics(),
                    contract.DATA_NONPAD_SHARE: self.nonpad_share,
                    contract.DATA_DEV_ROWS: dev_rows,
                }
            )
            run.client.log_inputs(
                run.run_id, [training_input(cfg.data, train_set, prepared.report, dev_rows)]
            )
        model = self._model()
        self.counts = count_parameters(model, self.method)
        log.info("parameters: %s", self.counts)
        self.utilisation = utilisation(cfg, self.counts.total, self.nonpad_share)
        self.callback = self._callback(run)
        self.trainer = LengthListTrainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=self.dev_set,
            data_collator=make_collator(
                cfg.data.batching,
                self.tokenizer,
                cfg.method.max_length,
                attn_implementation=cfg.model.attn_implementation,
            ),
            processing_class=self.tokenizer,
            callbacks=[self.callback],
            optimizers=(self.method.optimizer(model, args), None),
        )
        use_stage_progress(self.trainer, f"{cfg.run_name} training", cfg.training.progress_bar)

    def _model(self) -> torch.nn.Module:
        """The base at the run's precision and kernels, with the method applied (its initial
        state recorded by rank 0)."""
        cfg = self.cfg
        precision = DTYPES[cfg.precision]
        dtype = self.method.load_dtype(precision, cfg.hardware.deepspeed is not None)
        quantization = self.method.quantization_config(precision)
        # bitsandbytes places quantised weights while loading: each rank on its own GPU.
        device = self.env.local_rank if cfg.hardware.device == "cuda" else "cpu"
        model = build_model(
            cfg.model,
            self.tokenizer,
            dtype=dtype,
            seed=cfg.training.seed,
            quantization=quantization,
            device_map=None if quantization is None else {"": device},
            attn_implementation=cfg.model.attn_implementation,
        )
        if cfg.hardware.activation_checkpointing:
            self.method.prepare_for_checkpointing(model)
        # Seeded: a randomised initialisation (LoRA's A, PiSSA's randomised SVD) is the same on
        # every rank and in a resumed session, whose checkpoint was trained from it.
        torch.manual_seed(cfg.training.seed)
        model = self.method.wrap(model)
        if self.env.is_main:
            self.method.record_initial(model, self.output_dir / self.method.saved_dir)
        return model

    def _callback(self, run: Run | None) -> ContractMetricsCallback:
        """The metrics callback, continuing the run's earlier sessions when resuming: their GPU
        hours (the store's and those this directory's last session wrote since) and the steps
        they already logged."""
        cfg = self.cfg
        gpu_file = self.output_dir / contract.GPU_HOURS_FILE
        if not cfg.training.resume:
            gpu_file.unlink(missing_ok=True)
        previous, logged = 0.0, {}
        if run is not None:
            for key in (
                *contract.STEP_METRICS.values(),
                contract.TRAIN_GPU_HOURS,
                *THROUGHPUT_METRICS,
            ):
                history = run.client.get_metric_history(run.run_id, key)
                if history:
                    logged[key] = max(m.step for m in history)
            previous = max(run.metric_history(contract.TRAIN_GPU_HOURS), default=0.0)
            previous = max(previous, recorded_gpu_hours(gpu_file))
        return ContractMetricsCallback(
            run,
            world_size=cfg.hardware.world_size,
            previous_gpu_hours=previous,
            gpu_hours_file=gpu_file if run is not None else None,
            already_logged=logged,
            utilisation=self.utilisation,
        )

    def fit(self) -> None:
        """Train, from the last checkpoint when resuming; logged steps survive a failure."""
        checkpoint = None
        if self.cfg.training.resume and self.output_dir.is_dir():
            checkpoint = last_complete_checkpoint(self.output_dir)
        try:
            self.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except BaseException:
            try:
                self.callback.flush()  # logged steps survive the failure
            except TrackingLost as lost:
                log.error("%s", lost)  # the store is gone: the failure itself is raised
            raise

    def finish(self, run: Run | None) -> TrainResult:
        """Save the model (every rank: ZeRO-3 gathers), log the summary, record completion."""
        model_path = self.output_dir / self.method.saved_dir
        self.method.save(self.trainer, model_path)
        metrics = _summary_metrics(self.callback.session, self.counts, self.cfg, self.nonpad_share)
        if self.dev_set is not None:  # every rank: evaluation is distributed
            metrics[contract.DEV_LOSS] = self.trainer.evaluate()["eval_loss"]
        result = TrainResult(
            run_id=run.run_id if run is not None else None,
            output_dir=self.output_dir,
            model_path=model_path,
            counts=self.counts,
            metrics=metrics,
        )
        if not self.env.is_main:
            return result
        # Once, here: a chained run on this one keys on it (`lorabench.modeling.trained`).
        weights = weights_digest(model_path, None if self.base is None else self.base.weights)
        if run is not None:
            self.tokenizer.save_pretrained(str(model_path))
            run.log_metrics(metrics, step=self.trainer.state.global_step)
            tags = {contract.TAG_MODEL_PATH: str(model_path.resolve())}
            run.set_tags({**tags, contract.TAG_WEIGHTS_DIGEST: weights})
            if self.method.logs_result_artifact:
                run.log_artifacts(model_path, contract.ARTIFACT_ADAPTER_DIR)
        write_record(self.output_dir, self._completion_record(result, run, weights))
        return result

    def _completion_record(self, result: TrainResult, run: Run | None, weights: str) -> dict:
        uri = self.cfg.tracking.tracking_uri
        return {
            "run_id": result.run_id,
            "config_hash": self.hash,
            "tracking_uri": uri,
            "runs": {} if run is None else {uri: run.run_id},
            "model_path": str(result.model_path),
            RECORD_WEIGHTS: weights,
            "counts": asdict(self.counts),
            "metrics": result.metrics,
            "global_step": self.trainer.state.global_step,
            # Every metric's last value (data, training, summary): what another store gets.
            "run_metrics": {} if run is None else run.latest_metrics(),
        }


def train(cfg: Config, env: DistEnv | None = None) -> TrainResult:
    """Train one grid point; log it to MLflow as one run (rank 0 only) and save the result.

    With `training.resume` (the default) a finished output directory of the same config is not
    trained again, and an unfinished one continues from its last checkpoint into the same MLflow
    run; a directory of another config is refused, naming the keys that differ. A chained run
    whose base run was retrained in place since (another weights digest) is trained again from
    scratch, with a log line saying so.
    """
    recipe = TrainingRecipe(cfg, env)
    with recipe.claim():
        if (done := recipe.finished()) is not None:
            return recipe.adopt(done)
        with recipe.open_run() as run:
            recipe.build(run)
            recipe.fit()
            return recipe.finish(run)
