"""The tracking contract: every MLflow name that training, evaluation, sweeps and the analysis
share, and the run-name format. Writers and readers import these names; none spells them out.

`docs/tracking.md` documents the contract for users (what each metric means, its unit).

Run names
---------
A run is named after what it trains, like the paper's rows::

    llama-7b+lora(2m)                       # the paper's LoRA preset on 2M samples
    llama-7b+ft(2m)+lora(math_0.25m)        # chained: LoRA on the FT(2M) run's model
    llama-7b+lora-r64(2m)                   # LoRA rank 64 instead of the preset's 8
    llama-7b+lora(2m)[lr=0.0001,seed=2]     # other axes that differ from the presets

The `[...]` suffix lists, sorted, every training axis whose value differs from the named presets
(`lorabench.identity` decides which keys are axes); a name without it is the presets' own
config, so only the paper's configuration carries a paper row's name.

Runs about a base model itself are named after the model and their role::

    llama-7b (base)                         # the untuned base, evaluated (tag run_kind=base)
    tiny (pretraining)                      # a demo base's pretraining (run_kind=pretraining)
    tiny (base)[model.pretrain.epochs=2]    # model axes that differ from the preset
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# ---- metrics ----------------------------------------------------------------------------------
# Per optimiser step (step = global step).
TRAIN_LOSS = "train/loss"
TRAIN_LEARNING_RATE = "train/learning_rate"
TRAIN_GRAD_NORM = "train/grad_norm"
STEP_METRICS: Mapping[str, str] = {
    "loss": TRAIN_LOSS,
    "learning_rate": TRAIN_LEARNING_RATE,
    "grad_norm": TRAIN_GRAD_NORM,
}
"""HF Trainer log keys → the contract's per-step metric names."""

# Per training session (logged at its last step).
TRAIN_FINAL_LOSS = "train/final_loss"
"""Mean of the session's last 10 logged step losses (what a summary line shows)."""
TRAIN_TOKENS_PER_SECOND = "train/tokens_per_second"
"""Non-padding tokens per second over all processes: per logged step, over the steps since the
previous log; at the session's last step, over the session's wall clock (checkpoints included)."""
TRAIN_TOKENS_PER_SECOND_PER_DEVICE = "train/tokens_per_second_per_device"
"""`train/tokens_per_second` ÷ the processes (GPUs): what frameworks are compared by."""
TRAIN_MFU = "train/mfu"
"""Model FLOPs utilisation: the FLOP/s achieved, counted as the plan counts them (its FLOPs per
position, recomputed forward included, over the positions computed: tokens ÷ the batching's
non-padding share), ÷ (processes × the GPU's peak FLOP/s at the run's precision, `gpus.yaml`);
checkpoint writing excluded, as from hours per epoch. The figure `plan.mfu` assumes. Absent on
CPU hardware and without `hardware.gpu` (never 0)."""
TRAIN_HOURS_PER_EPOCH = "train/hours_per_epoch"
"""Wall-clock hours per epoch of optimisation alone: checkpoint writing is excluded."""
TRAIN_CHECKPOINT_HOURS = "train/checkpoint_hours"
"""Wall-clock hours this session spent writing checkpoints (not in hours per epoch)."""
TRAIN_GPU_HOURS = "train/gpu_hours"
"""Wall-clock hours × processes, summed over every session of the run (checkpoints included)."""
MODEL_ADDITIONAL_PARAMS = "model/additional_params"
MODEL_TRAINABLE_PARAMS = "model/trainable_params"
MODEL_TOTAL_PARAMS = "model/total_params"
SYSTEM_PEAK_MEMORY_GB = "system/peak_memory_gb"

# Pretraining of a demo base (`lorabench.demo.pretraining`), logged in its own run.
PRETRAIN_HELDOUT_LOSS = "pretrain/heldout_loss"
"""Mean next-token cross-entropy on the held-out world documents, after pretraining (nats)."""
PRETRAIN_HELDOUT_PERPLEXITY = "pretrain/heldout_perplexity"
"""exp(heldout loss) after pretraining."""
PRETRAIN_INITIAL_HELDOUT_PERPLEXITY = "pretrain/heldout_perplexity_initial"
"""The same, measured on the randomly initialised model before pretraining."""
PRETRAIN_TRAIN_TOKENS = "pretrain/train_tokens"
"""Tokens of the pretraining corpus (blocks × block size) seen once per epoch."""
PRETRAIN_SECONDS = "pretrain/seconds"
"""Wall-clock seconds of the pretraining itself (corpus and model building excluded)."""

# Training data (`lorabench.data.report`).
DATA_PREFIX = "data/"
DATA_ROWS_READ = "data/rows_read"
DATA_ROWS_VALID = "data/rows_valid"
DATA_ROWS_KEPT = "data/rows_kept"
DATA_TOKENS = "data/tokens"
DATA_MEAN_LENGTH = "data/mean_length"
DATA_P95_LENGTH = "data/p95_length"
DATA_NONPAD_SHARE = "data/nonpad_share"
DATA_DEV_ROWS = "data/dev_rows"
"""Rows held out of training as the development split (`data.dev_fraction`)."""

# The development split (logged at the end of training, when `data.dev_fraction` > 0).
DEV_LOSS = "dev/loss"
"""Mean loss on the held-out development split of the training data (never the eval set)."""


def data_skipped(reason: str) -> str:
    """Rows skipped for `reason` by validation."""
    return f"data/skipped_{reason}"


# Evaluation.
EVAL_PREFIX = "eval/"
EVAL_AVERAGE_SCORE = "eval/average_score"
EVAL_AVERAGE_SCORE_CI_LOW = "eval/average_score_ci_low"
EVAL_AVERAGE_SCORE_CI_HIGH = "eval/average_score_ci_high"
EVAL_JUDGED_ITEMS = "eval/judged_items"
EVAL_UNJUDGED_ITEMS = "eval/unjudged_items"
EVAL_JUDGE_CALLS = "eval/judge_calls"
EVAL_JUDGE_CACHE_HITS = "eval/judge_cache_hits"
EVAL_JUDGE_PARSE_FAILURES = "eval/judge_parse_failures"
EVAL_JUDGE_TOKENS = "eval/judge_tokens"
EVAL_TRUNCATED_ANSWERS = "eval/truncated_answers"
"""Answers that stopped at `eval.decoding.max_new_tokens` rather than at EOS."""
EVAL_SCORE_PREFIX = "eval/score/"
EVAL_SCORE_CI_LOW_PREFIX = "eval/score_ci_low/"
EVAL_SCORE_CI_HIGH_PREFIX = "eval/score_ci_high/"


def eval_score(category: str) -> str:
    """Mean judge score of one of the 9 categories."""
    return f"{EVAL_SCORE_PREFIX}{category}"


def eval_score_ci_low(category: str) -> str:
    """Lower end of the 95% bootstrap interval of a category's mean score."""
    return f"{EVAL_SCORE_CI_LOW_PREFIX}{category}"


def eval_score_ci_high(category: str) -> str:
    """Upper end of the 95% bootstrap interval of a category's mean score."""
    return f"{EVAL_SCORE_CI_HIGH_PREFIX}{category}"


def eval_parse_failures(category: str) -> str:
    """Judge replies of one category from which no score could be read."""
    return f"{EVAL_JUDGE_PARSE_FAILURES}/{category}"


def eval_truncated(category: str) -> str:
    """Answers of one category cut at `max_new_tokens`."""
    return f"{EVAL_TRUNCATED_ANSWERS}/{category}"


# Every judge's scores of a run, side by side (the headline `eval/score/*` is one judge's).
EVAL_JUDGES_PREFIX = "eval/judges/"


def judge_slug(judge: str) -> str:
    """A judge's id (`openai:gpt-3.5-turbo`) as a metric and artifact path segment."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", judge)


def judge_metric(judge: str, metric: str) -> str:
    """An `eval/...` metric as one judge's: `eval/judges/<judge slug>/score/others`."""
    return f"{EVAL_JUDGES_PREFIX}{judge_slug(judge)}/{metric.removeprefix(EVAL_PREFIX)}"


# The judge cost ledger (`lorabench.judging.costs`): per run and judge, what the run's latest
# evaluation with that judge bought, priced at `conf/prices.yaml`; a sweep's head-to-head judge
# is ledgered on the sweep's parent run, which also gets the sweep's total.
JUDGE_LEDGER_PREFIX = "judge/"
LEDGER_TOKENS_PROMPT = "tokens_prompt"
"""Prompt tokens bought (the servers' `usage`), the Batch API's included."""
LEDGER_TOKENS_COMPLETION = "tokens_completion"
LEDGER_TOKENS_BATCH = "tokens_batch"
"""Of the tokens bought (prompt + completion), those bought through the Batch API."""
LEDGER_TOKENS_CACHED = "tokens_cached"
"""Tokens of the replies answered from the cache: bought by an earlier evaluation, not here."""
LEDGER_COST_USD = "cost_usd"
"""What the tokens bought cost; absent (never 0) when the judge's model has no price. An
offline judge's is 0: it calls nothing."""
LEDGER_MEASURES = (
    LEDGER_TOKENS_PROMPT,
    LEDGER_TOKENS_COMPLETION,
    LEDGER_TOKENS_BATCH,
    LEDGER_TOKENS_CACHED,
    LEDGER_COST_USD,
)
SWEEP_JUDGE_COST_USD = "sweep/judge_cost_usd"
"""A sweep's judging cost: its grid points' runs' and its head-to-head judge's (a base row is
shared by sweeps, with its own ledger); absent when any of them is unpriced (the tag
`sweep_judge_cost` says which)."""
SWEEP_JUDGE_TOKENS = "sweep/judge_tokens"
"""The tokens a sweep's judging bought (prompt + completion), priced or not."""
TAG_SWEEP_JUDGE_COST = "sweep_judge_cost"


def judge_ledger(judge: str, measure: str) -> str:
    """One judge's ledger metric on a run: `judge/<judge slug>/cost_usd`."""
    return f"{JUDGE_LEDGER_PREFIX}{judge_slug(judge)}/{measure}"


def judge_cost_note(judge: str) -> str:
    """The tag that says how a judge's cost was priced (model, prices, their date), or why it
    is unknown, or that an offline judge costs nothing: `judge/<judge slug>/cost`."""
    return f"{JUDGE_LEDGER_PREFIX}{judge_slug(judge)}/cost"


# Anatomy of a tuned run's weight update (`lorabench.anatomy`): per run, over its measured
# matrices (ΔW = tuned weight − starting weight, one per adapted matrix).
ANATOMY_PREFIX = "anatomy/"
ANATOMY_EFFECTIVE_RANK = "anatomy/effective_rank"
"""Mean over matrices of the rank that holds `anatomy.energy` (90%) of ΔW's squared singular
values (Biderman et al. 2024's "rank needed to explain 90% of the variance")."""
ANATOMY_RELATIVE_CHANGE = "anatomy/relative_change"
"""Mean over matrices of ‖ΔW‖_F / ‖W‖_F (W: the starting weight)."""
ANATOMY_INTRUDERS = "anatomy/intruders"
"""Mean over matrices of the intruder dimensions (Shuttleworth et al.): of the tuned weight's
top `anatomy.intruder_top_k` left singular vectors, those whose largest |cosine| with any of
the starting weight's left singular vectors is below `anatomy.intruder_threshold`."""
ANATOMY_INTRUDERS_TOTAL = "anatomy/intruders_total"
"""The intruder dimensions summed over every measured matrix."""
ANATOMY_MATRICES = "anatomy/matrices"
"""How many matrices were measured (changed, of equal shapes in both models)."""
ANATOMY_UNCHANGED = "anatomy/unchanged_matrices"
"""Selected matrices whose weight did not change at all (not adapted by the run): not measured."""
ANATOMY_SKIPPED = "anatomy/skipped_matrices"
"""Selected matrices whose shapes differ between the two models (a resized embedding): skipped."""
ANATOMY_SECONDS = "anatomy/seconds"
"""Wall-clock seconds the measurement took (reading the weights included)."""
ANATOMY_MEASURES = {
    "effective_rank": ANATOMY_EFFECTIVE_RANK,
    "relative_change": ANATOMY_RELATIVE_CHANGE,
    "intruders": ANATOMY_INTRUDERS,
}
"""A matrix's measure (the per-layer table's column) → its run-level mean metric."""


def anatomy_metric(module: str, measure: str) -> str:
    """One module type's mean of a measure: `anatomy/q_proj/effective_rank`."""
    return f"{ANATOMY_PREFIX}{module}/{measure}"


# Benchmarks (lm-evaluation-harness), per run and per base row: what a run learned and what it
# forgot.
BENCH_PREFIX = "bench/"
BENCH_ROLE_RETENTION = "retention"
"""A base ability tuning may lose (C-Eval, CMMLU, HellaSwag, ARC, WinoGrande; the demo's world
facts)."""
BENCH_ROLE_TARGET = "target"
"""The skill the tuning should teach (GSM8K; the demo's held-out math)."""
BENCH_WORLD_PERPLEXITY_TASK = "world_perplexity"
BENCH_WORLD_PERPLEXITY = "bench/world_perplexity"
"""Perplexity on held-out pretraining-style world text: forgetting in loss terms (demo bases)."""
BENCH_SECONDS = "bench/seconds"
"""Wall-clock seconds of the benchmark stage (the model's load and the world text included; a
rerun that reads lm-eval's kept responses is quick): what the panel adds to an evaluation."""
ARTIFACT_BENCH_DIR = "benchmarks"
ARTIFACT_BENCH_SUMMARY = "benchmarks/summary.csv"
BENCH_SUMMARY_COLUMNS = ("task", "role", "metric", "value", "stderr", "items")


def bench_metric(task: str, metric: str) -> str:
    """A benchmark's score on a run: `bench/<lm-eval task>/<metric>`."""
    return f"{BENCH_PREFIX}{task}/{metric}"


def bench_stderr(task: str, metric: str) -> str:
    """lm-eval's standard error of `bench_metric(task, metric)`."""
    return f"{bench_metric(task, metric)}_stderr"


def bench_items_artifact(task: str) -> str:
    """Per-item values of a task's primary metric (`{"item", "value"}` rows; the perplexity's
    rows are `{"item", "nll", "tokens"}`)."""
    return f"{ARTIFACT_BENCH_DIR}/{task}/items.jsonl"


# Learned and forgotten (`lorabench.analysis.forgetting`), logged to a sweep's parent run when
# it closes: per run against the model it started from, per LoRA-vs-FT pair their differences.
FORGETTING_PREFIX = "forgetting/"
FORGETTING_LEARNED = "learned"
"""Mean over the target tasks of (run − start) on paired items: the skill gained."""
FORGETTING_FORGOTTEN = "forgotten"
"""Mean over the retention tasks of (start − run) on paired items: positive = ability lost."""
FORGETTING_WORLD_PERPLEXITY = "world_perplexity_change"
"""Perplexity on the held-out world documents, run − start (positive = worse)."""
FORGETTING_LEARNED_DIFFERENCE = "learned_difference"
FORGETTING_FORGOTTEN_DIFFERENCE = "forgotten_difference"
"""Of a pair `LoRA run vs FT run`: LoRA's learned (forgotten) − FT's, paired over items."""
ARTIFACT_FORGETTING_DIR = "forgetting"
ARTIFACT_FORGETTING_RUNS = "forgetting/runs.csv"
"""Per run: learned, forgotten, Δ world perplexity with intervals, or why it was skipped."""
ARTIFACT_FORGETTING_COMPARISONS = "forgetting/comparisons.csv"
"""Per LoRA-vs-FT pair: the paired differences with intervals and the verdict."""


def forgetting_metric(subject: str, measure: str) -> str:
    """On a sweep's parent: a run's (or a pair `A vs B`'s) measure, the subject made a path
    segment as judge ids are: `forgetting/tiny_lora_2m_/learned`."""
    return f"{FORGETTING_PREFIX}{judge_slug(subject)}/{measure}"


def forgetting_ci_low(subject: str, measure: str) -> str:
    """Lower bound of `forgetting_metric(subject, measure)`'s paired-bootstrap interval."""
    return f"{forgetting_metric(subject, measure)}_ci_low"


def forgetting_ci_high(subject: str, measure: str) -> str:
    """Upper bound of `forgetting_metric(subject, measure)`'s paired-bootstrap interval."""
    return f"{forgetting_metric(subject, measure)}_ci_high"


# ---- tags -------------------------------------------------------------------------------------
TAG_CONFIG_HASH = "config_hash"
"""Hash of the run's identity (`lorabench.identity`; a chained run's with its base run's weights
digest, `lorabench.modeling.trained.training_identity`): equal hashes train the same model."""
TAG_GIT_COMMIT = "git_commit"
TAG_PROFILE = "profile"
TAG_BASE_RUN_ID = "base_run_id"
"""Chained runs: the run whose model this one started from."""
TAG_BASE_MODEL = "base_model"
"""What training actually loaded as its base: a Hub id, a local path or another run's model."""
TAG_MODEL_PATH = "model_path"
"""The saved adapter or model directory (absolute)."""
TAG_WEIGHTS_DIGEST = "weights_digest"
"""The digest of the run's trained model: its saved weight files and, for a chained run, its
base run's digest (`lorabench.modeling.trained`). Computed once when training finishes (a run
trained before it was recorded: on first use); also in its output directory's completion record."""
TAG_BASE_WEIGHTS_DIGEST = "base_weights_digest"
"""Chained runs: the base run's `weights_digest` this run trained on (part of its identity, so
a base retrained in place invalidates the runs trained on it)."""
TAG_METHOD = "method"
"""The run's method family (`lorabench.methods.Method.family`): `METHOD_LORA` or `METHOD_FT`."""
METHOD_LORA = "lora"
"""LoRA and every variant of it (DoRA, rsLoRA, PiSSA, LoRA+, QLoRA); also the method label of
the paper's LoRA preset (`method=lora`) in run names, the one the analysis compares with FT
(there a run's method is its name's label, so `lora-r64` or `dora` is another method)."""
METHOD_FT = "ft"
"""Full fine-tuning; also the method label of the paper's FT preset (`method=ft`)."""
TAG_RUN_KIND = "run_kind"
"""What a run that is no training grid point holds: `RUN_KIND_PRETRAINING` or `RUN_KIND_BASE`."""
RUN_KIND_PRETRAINING = "pretraining"
"""A demo base's pretraining: not a row of the study's tables."""
RUN_KIND_BASE = "base"
"""An evaluation of an untuned base model: the row every tuned run is read against."""
TAG_PRETRAIN_KEY = "pretrain_key"
"""The pretraining cache key of a demo base (on its pretraining run and on the runs using it)."""
TAG_PRETRAIN_RUN_ID = "pretrain_run_id"
"""The run that pretrained the base a run starts from (possibly in another store)."""
TAG_ERROR = "error"
TAG_EVAL_JUDGE = "eval_judge"
TAG_EVAL_JUDGE_MODEL = "eval_judge_model"
"""The model name(s) the judge's server reported in its replies (e.g. a dated snapshot)."""
TAG_EVAL_JUDGE_PROMPTS = "eval_judge_prompts"
TAG_EVAL_JUDGES = "eval_judges"
"""Every judge that scored the run (comma-separated ids); `eval_judge` is the headline one."""
TAG_EVAL_SET = "eval_set"
TAG_EVAL_ITEMS = "eval_items"
TAG_EVAL_HASH = "eval_hash"
"""Hash of the evaluation config (eval + judge) and the evaluated model's identity."""
TAG_BENCH_HASH = "bench_hash"
"""The digest of the benchmark settings (`eval.benchmarks` and how they run) and the evaluated
weights its `bench/*` metrics measured: a run without it, or with another, is benchmarked again."""
TAG_ANATOMY_HASH = "anatomy_hash"
"""The digest of the anatomy settings and the run's weights its `anatomy/*` metrics measured."""
TAG_SWEEP = "sweep"
TAG_SWEEP_OVERRIDES = "overrides"
TAG_SWEEP_GRID_POINTS = "grid_points"
TAG_SWEEP_UNFINISHED = "unfinished_points"
TAG_SWEEP_LR_WARNINGS = "lr_warnings"
"""On a sweep's parent: pairs of its runs comparing methods at one unusual learning rate."""
TAG_SWEEP_LR_PICKS = "lr_picks"
"""On a sweep's parent (`sweep.pick_learning_rate`): per method, the learning rate of the lowest
development loss."""
TAG_PAIRWISE_JUDGE = "pairwise_judge"
"""On a sweep's parent (`sweep.pairwise`): the pairwise judge of its head-to-head stage."""
TAG_SWEEP_HOST = "sweep_host"
TAG_SWEEP_PID = "sweep_pid"
"""On a sweep's parent: the host and process id of the sweep that holds it (a rerun of a sweep
whose process is gone continues its parent; a live sweep's parent is never taken)."""
TAG_IMPORTED_FROM_URI = "imported_from_uri"
TAG_IMPORTED_FROM_RUN = "imported_from_run"
"""On a run recorded from a finished output directory into another store: the store and run
the training was first logged in (its step metrics stayed there)."""
TAG_SOURCE = "source"
TAG_PAPER_RUN = "paper_run"
# MLflow's own tags.
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"
"""A run's description in the MLflow UI."""
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
"""An experiment tag: which page the MLflow 3 UI opens an experiment on."""
EXPERIMENT_KIND_TRAINING = "custom_model_development"
"""`TAG_EXPERIMENT_KIND` of a model-training experiment: the UI opens on its runs (without it,
MLflow 3 opens on the GenAI traces overview)."""

# ---- datasets (`mlflow.log_input`) ------------------------------------------------------------
DATASET_CONTEXT_TRAINING = "training"
"""The context of a run's training data in its `log_input` record."""

# ---- artifacts --------------------------------------------------------------------------------
ARTIFACT_RESOLVED_CONFIG = "config/resolved.yaml"
ARTIFACT_ADAPTER_DIR = "adapter"
ARTIFACT_EVAL_DIR = "eval"
ARTIFACT_GENERATIONS = "eval/generations.jsonl"
ARTIFACT_JUDGEMENTS = "eval/judgements.jsonl"
ARTIFACT_JUDGE_DIR = "eval/judges"
JUDGEMENTS_FILE = "judgements.jsonl"
"""In `eval/judges/<judge slug>/`: that judge's judgements, one row an item."""
REPEATS_FILE = "repeats.jsonl"
"""In `eval/judges/<judge slug>/`: the extra judgements of `judge.repeats` (field `repeat`)."""


def judge_artifact_dir(judge: str) -> str:
    """Where one judge's judgements of a run are kept: `eval/judges/<judge slug>`."""
    return f"{ARTIFACT_JUDGE_DIR}/{judge_slug(judge)}"


ARTIFACT_STATS_DIR = "statistics"
"""On a sweep's parent: the replicate aggregates and paired comparisons of its runs."""
ARTIFACT_REPLICATES = "statistics/replicates.csv"
ARTIFACT_COMPARISONS = "statistics/comparisons.csv"
ARTIFACT_STATS_REPORT = "statistics/statistics.md"
ARTIFACT_ANATOMY_LAYERS = "anatomy/layers.csv"
"""A run's per-matrix anatomy, one row per measured matrix: `tensor` (its name in the
checkpoint), `layer` (block index, empty outside the blocks), `module` (`q_proj`), `rows`,
`cols`, `effective_rank`, `relative_change`, `intruders`, `delta_norm`, `base_norm`."""
ARTIFACT_ANATOMY_SPECTRA = "anatomy/spectra.csv"
"""ΔW's largest singular values per matrix (`anatomy.spectrum_length`), long: `tensor`,
`index` (0 = largest), `singular_value`."""
ANATOMY_LAYER_COLUMNS = (
    "tensor",
    "layer",
    "module",
    "rows",
    "cols",
    "effective_rank",
    "relative_change",
    "intruders",
    "delta_norm",
    "base_norm",
)
"""The columns of `ARTIFACT_ANATOMY_LAYERS`, in order."""
ARTIFACT_PAIRWISE_VERDICTS = "pairwise/verdicts.csv"
"""On a sweep's parent: every pairwise item verdict, `PAIRWISE_VERDICT_COLUMNS`."""
PAIRWISE_VERDICT_COLUMNS = (
    "judge",
    "run_a",
    "run_b",
    "item",
    "category",
    "first",
    "second",
    "verdict",
    "consistent",
    "length_a",
    "length_b",
    "status",
    "reason",
)
"""One row per (pairwise judge, pair of runs, eval item): `first` and `second` are the verdicts
of the two orders (A's answer shown first, B's shown first) in the pair's labels (`A`, `B`,
`tie`, or empty when that order could not be judged), `verdict` their combination (A or B only
when both orders agree, else a tie; empty when either failed), `consistent` whether the two
orders agree, `length_a`/`length_b` the answers' lengths in characters, `status`/`reason` why an
item has no verdict."""
ARTIFACT_PAIRWISE_DIR = "pairwise"
"""On a sweep's parent: the head-to-head stage's verdicts and tables (`win_rates.csv`,
`category_win_rates.csv`, `position_consistency.csv`, `bradley_terry.csv`,
`length_controlled.csv`) and the pairs it skipped (`skipped.txt`)."""
PAIRWISE_PREFIX = "pairwise/"


def pairwise_slug(pair: str) -> str:
    """A pair of runs (`A vs B`, run names) as a metric path segment, as `judge_slug` does."""
    return judge_slug(pair)


def pairwise_win_rate(pair: str) -> str:
    """On a sweep's parent: A's win rate against B (a tie half a win), for the pair `A vs B`
    judged head to head: `pairwise/<pair slug>/win_rate`."""
    return f"{PAIRWISE_PREFIX}{pairwise_slug(pair)}/win_rate"


def pairwise_win_rate_ci_low(pair: str) -> str:
    """Lower bound of `pairwise_win_rate(pair)`'s bootstrap interval (`stats.level`)."""
    return f"{pairwise_win_rate(pair)}_ci_low"


def pairwise_win_rate_ci_high(pair: str) -> str:
    """Upper bound of `pairwise_win_rate(pair)`'s bootstrap interval (`stats.level`)."""
    return f"{pairwise_win_rate(pair)}_ci_high"


def pairwise_position_consistency(judge: str) -> str:
    """On a sweep's parent: the share of items, over all pairs a pairwise judge compared, whose
    two orders (A's answer shown first, B's first) agree: `pairwise/<judge slug>/
    position_consistency`."""
    return f"{PAIRWISE_PREFIX}{judge_slug(judge)}/position_consistency"


ARTIFACT_LR_PICKS = "lr_search/picks.csv"
"""On a sweep's parent: `lorabench.analysis.learning_rates.best_learning_rates`'s table."""

# ---- files in a run's output directory --------------------------------------------------------
RUN_ID_FILE = "mlflow_run_id"
COMPLETE_MARKER = "training_complete.json"
"""Written when training has finished and the model is saved (with the model's
`weights_digest`)."""
IDENTITY_FILE = "identity.json"
"""The identity (flattened training config) the directory was trained with."""
LOCK_FILE = "run.lock"
"""Held (an OS file lock) by the process training in the directory; names its host and pid. A
lock file whose lock is free was left by a process that died: its run is resumed."""
GPU_HOURS_FILE = "gpu_hours.json"
"""The run's GPU hours so far, rewritten at every logged step (a killed session's time since
its last metrics flush is counted by the next session)."""

# ---- files in an evaluation's directory -------------------------------------------------------
GENERATIONS_FILE = "generations.jsonl"
JUDGEMENTS_FILE = "judgements.jsonl"
VLLM_LOG_FILE = "vllm.log"
"""The output of the `vllm serve` that `eval.backend=vllm` started for the evaluation."""

# ---- run names --------------------------------------------------------------------------------
RUN_NAME_PATTERN = re.compile(
    r"^(?P<model>[^+]+)(?:\+(?P<chain>.+))?\+(?P<method>[\w.-]+)\((?P<data>[^()]+)\)"
    r"(?:\[(?P<axes>[^\[\]]*)\])?$"
)
"""Parses a run name: `model`, the `chain` of earlier stages, `method` (with a rank suffix such
as `lora-r64`), `data`, and `axes` (the `[...]` suffix, without brackets)."""


def format_model_run_name(model: str, role: str, axes: str | None = None) -> str:
    """The name of a run about a base model itself: `tiny (base)`, `llama-7b (base)`,
    `tiny (pretraining)`, plus `[k=v,...]` when the model's config differs from its preset."""
    name = f"{model} ({role})"
    return f"{name}[{axes}]" if axes else name


def format_run_name(
    model: str,
    method: str,
    data: str,
    base_run: str | None = None,
    axes: Mapping[str, str] | None = None,
) -> str:
    """`{base_run or model}+{method}({data})`, plus `[k=v,...]` for the axes, sorted by key."""
    name = f"{base_run or model}+{method}({data})"
    if axes:
        name += "[" + ",".join(f"{k}={v}" for k, v in sorted(axes.items())) + "]"
    return name


def parse_run_name(name: str) -> dict[str, str] | None:
    """The parts of a run name (see `RUN_NAME_PATTERN`), or None if it is not one."""
    match = RUN_NAME_PATTERN.match(name)
    if match is None:
        return None
    parts = {k: v for k, v in match.groupdict().items() if v is not None}
    return parts
