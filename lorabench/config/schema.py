"""Typed configuration schema.

Hydra composes YAML from `conf/` on top of these dataclasses, so a misspelt key or a value of the
wrong type fails at composition, naming the key. Value checks (ranges, divisibility, files that
must exist) run in `Config.__post_init__`, i.e. when `validate()` turns the composed DictConfig into
these objects, before any model is built.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from lorabench.contract import (
    BENCH_ROLE_RETENTION,
    BENCH_ROLE_TARGET,
    DEV_LOSS,
    EVAL_AVERAGE_SCORE,
    METHOD_FT,
    METHOD_LORA,
)
from lorabench.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16")
DEVICES = ("cpu", "cuda")
LAUNCHERS = ("python", "torchrun", "deepspeed")
TOKENIZER_KINDS = ("pretrained", "tiny")
DATA_FORMATS = ("instruction", "conversations")
DATA_DOMAINS = ("general", "math")
BATCHING_MODES = ("padded", "grouped", "packed")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
"""`model.attn_implementation`: transformers' attention implementations a run may train with."""
FLASH_ATTENTION = "flash_attention_2"
HALF_PRECISIONS = ("fp16", "bf16")
JUDGES = ("openai", "reference")
REFERENCE_METRICS = ("f1", "rouge_l")
BELLE_TRANSLATIONS = ("paper", "current")
JUDGE_PROMPT_SETS = ("belle", "project")
# The pairwise prompts' languages (`lorabench.judging.pairwise_prompts`, not imported here: it
# brings the judging package).
PAIRWISE_LANGUAGES = ("zh", "en")
"""`judge.prompts` values that name prompts rather than a file."""
BENCH_ROLES = (BENCH_ROLE_RETENTION, BENCH_ROLE_TARGET)
EVAL_BACKENDS = ("hf", "server", "vllm")
"""`hf`: transformers' generate in this process; `server`: a running OpenAI-compatible server;
`vllm`: `vllm serve` started for the run (see `lorabench.evaluation.serving`)."""
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
LORA_TARGETS = ("paper", "attention", "all_linear")
"""Target-module presets, resolved per architecture (`lorabench.methods.TARGET_PRESETS`)."""
LORA_BIASES = ("none", "all", "lora_only")
LORA_INITS = ("default", "gaussian", "pissa")
"""peft's `init_lora_weights`: `default` (B zero, A Kaiming), `gaussian`, `pissa` (principal
singular vectors, an exact SVD); `pissa_niter_<N>` (a randomised SVD of N iterations) too."""
PISSA_NITER = re.compile(r"^pissa_niter_[1-9][0-9]*$")
QUANT_TYPES = ("nf4", "fp4")
METRIC_NAME = re.compile(r"^[/\w.\- :]+$")
"""What MLflow accepts as a metric key (`optimized_metric`)."""


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
"""The repository's Hydra config directory (DeepSpeed JSON files live under it)."""


@dataclass
class TokenizerConfig:
    """Where the tokenizer comes from."""

    kind: str = "pretrained"
    """`pretrained`: AutoTokenizer; `tiny`: the project BPE built from its demo corpus."""
    name_or_path: str | None = None
    """Hub id or local path; None means the model's `pretrained`."""
    vocab_size: int = 2048
    """Vocabulary size of the `tiny` tokenizer (ignored for `pretrained`)."""


@dataclass
class PretrainConfig:
    """Pretraining a base built from its architecture (the demo's tiny models) as a causal LM on
    the generated world's plain text (`lorabench.demo.world`), before any instruction tuning.

    The result is cached under `pretrained_dir`, keyed by this config, the architecture, the
    tokenizer and the code that makes it (`python -m lorabench.demo.pretraining` makes it ahead)."""

    documents: int = 20000
    """World documents (train split) in the pretraining corpus."""
    heldout_documents: int = 400
    """Documents of the held-out split the perplexity is measured on, before and after."""
    corpus_seed: int = 0
    block_size: int = 128
    """Tokens per training sequence: the documents, each between `<s>` and `</s>`, are
    concatenated and cut into blocks of this length (causal LM pretraining as LLaMA's)."""
    epochs: float = 1.0
    batch_size: int = 16
    """Sequences per optimiser step (one process, no accumulation: the models are tiny)."""
    learning_rate: float = 3.0e-3
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    """Initialisation and data-order seed."""


@dataclass
class ModelConfig:
    """The base model."""

    name: str = MISSING
    """Short name used in run names, e.g. `llama-7b`."""
    pretrained: str | None = None
    """Hub id or local directory of the weights; None builds the model from `architecture`:
    pretrained by `pretrain` when set (the demo's tiny bases), else randomly initialised."""
    architecture: dict[str, Any] = field(default_factory=dict)
    """LlamaConfig fields. Used to build from config, and for dry runs, so that counting the
    parameters of LLaMA-7B needs no download. Empty: read the config from `pretrained`."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pretrain: PretrainConfig | None = None
    """How a base built from `architecture` is pretrained first; None: random weights. Ignored
    when `pretrained` names weights."""
    attn_implementation: str = "sdpa"
    """The attention kernels training runs (`lorabench.modeling.kernels`): `sdpa` (PyTorch's
    scaled_dot_product_attention), `eager` (plain matmuls, the reference) or `flash_attention_2`
    (the flash-attn package, CUDA and fp16/bf16 only; with `data.batching=packed`, padding-free
    through its variable-length kernel). How the run computes, not what: not part of its
    identity, so a run may resume under another."""


@dataclass
class LoraConfig:
    """LoRA adapter settings, and its variants, all passed to peft (`lorabench.methods.LoRA`)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: str | None = None
    """A preset of target modules resolved per architecture: `paper` (attention q, k, v and the
    MLP: the paper's counts), `attention` (q, k, v, o) or `all_linear` (every linear layer of
    the blocks); null: the explicit `target_modules`."""
    target_modules: list[str] = field(default_factory=list)
    """Explicit module names (peft's matching: a name or a dotted suffix), with `targets` null."""
    bias: str = "none"
    use_dora: bool = False
    """DoRA: a trained magnitude vector per adapted layer on top of the low-rank direction."""
    use_rslora: bool = False
    """rsLoRA: scale the update by alpha / sqrt(r) instead of alpha / r."""
    init: str = "default"
    """peft's `init_lora_weights` (see LORA_INITS): `pissa` initialises from the weights'
    principal components (the base keeps the residual)."""
    loraplus_lr_ratio: float | None = None
    """LoRA+: the B matrices learn at this multiple of `method.learning_rate` (null: plain)."""


@dataclass
class QuantizationConfig:
    """A 4-bit frozen base through bitsandbytes (QLoRA); computation runs at the precision."""

    quant_type: str = "nf4"
    """`nf4` (QLoRA's NormalFloat) or `fp4`."""
    double_quant: bool = True
    """Quantise the quantisation constants too (QLoRA's double quantisation)."""


@dataclass
class LearningRateRange:
    """The learning rates usual for a method (sweeps and reports warn outside it)."""

    low: float = MISSING
    high: float = MISSING


@dataclass
class MethodConfig:
    """The tuning method and its optimisation hyper-parameters (the paper's Tables 2 and 3)."""

    name: str = MISSING
    """`lora` or `ft`; used in run names."""
    lora: LoraConfig | None = None
    """LoRA settings; None means full-parameter fine-tuning."""
    quantization: QuantizationConfig | None = None
    """Load the frozen base in 4 bits (QLoRA; LoRA only); null: at the training precision."""
    usual_learning_rates: LearningRateRange | None = None
    """Where this method's learning rate usually lies: two runs of different methods sharing a
    learning rate outside it are flagged (`lorabench.analysis.learning_rates`)."""
    epochs: float = MISSING
    global_batch_size: int = MISSING
    """Sequences per optimiser step over all processes; gradient accumulation is derived."""
    learning_rate: float = MISSING
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 1024
    precision: str = "bf16"


@dataclass
class DataSourceConfig:
    """One training data source: a Hub dataset or a local JSON / JSON Lines file."""

    hub: str | None = None
    """Hub dataset id, read with `datasets.load_dataset(hub, split=split)`."""
    path: str | None = None
    """Local file: JSON Lines (one object per line; BELLE's `.json` files are this) or a JSON
    array of objects (told apart by the first character)."""
    split: str = "train"
    """Split of a Hub dataset (ignored for local files)."""
    format: str = "instruction"
    """`instruction` (instruction/input/output) or `conversations` (multi-turn)."""


@dataclass
class DataConfig:
    """A training data scale of the study."""

    name: str = MISSING
    """Used in run names: `0.6m`, `2m`, `4m`, `math_0.25m`."""
    num_samples: int | None = MISSING
    """Exact number of samples drawn (seeded) from the sources' valid rows; null: every valid
    row. Asking for more than the sources hold is an error, not a smaller run."""
    nominal_samples: int | None = None
    """The scale as the paper names it, when `num_samples` is null (math_0.25m: 250,000 while
    the release holds fewer rows); sizes the demo corpus. Defaults to `num_samples`."""
    sources: list[DataSourceConfig] = field(default_factory=list)
    domain: str = "general"
    demo_fraction: float | None = None
    """When set (by `profile=demo`), train on the project's generated demo corpus with
    round((num_samples or nominal_samples) * demo_fraction) samples instead of the sources."""
    seed: int = 42
    """Seed of the subsample (and of the demo corpus)."""
    max_bad_fraction: float = 0.01
    """Largest share of a source's rows that may fail validation (they are skipped and
    reported); past it preparation stops, naming the source and its first bad lines."""
    batching: str = "grouped"
    """`padded`: every sequence padded to the max length (fixed shapes); `grouped`: dynamic
    padding with length-grouped sampling; `packed`: each micro batch concatenated into one row
    with per-sample position ids, no attention across samples."""
    num_proc: int | None = None
    """Processes for preparation (reading and validating the sources, tokenisation); null: one
    per core."""
    dev_fraction: float = 0.0
    """Hold out this share of the prepared samples (seeded by `seed`, the same rows for every
    method) as a development split: not trained on, its loss logged as `dev/loss` at the end of
    training, for choosing hyper-parameters without touching the eval set. 0: train on all."""


@dataclass
class GpuConfig:
    """One GPU type's facts (`conf/gpus.yaml`), shared by the hardware presets and the plan."""

    memory_gib: float = MISSING
    """Memory one process can use: what `torch.cuda.get_device_properties().total_memory`
    reports, a little under the marketed size."""
    peak_tflops: dict[str, float] = field(default_factory=dict)
    """Dense peak TFLOP/s of one GPU by precision (`bf16`, `fp16`, `fp32`), without sparsity."""


@dataclass
class PriceConfig:
    """One judge model's prices (`conf/prices.yaml`), for the cost ledger and the plan."""

    input: float = MISSING
    """USD per 1M prompt tokens of a synchronous call."""
    output: float = MISSING
    """USD per 1M completion tokens of a synchronous call."""
    batch_discount: float = 0.0
    """The share taken off both prices through the provider's Batch API (OpenAI: 0.5)."""
    read_on: str = MISSING
    """The date (YYYY-MM-DD) the prices were read: they change, and a cost quotes its date."""


@dataclass
class HardwareConfig:
    """Where and how training runs."""

    name: str = MISSING
    device: str = "cpu"
    gpu: str | None = None
    """GPU type, a key of `gpus` (e.g. `a100-40gb`): the memory and peak FLOP/s the plan checks
    a grid point against; null for CPU hardware."""
    num_processes: int = 1
    """Processes (GPUs) per node."""
    num_nodes: int = 1
    micro_batch_size: int = 1
    """Sequences per process per forward pass."""
    launcher: str = "python"
    deepspeed: str | None = None
    """DeepSpeed config: a name under conf/deepspeed/ (`zero2`, `zero3`) or a JSON file path."""
    precision: str | None = None
    """Overrides the method's precision (CPUs cannot run fp16)."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    dataloader_num_workers: int = 0
    cpu_threads: int | None = None
    """Threads of PyTorch's CPU operations (`torch.set_num_threads`); null: PyTorch's default,
    one per core."""
    rendezvous_port: int = 29400
    """Multi-node jobs: the TCP port of the c10d rendezvous on the job's first node (torchrun's
    own default)."""
    rendezvous_timeout: float = 600.0
    """Multi-node jobs: seconds every node waits for all of them to join the rendezvous (and
    for its host to answer) before its torchrun gives up and the point fails."""
    shared_path_timeout: float = 60.0
    """Multi-node jobs: seconds the other nodes wait to see node 0's marker in
    `training.output_dir` (a network filesystem shows a new file after its attribute cache
    expires, typically within a minute) before they stop, naming the path."""

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_nodes


@dataclass
class TrackingConfig:
    """MLflow settings."""

    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str = "mlruns/artifacts"
    """Artifact root for experiments this project creates (local stores only)."""
    experiment_name: str = "lorabench"
    enabled: bool = True
    parent_run_id: str | None = None
    """Nest the run under this one (set by sweep.py for its grid points)."""


@dataclass
class TrainingConfig:
    """Run-time knobs that are not hyper-parameters of the study."""

    output_dir: str = MISSING
    seed: int = 42
    logging_steps: int = 1
    save_steps: int | None = None
    """Optimiser steps between checkpoints; null: `saves_per_epoch` checkpoints an epoch."""
    saves_per_epoch: int = 10
    """Checkpoints per epoch when `save_steps` is null (a tenth of an epoch by default, so the
    checkpoint count, and its cost, scale with the run rather than with a fixed step count)."""
    save_total_limit: int = 2
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: train the method's epochs)."""
    resume: bool = True
    """Resume from the last checkpoint in `output_dir`, into the same MLflow run."""
    progress_bar: bool = True
    liger_kernel: bool = False
    """Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, linear + cross-entropy without the
    logits) patched into the model by transformers (`use_liger_kernel`); CUDA only, needs the
    liger-kernel package (`lorabench.modeling.kernels`)."""


@dataclass
class DecodingConfig:
    """Sampling settings for answer generation (the paper's: nearly greedy)."""

    do_sample: bool = True
    temperature: float = 0.001
    top_k: int = 30
    top_p: float = 0.85
    repetition_penalty: float = 1.2
    max_new_tokens: int = 1024


@dataclass
class ServerConfig:
    """An OpenAI-compatible completions server that generates the answers (`eval.backend`
    `server`; `vllm` fills in `url` itself). None of these keys changes the answers, so none is
    part of the key kept answers are reused under."""

    url: str | None = None
    """Base URL of the API, e.g. `http://127.0.0.1:8000/v1`; required by `eval.backend=server`."""
    model: str | None = None
    """Served name to request; None: the base model's `model.pretrained` for the base itself,
    else the evaluated run's name (what `eval.backend=vllm` serves an adapter or model as)."""
    api_key_env: str | None = None
    """Environment variable holding the server's key; None: a server that asks for none."""
    concurrency: int = 32
    """Requests in flight at once: a serving engine batches them itself, and 32 keeps a 7B
    model on one GPU busy without queueing the whole eval set at once."""
    max_retries: int = 4
    """The openai client's own retries (with backoff) of connection errors, 408, 429 and 5xx."""
    timeout: float = 600.0
    """Seconds per request: 1,024 new tokens behind a queue of `concurrency` requests."""


@dataclass
class VllmConfig:
    """`vllm serve` as `eval.backend=vllm` starts it for the run (stopped afterwards)."""

    executable: str = "vllm"
    """The vLLM command (found on PATH) or a path to it."""
    host: str = "127.0.0.1"
    port: int = 0
    """0: a free port picked at start."""
    startup_timeout: float = 900.0
    """Seconds to wait for `/v1/models` to answer: loading a 7B model and capturing CUDA graphs
    takes minutes on a cold disk."""
    extra_args: list[str] = field(default_factory=list)
    """Further `vllm serve` arguments, e.g. `[--gpu-memory-utilization,0.8]`."""


@dataclass
class LmEvalConfig:
    """How lm-evaluation-harness runs the benchmark stage (`eval.benchmarks`)."""

    batch_size: int = 16
    """Requests per forward pass (HFLM's `batch_size`)."""
    max_length: int | None = None
    """Tokens of context a request keeps (longer ones lose their start); None: the model's own
    (`max_position_embeddings`, as HFLM reads it)."""
    include: list[str] = field(default_factory=list)
    """Directories of further task YAMLs (lm-eval's `--include_path`), e.g. a task over a local
    copy of a dataset."""
    bootstrap_iters: int = 100000
    """lm-eval's bootstrap resamples for the standard error of a metric that has no closed
    form (a mean's is computed directly)."""
    num_fewshot: int | None = None
    """Few-shot examples per prompt; None: each task's own setting (0 when it has none)."""


@dataclass
class DemoPanelConfig:
    """The demo's own benchmark tasks (`lorabench.demo.panel`), generated offline."""

    retention_rounds: int = 3
    retention_choices: int = 4
    math_items: int = 100


@dataclass
class EvalConfig:
    """The evaluation set and how answers are generated on it."""

    name: str = MISSING
    """`belle` (BELLE's 1,000 items) or `demo` (the project's generated set)."""
    path: str | None = None
    """Local eval set in BELLE's JSON Lines format; None: download `url`, or generate the demo."""
    url: str | None = None
    sha256: str | None = None
    demo_per_class: int = 0
    """> 0: generate the demo eval set with this many items per raw class."""
    limit: int | None = None
    """Evaluate only the first N items (a quick look; the scores are then not comparable)."""
    batch_size: int = 8
    seed: int = 42
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    backend: str = "hf"
    """How answers are generated: `hf` (transformers in this process, the default), `server`
    (an OpenAI-compatible server at `eval.server.url`) or `vllm` (started for the run)."""
    server: ServerConfig = field(default_factory=ServerConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    output_dir: str = "outputs/eval"
    """Where evaluations of a model_path or base model keep their files (a training run's
    evaluation lives in its output directory)."""
    benchmarks: list[str] = field(default_factory=list)
    """lm-eval task (or group) names the evaluated model is also scored on, after the judge
    (`lorabench.benchmarks`); empty: no benchmark stage. Presets: `benchmarks=retention_zh`,
    `retention_en`, `math`, `demo` (conf/benchmarks/)."""
    benchmark_roles: dict[str, str] = field(default_factory=dict)
    """Each benchmark's role: `retention` (a base ability tuning may lose) or `target` (the
    skill tuning should teach)."""
    world_perplexity: bool = False
    """Also measure the perplexity of the demo base's held-out world text (`model.pretrain`'s
    held-out split): forgetting in loss terms."""
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)
    demo_panel: DemoPanelConfig = field(default_factory=DemoPanelConfig)


@dataclass
class JudgeConfig:
    """Who scores the answers."""

    name: str = MISSING
    """`openai` (an LLM behind an OpenAI-compatible API) or `reference` (offline, vs gold)."""
    model: str = "gpt-3.5-turbo"
    base_url: str | None = None
    """Any OpenAI-compatible server (vLLM, llama.cpp, Ollama); None: OpenAI's."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the key (never put the key in a config)."""
    concurrency: int = 16
    """The most requests in flight; fewer after 429s (halved, grown back one per window of
    successes: `lorabench.judging.pacing`)."""
    max_retries: int = 6
    timeout: float = 60.0
    requests_per_minute: float | None = None
    """The most requests the judge starts per minute (a continuously refilled budget, e.g. the
    account's RPM); > 0, or null for none of its own (the server's `x-ratelimit-*` headers are
    followed either way)."""
    tokens_per_minute: float | None = None
    """The most tokens per minute (each request's prompt plus expected reply, estimated before it
    is sent and corrected by its usage, e.g. the account's TPM); > 0, or null for none."""
    temperature: float = 0.0
    """Sampling temperature of the judge (BELLE's page: 0.0); >= 0."""
    max_tokens: int | None = 3000
    """Cap on reply tokens (BELLE's page: 3000); >= 1, or null to leave it to the server."""
    prompts: str = "belle"
    """`belle` (BELLE's eval_prompt.json, downloaded into `cache_dir`, in the exact message of
    BELLE's scoring page: the paper's judging), `project` (this project's per-category
    instructions in its own layout) or a path to a local copy of BELLE's file (same format and
    layout; use it offline: `judge.prompts=/path/to/eval_prompt.json`)."""
    belle_translation: str = "paper"
    """With BELLE's prompts, how the 39 former translation items (raw class `rewrite` with a gold
    answer) are judged: `paper` as when the paper was judged, when they were still labelled
    `translation` (gold answer sent, `translation` prompt); `current` as BELLE's page does with
    today's eval set (no gold answer, `rewrite` prompt). Ignored by `prompts=project`."""
    cache_path: str = "judge_cache.sqlite"
    """Relative paths are under `cache_dir`."""
    headline: bool | None = None
    """Whether this judge's scores become the run's headline `eval/score/*` (every judge's are
    also kept under `eval/judges/<judge>/`). null: only when the run has no headline judge yet
    or it is this judge, so judging a run again with another judge never replaces the first."""
    repeats: int = 1
    """Judgements per item: the extra `repeats - 1` calls bypass the reply cache (each is
    recorded, in `eval/judges/<judge>/repeats.jsonl`) and measure the judge's own noise; at
    temperature 0 that is only the server's nondeterminism."""
    batch: bool = False
    """Judge through the provider's Batch API (`lorabench.judging.batch`: half the price,
    results within 24 hours) instead of synchronous calls; the replies fill the same cache.
    An LLM judge (`openai`) only."""
    batch_poll_seconds: float = 60.0
    """With `batch`: seconds between two looks at the batch's status."""


@dataclass
class SweepConfig:
    """sweep.py's settings (they change what a sweep runs, not what a grid point computes)."""

    force: bool = False
    """Train and evaluate again grid points that already have a finished, evaluated run."""
    plan: bool = False
    """Run nothing; print each grid point (train.py: its one run) with what would happen to it,
    its memory per GPU against the GPU's, its hours, and the setting that would make a point
    that does not fit fit (`lorabench.planning`, with the assumptions of the `plan` section)."""
    evaluate: bool = True
    """Evaluate each grid point after training."""
    rows: list[list[str]] = field(default_factory=list)
    """Explicit grid points as override lists (experiment configs), run in dependency order."""
    base_models: list[str] = field(default_factory=list)
    """Model options (mapped by `model_map`) an experiment evaluates untuned, as base rows
    (`<model> (base)`) that its tuned rows are read against, before its rows."""
    model_map: dict[str, str] = field(default_factory=dict)
    """Model options that rows' `model=` overrides stand for under this profile (the demo maps
    llama-7b / llama-13b to its tiny models)."""
    pick_learning_rate: bool = False
    """After the rows: per method (and model, data), the learning rate of the lowest `dev/loss`
    (the rows need `data.dev_fraction` > 0), printed and logged to the sweep's parent run."""
    anatomy: bool = False
    """After each tuned point's evaluation: measure its weight update (`lorabench.anatomy`,
    with the `anatomy` section's settings); a point without its anatomy is not done."""
    pairwise: bool = False
    """When the sweep closes: judge its finished runs head to head (the `pairwise` section's
    pairs, by the `judge` section's judge in its pairwise mode) and log the verdicts and their
    statistics to the sweep's parent run (`pairwise/*`)."""


@dataclass
class PlanConfig:
    """What a plan (`sweep.plan=true`, `lorabench.planning`) assumes where it measures nothing:
    the lengths of a training set not prepared yet, the share of peak FLOP/s a step reaches, and
    the memory outside the tensors it estimates."""

    mean_tokens_per_sample: int = 300
    """Tokens per sample while the training set is not prepared (once it is, its measured
    lengths are used); BELLE's instructions plus answers average a few hundred tokens."""
    grouped_nonpad_share: float = 0.9
    """Share of the positions that hold real tokens under `data.batching=grouped` while the
    training set is not prepared (once it is, the share is measured from its lengths). `padded`
    needs no such estimate (mean length / max length), nor `packed` (no padding)."""
    mfu: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            METHOD_FT: {"bf16": 0.4, "fp16": 0.4, "fp32": 0.4},
            # LoRA's FLOPs count only the frozen base's matmuls; its adapters (rank-r matmuls,
            # dropout, casts) run far below peak and the backward skips the weight-gradient
            # GEMMs, so a step reaches a smaller share of peak.
            METHOD_LORA: {"bf16": 0.35, "fp16": 0.35, "fp32": 0.35},
        }
    )
    """Assumed model FLOPs utilisation by method name (or, for a variant without an entry of its
    own, its family: `ft` or `lora`) and precision: the share of the GPU's peak FLOP/s
    (`gpus.<type>.peak_tflops`) the FLOPs a step executes run at (activation checkpointing's
    recomputed forward counted as executed), with the default kernels (sdpa, no Liger)."""
    attention_speedup: dict[str, float] = field(default_factory=dict)
    """Tokens per second of each attention implementation (`model.attn_implementation`) over
    the default's (sdpa, 1): the plan's MFU is `mfu` × this (the same FLOPs in less time);
    `conf/config.yaml` gives the figures and where they come from. An implementation without an
    entry cannot be planned (the plan says which key to set)."""
    liger_speedup: float | None = None
    """Tokens per second with `training.liger_kernel` over without: a further factor of the
    plan's MFU; null: a plan with Liger asks for it."""
    memory_overhead_gib: float = 1.0
    """Memory per GPU outside the tensors it estimates: CUDA context, cuBLAS workspaces, NCCL
    and DeepSpeed's communication buckets."""
    fragmentation: float = 0.1
    """Share added to the estimated tensors for memory the caching allocator holds but cannot
    reuse (batches of varying length fragment it)."""
    internode_gbit_per_s: float = 400.0
    """Multi-node points: the network bandwidth out of one node, in Gbit/s, that the hours
    assume hides the collectives between nodes (400: one 400G InfiniBand / RoCE link a node;
    our choice for a modest cluster, DGX H100 nodes have 8 of them). A plan line of a point
    whose collectives would take longer than its compute at this bandwidth warns."""
    anatomy_svd_seconds: dict[str, float] = field(default_factory=dict)
    benchmark_items: dict[str, int] = field(default_factory=dict)
    """Questions per benchmark (`eval.benchmarks` names; `conf/config.yaml` gives lm-eval's
    sizes of the presets' tasks): the benchmark stage's part of a plan line."""
    benchmark_tokens_per_item: int = 300
    """Tokens of one item's forward pass (its prompt; lm-eval scores a multiple-choice item's
    one-token answers from one pass)."""
    benchmark_mfu: float = 0.35
    """Assumed share of the GPU's peak FLOP/s a benchmark's forward passes reach."""
    """With `sweep.anatomy`: seconds of one float32 SVD (with its singular vectors) of a
    4096×4096 matrix, by where it runs (`cpu`, `gpu`; `conf/config.yaml` gives the measured
    ones); an m×n matrix costs m·n·min(m, n) / 4096³ of it, three decompositions a matrix."""


ANATOMY_TARGETS = ("paper", "attention", "all_linear")
"""`anatomy.targets`: the module presets of `lorabench.methods.TARGET_PRESETS`."""


@dataclass
class PairwiseConfig:
    """The head-to-head stage of a sweep (`sweep.pairwise=true`): which pairs of runs are judged
    pairwise and how. The judge is the `judge` section's (its endpoint, model, concurrency,
    retries and cache), asking which of two answers is better (`lorabench.judging.pairwise`)."""

    pairs: list[str] = field(default_factory=list)
    """Pairs to judge, `run A vs run B` (run or replicate-group names, any finished run of the
    experiment); empty, with no `baseline`: the study's own comparisons that involve a run of
    the sweep (LoRA vs FT per data size, the larger base vs the smaller, §4.5)."""
    baseline: str | None = None
    """A run (or replicate-group) name: every run of the sweep against it (Arena-Hard's
    style), added to `pairs`."""
    language: str = "zh"
    """The pairwise prompt's language for an LLM judge: `zh` (BELLE's style) or `en`."""
    margin: float = 0.05
    """The offline judge (`judge=reference`): the largest token-F1 difference that is a tie."""

    def __post_init__(self) -> None:
        _one_of("pairwise.language", self.language, PAIRWISE_LANGUAGES)
        if not 0.0 <= self.margin < 1.0:
            _fail("pairwise.margin", self.margin, "must be in [0, 1)")
        _check_pairs("pairwise.pairs", self.pairs)
        if self.baseline is not None and not self.baseline.strip():
            _fail("pairwise.baseline", self.baseline, "must name a run, or be null")


@dataclass
class AnatomyConfig:
    """What the anatomy of a run's weight update measures (`lorabench.anatomy`)."""

    targets: str | None = "paper"
    """The matrices measured, as a module preset of the architecture (`paper`, `attention`,
    `all_linear`, as `method.lora.targets`); null: the names in `modules`."""
    modules: list[str] = field(default_factory=list)
    """Module names to measure (`q_proj`, ...) when `targets` is null."""
    energy: float = 0.9
    """Share of ΔW's energy (squared singular values) its effective rank holds."""
    intruder_top_k: int = 10
    """How many of the tuned weight's top singular vectors are examined for intruders."""
    intruder_threshold: float = 0.5
    """A top singular vector is an intruder when its largest |cosine| with every singular
    vector of the starting weight is below this."""
    spectrum_length: int = 64
    """How many of ΔW's largest singular values per matrix are kept in the run's artifact."""
    device: str = "auto"
    """Where the decompositions run: `auto` (the first GPU when there is one, else the CPU),
    `cpu`, `cuda` or `cuda:N`; the weights are read to the CPU a matrix at a time either way."""

    def __post_init__(self) -> None:
        if self.targets is not None and self.targets not in ANATOMY_TARGETS:
            raise ConfigError(
                f"anatomy.targets={self.targets!r}: one of {', '.join(ANATOMY_TARGETS)}, or null "
                "with anatomy.modules=[...]"
            )
        if self.targets is None and not self.modules:
            raise ConfigError("anatomy.targets=null needs the module names: anatomy.modules=[...]")
        if not 0.0 < self.energy <= 1.0:
            raise ConfigError(f"anatomy.energy={self.energy}: a share in (0, 1]")
        if not 0.0 < self.intruder_threshold < 1.0:
            raise ConfigError(
                f"anatomy.intruder_threshold={self.intruder_threshold}: a cosine in (0, 1)"
            )
        if self.device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", self.device):
            raise ConfigError(f"anatomy.device={self.device!r}: auto, cpu, cuda or cuda:N")
        for key in ("intruder_top_k", "spectrum_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"anatomy.{key}={getattr(self, key)}: at least 1")


@dataclass
class StatsConfig:
    """The statistics of the report and of a sweep's parent run (`lorabench.analysis`)."""

    bootstrap_samples: int = 2000
    """Bootstrap draws per interval and p-value: 2000 keeps a 95% percentile bound and a
    p-value near 0.05 within about ±0.01 of their limits."""
    level: float = 0.95
    """Confidence level of every interval (the paper reports none; 95% is the convention)."""
    alpha: float = 0.05
    """Family-wise error rate of the Holm-corrected comparisons."""
    seed: int = 0
    """Seed of the bootstrap draws, so a report is reproducible."""
    pairs: list[str] = field(default_factory=list)
    """Comparisons to add to the paper's, as `run A vs run B` (run or replicate-group names)."""
    close_margin: float = 0.05
    """How far below incremental FT the LoRA row may score on math and code (0-1 scale) and
    still "come close" (the findings' non-inferiority margin). The paper gives no margin; its
    two rows are 0.026 apart there and 0.009 on average, so 0.05 is our choice."""


@dataclass
class ReportOptions:
    """`python -m lorabench.analysis`'s options (`conf/report.yaml`, key=value overrides)."""

    experiment: str = "lorabench"
    """MLflow experiment to read (`lorabench-demo` for the demo profile) or import into."""
    out: str | None = None
    """Output directory; default `reports/<experiment>` (`reports/paper` with paper=true)."""
    tracking_uri: str | None = None
    """The MLflow store; null: MLFLOW_TRACKING_URI, else the project's local store."""
    parent_run: str | None = None
    """Only the runs of this sweep (its parent run's id); the report is logged to that run."""
    log_to: str | None = None
    """Run id to log the report's files to as artifacts; null: the parent_run; `none`: no run."""
    paper: bool = False
    """Render the paper's own 8 rows alone (no MLflow needed)."""
    overlay: bool = True
    """Draw the paper's points on the figures."""
    paper_model: str | None = None
    """Compare runs with the paper's rows of this base model (`llama-7b`), or per base model
    (`'tiny:llama-7b,tiny-13b:llama-13b'`, quoted: the demo's stand-ins); null: identical names
    only."""
    include_paper: bool = False
    """Include the paper's reference runs imported into the experiment as rows."""
    import_paper: bool = False
    """Import the paper's 8 rows into the experiment as reference runs (tag source=paper)."""
    statistics: bool = True
    """Add the statistics sections (reads every run's judgements from MLflow)."""
    pairs: list[str] = field(default_factory=list)
    """Comparisons to add to the paper's: `['run A vs run B','run C vs run D']` (run or group
    names)."""

    def __post_init__(self) -> None:
        _check_pairs("pairs", self.pairs)


@dataclass
class Config:
    """The root configuration that `conf/config.yaml` composes."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    method: MethodConfig = MISSING
    hardware: HardwareConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = MISSING
    judge: JudgeConfig = MISSING
    sweep: SweepConfig = field(default_factory=SweepConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    anatomy: AnatomyConfig = field(default_factory=AnatomyConfig)
    pairwise: PairwiseConfig = field(default_factory=PairwiseConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    gpus: dict[str, GpuConfig] = field(default_factory=dict)
    """GPU types by name (`conf/gpus.yaml`), named by `hardware.gpu`."""
    prices: dict[str, PriceConfig] = field(default_factory=dict)
    """Judge models' prices by model name (`conf/prices.yaml`); a model without an entry has
    an unknown cost, never 0."""
    profile: str = "paper"
    run_name: str | None = None
    """null: named from the config (`lorabench.identity`): the presets' name, e.g.
    `llama-7b+lora(2m)`, plus every training axis that differs from them, `...[lr=0.0001]`."""
    cache_dir: str = ".cache/lorabench"
    pretrained_dir: str = "${oc.env:LORABENCH_PRETRAINED_DIR,${cache_dir}/pretrained}"
    """Where pretrained bases are kept, one directory per pretraining config (`model.pretrain`):
    LORABENCH_PRETRAINED_DIR when set (point several checkouts, or a test session, at one
    directory to pretrain once per machine), else under `cache_dir`."""
    dry_run: bool = False
    """train.py: build the model on the meta device, print parameter counts, and exit.
    evaluate.py: print the judge calls and tokens an evaluation would spend, and exit."""
    base_run: str | None = None
    """Start from this run's result (id or name), e.g. `llama-7b+ft(2m)` for incremental tuning."""
    run: str | None = None
    """evaluate.py: the MLflow run (id or name) whose model to evaluate and log into."""
    model_path: str | None = None
    """evaluate.py: a model or LoRA adapter directory to evaluate (logged to a run of its own)."""
    optimized_metric: str | None = EVAL_AVERAGE_SCORE
    """The finished run's metric train.py and sweep.py return to Hydra, for a sweeper that
    optimises it (`hydra/sweeper=optuna`); null: none (see conf/config.yaml)."""

    def __post_init__(self) -> None:
        _check_model(self.model)
        _check_method(self.method)
        _check_data(self.data)
        _check_hardware(self.hardware)
        _check_gpus(self.gpus, self.hardware)
        _check_prices(self.prices)
        self.deepspeed_config_path()  # existence check
        _check_training(self.training)
        _check_kernels(self)
        _check_eval(self.eval)
        _check_judge(self.judge)
        check_stats(self.stats)
        _check_plan(self.plan)
        _check_optimized_metric(self.optimized_metric, self.data)
        self.gradient_accumulation_steps()  # divisibility check
        if (
            self.training.save_steps is None
            and self.training.saves_per_epoch * self.method.epochs <= 1
        ):
            _fail(
                "training.saves_per_epoch",
                self.training.saves_per_epoch,
                f"with method.epochs={self.method.epochs} it must give more than one checkpoint "
                "in the run; set training.save_steps instead",
            )
        if self.hardware.device == "cpu" and self.precision == "fp16":
            raise ConfigError(
                "method.precision=fp16 cannot run on hardware.device=cpu; "
                "set hardware.precision=fp32 or bf16"
            )

    @property
    def precision(self) -> str:
        """Effective precision: the hardware's override, else the method's."""
        return self.hardware.precision or self.method.precision

    def gradient_accumulation_steps(self) -> int:
        """Derive accumulation from global batch = micro batch × world size × accumulation."""
        per_step = self.hardware.micro_batch_size * self.hardware.world_size
        if self.method.global_batch_size % per_step:
            raise ConfigError(
                f"method.global_batch_size={self.method.global_batch_size} is not divisible by "
                f"hardware.micro_batch_size × processes = {self.hardware.micro_batch_size} × "
                f"{self.hardware.world_size} = {per_step}"
            )
        return self.method.global_batch_size // per_step

    def deepspeed_config_path(self) -> Path | None:
        """The DeepSpeed JSON file named by `hardware.deepspeed`, or None."""
        name = self.hardware.deepspeed
        if name is None:
            return None
        candidate = Path(name)
        if candidate.suffix != ".json":
            candidate = CONF_DIR / "deepspeed" / f"{name}.json"
        if not candidate.is_file():
            raise ConfigError(f"hardware.deepspeed={name!r}: no such file {candidate}")
        return candidate


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"{key}={value!r}: {why}")


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(key, value, f"must be one of {', '.join(allowed)}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        _fail(key, value, "must be > 0")


def _non_negative(key: str, value: float) -> None:
    if value < 0:
        _fail(key, value, "must be >= 0")


def _check_model(m: ModelConfig) -> None:
    _one_of("model.tokenizer.kind", m.tokenizer.kind, TOKENIZER_KINDS)
    if m.pretrained is None and not m.architecture:
        _fail("model.pretrained", None, "give a Hub id or local path, or model.architecture")
    if m.pretrain is not None:
        _check_pretrain(m.pretrain)
    if m.tokenizer.kind == "pretrained" and not (m.tokenizer.name_or_path or m.pretrained):
        _fail("model.tokenizer.name_or_path", None, "a pretrained tokenizer needs a Hub id or path")
    _positive("model.tokenizer.vocab_size", m.tokenizer.vocab_size)
    _one_of("model.attn_implementation", m.attn_implementation, ATTN_IMPLEMENTATIONS)


def _check_kernels(cfg: Config) -> None:
    # What the kernels need of the run; whether this machine has them is the preflight's
    # (`lorabench.modeling.kernels`), so a plan or dry run works anywhere.
    attention, device = cfg.model.attn_implementation, cfg.hardware.device
    if attention == FLASH_ATTENTION and device != "cuda":
        _fail(
            "model.attn_implementation",
            attention,
            f"runs on CUDA GPUs only, not hardware.device={device}: use sdpa there",
        )
    if attention == FLASH_ATTENTION and cfg.precision not in HALF_PRECISIONS:
        _fail(
            "model.attn_implementation",
            attention,
            f"computes in fp16 or bf16 only, not {cfg.precision}: set hardware.precision=bf16, "
            "or model.attn_implementation=sdpa",
        )
    if cfg.training.liger_kernel and device != "cuda":
        _fail(
            "training.liger_kernel",
            True,
            f"Liger's Triton kernels run on CUDA GPUs only, not hardware.device={device}",
        )


def _check_pretrain(p: PretrainConfig) -> None:
    _positive("model.pretrain.documents", p.documents)
    _positive("model.pretrain.heldout_documents", p.heldout_documents)
    _positive("model.pretrain.block_size", p.block_size)
    _positive("model.pretrain.epochs", p.epochs)
    _positive("model.pretrain.batch_size", p.batch_size)
    _positive("model.pretrain.learning_rate", p.learning_rate)
    _one_of("model.pretrain.lr_scheduler", p.lr_scheduler, SCHEDULERS)
    if not 0 <= p.warmup_ratio < 1:
        _fail("model.pretrain.warmup_ratio", p.warmup_ratio, "must be in [0, 1)")
    _non_negative("model.pretrain.weight_decay", p.weight_decay)


def _check_method(m: MethodConfig) -> None:
    _positive("method.learning_rate", m.learning_rate)
    _positive("method.epochs", m.epochs)
    _positive("method.global_batch_size", m.global_batch_size)
    _positive("method.max_length", m.max_length)
    _non_negative("method.warmup_steps", m.warmup_steps)
    _non_negative("method.weight_decay", m.weight_decay)
    if not 0 <= m.warmup_ratio < 1:
        _fail("method.warmup_ratio", m.warmup_ratio, "must be in [0, 1)")
    if m.warmup_steps and m.warmup_ratio:
        _fail("method.warmup_ratio", m.warmup_ratio, "set warmup_steps or warmup_ratio, not both")
    _one_of("method.lr_scheduler", m.lr_scheduler, SCHEDULERS)
    _one_of("method.precision", m.precision, PRECISIONS)
    if m.lora is not None:
        _check_lora(m.lora)
    if m.quantization is not None:
        if m.lora is None:
            _fail(
                "method.quantization",
                asdict(m.quantization),
                "a 4-bit base cannot be fine-tuned in full (its weights are frozen integers); "
                "quantise only under LoRA (method=qlora), or set method.quantization=null",
            )
        _one_of("method.quantization.quant_type", m.quantization.quant_type, QUANT_TYPES)
        if m.lora.init.startswith("pissa"):
            _fail(
                "method.lora.init",
                m.lora.init,
                "PiSSA decomposes full-precision weights, and peft cannot initialise it on a "
                "4-bit base; set method.quantization=null, or method.lora.init=default",
            )
    if (usual := m.usual_learning_rates) is not None:
        _positive("method.usual_learning_rates.low", usual.low)
        if not usual.high > usual.low:
            _fail("method.usual_learning_rates.high", usual.high, f"must be > low={usual.low}")


def _check_lora(lora: LoraConfig) -> None:
    _positive("method.lora.r", lora.r)
    _positive("method.lora.alpha", lora.alpha)
    if not 0 <= lora.dropout < 1:
        _fail("method.lora.dropout", lora.dropout, "must be in [0, 1)")
    _one_of("method.lora.bias", lora.bias, LORA_BIASES)
    if lora.targets is not None:
        _one_of("method.lora.targets", lora.targets, LORA_TARGETS)
        if lora.target_modules:
            _fail(
                "method.lora.target_modules",
                lora.target_modules,
                f"set either a preset (method.lora.targets={lora.targets}) or explicit modules, "
                "not both: add method.lora.targets=null to use these modules",
            )
    elif not lora.target_modules:
        _fail("method.lora.target_modules", [], "name at least one module, or set targets")
    if lora.init not in LORA_INITS and not PISSA_NITER.match(lora.init):
        _fail(
            "method.lora.init",
            lora.init,
            f"must be one of {', '.join(LORA_INITS)}, pissa_niter_<N>",
        )
    if lora.loraplus_lr_ratio is not None and lora.loraplus_lr_ratio < 1:
        _fail(
            "method.lora.loraplus_lr_ratio",
            lora.loraplus_lr_ratio,
            "must be >= 1 (B learns faster than A), or null for plain LoRA",
        )


def _check_data(d: DataConfig) -> None:
    if d.num_samples is not None:
        _positive("data.num_samples", d.num_samples)
    if d.nominal_samples is not None:
        _positive("data.nominal_samples", d.nominal_samples)
    _one_of("data.domain", d.domain, DATA_DOMAINS)
    if d.demo_fraction is not None:
        if not 0 < d.demo_fraction <= 1:
            _fail("data.demo_fraction", d.demo_fraction, "must be in (0, 1]")
        if d.num_samples is None and d.nominal_samples is None:
            _fail("data.nominal_samples", None, "needed to size the demo corpus (num_samples=null)")
    if d.demo_fraction is None and not d.sources:
        _fail("data.sources", [], "name at least one source (or use profile=demo)")
    if not 0 <= d.max_bad_fraction <= 1:
        _fail("data.max_bad_fraction", d.max_bad_fraction, "must be in [0, 1]")
    _one_of("data.batching", d.batching, BATCHING_MODES)
    if d.num_proc is not None:
        _positive("data.num_proc", d.num_proc)
    if not 0 <= d.dev_fraction < 1:
        _fail("data.dev_fraction", d.dev_fraction, "must be in [0, 1)")
    for i, source in enumerate(d.sources):
        # Only when the sources are used: the demo profile keeps the preset's sources unread.
        _check_source(f"data.sources[{i}]", source, used=d.demo_fraction is None)


def _check_source(key: str, s: DataSourceConfig, used: bool) -> None:
    if (s.hub is None) == (s.path is None):
        _fail(key, {"hub": s.hub, "path": s.path}, "set exactly one of hub and path")
    _one_of(f"{key}.format", s.format, DATA_FORMATS)
    if s.path is not None and used and not Path(s.path).is_file():
        _fail(f"{key}.path", s.path, "no such file")


def _check_hardware(h: HardwareConfig) -> None:
    _one_of("hardware.device", h.device, DEVICES)
    _one_of("hardware.launcher", h.launcher, LAUNCHERS)
    _positive("hardware.num_processes", h.num_processes)
    _positive("hardware.num_nodes", h.num_nodes)
    _positive("hardware.micro_batch_size", h.micro_batch_size)
    _non_negative("hardware.dataloader_num_workers", h.dataloader_num_workers)
    if h.cpu_threads is not None:
        _positive("hardware.cpu_threads", h.cpu_threads)
    if h.precision is not None:
        _one_of("hardware.precision", h.precision, PRECISIONS)
    if h.launcher == "python" and (h.world_size > 1 or h.deepspeed is not None):
        _fail(
            "hardware.launcher",
            h.launcher,
            "plain python starts one process without DeepSpeed; use torchrun or deepspeed",
        )
    if h.num_nodes > 1 and h.launcher != "torchrun":
        _fail(
            "hardware.launcher",
            h.launcher,
            f"hardware.num_nodes={h.num_nodes}: the nodes meet in torchrun's c10d rendezvous; "
            "set hardware.launcher=torchrun",
        )
    if not 0 < h.rendezvous_port <= 65535:
        _fail("hardware.rendezvous_port", h.rendezvous_port, "must be a TCP port (1-65535)")
    _positive("hardware.rendezvous_timeout", h.rendezvous_timeout)
    _positive("hardware.shared_path_timeout", h.shared_path_timeout)


def _check_prices(prices: dict[str, PriceConfig]) -> None:
    for model, price in prices.items():
        key = f"prices.{model}"
        _non_negative(f"{key}.input", price.input)
        _non_negative(f"{key}.output", price.output)
        if not 0.0 <= price.batch_discount < 1.0:
            _fail(f"{key}.batch_discount", price.batch_discount, "must be in [0, 1)")
        try:
            date.fromisoformat(str(price.read_on))
        except ValueError:
            _fail(f"{key}.read_on", price.read_on, "must be a date, YYYY-MM-DD")


def _check_gpus(gpus: dict[str, GpuConfig], h: HardwareConfig) -> None:
    for name, gpu in gpus.items():
        _positive(f"gpus.{name}.memory_gib", gpu.memory_gib)
        for precision, tflops in gpu.peak_tflops.items():
            _one_of(f"gpus.{name}.peak_tflops key", precision, PRECISIONS)
            _positive(f"gpus.{name}.peak_tflops.{precision}", tflops)
    if h.gpu is None:
        return
    if h.device == "cpu":
        _fail("hardware.gpu", h.gpu, "names a GPU type but hardware.device=cpu; set it to null")
    if h.gpu not in gpus:
        known = ", ".join(sorted(gpus)) or "none"
        _fail("hardware.gpu", h.gpu, f"unknown GPU type; known: {known} (conf/gpus.yaml)")


def _check_training(t: TrainingConfig) -> None:
    _positive("training.logging_steps", t.logging_steps)
    if t.save_steps is not None:
        _positive("training.save_steps", t.save_steps)
    _positive("training.saves_per_epoch", t.saves_per_epoch)
    _positive("training.save_total_limit", t.save_total_limit)
    if t.max_steps == 0 or t.max_steps < -1:
        _fail("training.max_steps", t.max_steps, "must be -1 (use epochs) or > 0")


def _check_eval(e: EvalConfig) -> None:
    if e.path is None and e.url is None and e.demo_per_class <= 0:
        _fail("eval.path", None, "give a local eval set, a url, or demo_per_class > 0")
    _positive("eval.batch_size", e.batch_size)
    if e.limit is not None:
        _positive("eval.limit", e.limit)
    d = e.decoding
    _positive("eval.decoding.temperature", d.temperature)
    _positive("eval.decoding.max_new_tokens", d.max_new_tokens)
    _positive("eval.decoding.repetition_penalty", d.repetition_penalty)
    if not 0 < d.top_p <= 1:
        _fail("eval.decoding.top_p", d.top_p, "must be in (0, 1]")
    _one_of("eval.backend", e.backend, EVAL_BACKENDS)
    if e.backend == "server" and not e.server.url:
        _fail("eval.server.url", e.server.url, "eval.backend=server needs the server's base URL")
    _positive("eval.server.concurrency", e.server.concurrency)
    _non_negative("eval.server.max_retries", e.server.max_retries)
    _positive("eval.server.timeout", e.server.timeout)
    _positive("eval.vllm.startup_timeout", e.vllm.startup_timeout)
    if not 0 <= e.vllm.port <= 65535:
        _fail("eval.vllm.port", e.vllm.port, "must be 0 (any free port) or a TCP port")
    _check_benchmarks(e)


def _check_benchmarks(e: EvalConfig) -> None:
    # Names are checked against lm-eval's tasks, and each given a role, before any compute
    # (`lorabench.benchmarks.check_benchmarks`: it reads lm-eval's task index).
    if len(set(e.benchmarks)) < len(e.benchmarks):
        _fail("eval.benchmarks", e.benchmarks, "lists a task twice")
    for task, role in e.benchmark_roles.items():
        _one_of(f"eval.benchmark_roles.{task}", role, BENCH_ROLES)
    lm = e.lm_eval
    _positive("eval.lm_eval.batch_size", lm.batch_size)
    if lm.max_length is not None:
        _positive("eval.lm_eval.max_length", lm.max_length)
    _non_negative("eval.lm_eval.bootstrap_iters", lm.bootstrap_iters)
    if lm.num_fewshot is not None:
        _non_negative("eval.lm_eval.num_fewshot", lm.num_fewshot)
    for i, path in enumerate(lm.include):
        if not Path(path).is_dir():
            _fail(f"eval.lm_eval.include[{i}]", path, "no such directory")
    panel = e.demo_panel
    _positive("eval.demo_panel.retention_rounds", panel.retention_rounds)
    if panel.retention_choices < 2:
        _fail("eval.demo_panel.retention_choices", panel.retention_choices, "must be >= 2")
    _positive("eval.demo_panel.math_items", panel.math_items)


def _check_judge(j: JudgeConfig) -> None:
    # The judges (`lorabench.judging`) take these values as checked here.
    _one_of("judge.name", j.name, JUDGES)
    if j.name == "reference":
        _one_of("judge.model", j.model, REFERENCE_METRICS)
    else:
        if not j.model:
            _fail("judge.model", j.model, "must name a model as the judge's server knows it")
        _check_judge_prompts(j.prompts)
    _positive("judge.concurrency", j.concurrency)
    _non_negative("judge.max_retries", j.max_retries)
    _positive("judge.timeout", j.timeout)
    for key, budget in (
        ("judge.requests_per_minute", j.requests_per_minute),
        ("judge.tokens_per_minute", j.tokens_per_minute),
    ):
        if budget is not None and not budget > 0:
            _fail(key, budget, "must be > 0 or null")
    _non_negative("judge.temperature", j.temperature)
    if j.max_tokens is not None and j.max_tokens < 1:
        _fail("judge.max_tokens", j.max_tokens, "must be >= 1 or null")
    _one_of("judge.belle_translation", j.belle_translation, BELLE_TRANSLATIONS)
    _positive("judge.repeats", j.repeats)
    if j.batch and j.name != "openai":
        _fail("judge.batch", j.batch, f"only an LLM judge (judge=openai) batches, not {j.name}")
    _positive("judge.batch_poll_seconds", j.batch_poll_seconds)


def _check_judge_prompts(prompts: str) -> None:
    # Only the LLM judge reads prompts, so only its config must name usable ones.
    if prompts not in JUDGE_PROMPT_SETS and not Path(prompts).expanduser().is_file():
        _fail(
            "judge.prompts",
            prompts,
            "not project, belle or an existing file; give the path of a local copy of BELLE's "
            "file (judge.prompts=/path/to/eval_prompt.json)",
        )


def check_stats(s: StatsConfig) -> None:
    """The `stats` section's values are usable (also for the report's own arguments)."""
    if s.bootstrap_samples < 100:
        _fail("stats.bootstrap_samples", s.bootstrap_samples, "must be >= 100")
    if not 0 < s.level < 1:
        _fail("stats.level", s.level, "must be in (0, 1)")
    if not 0 < s.alpha < 1:
        _fail("stats.alpha", s.alpha, "must be in (0, 1)")
    _check_pairs("stats.pairs", s.pairs)


def _check_pairs(key: str, pairs: list[str]) -> None:
    for pair in pairs:
        if len(pair.split(" vs ")) != 2:
            _fail(key, pair, "each pair must read `run A vs run B`")


def _check_optimized_metric(metric: str | None, data: DataConfig) -> None:
    if metric is None:
        return
    if not METRIC_NAME.match(metric):
        _fail("optimized_metric", metric, "must be an MLflow metric name, e.g. eval/average_score")
    if metric == DEV_LOSS and not data.dev_fraction > 0:
        _fail(
            "optimized_metric",
            metric,
            "is logged only with a development split: set data.dev_fraction (e.g. 0.05)",
        )


def _check_plan(p: PlanConfig) -> None:
    _positive("plan.mean_tokens_per_sample", p.mean_tokens_per_sample)
    _positive("plan.benchmark_tokens_per_item", p.benchmark_tokens_per_item)
    if not 0 < p.benchmark_mfu <= 1:
        _fail("plan.benchmark_mfu", p.benchmark_mfu, "must be in (0, 1]")
    for task, items in p.benchmark_items.items():
        _positive(f"plan.benchmark_items.{task}", items)
    if not 0 < p.grouped_nonpad_share <= 1:
        _fail("plan.grouped_nonpad_share", p.grouped_nonpad_share, "must be in (0, 1]")
    for method, shares in p.mfu.items():
        for precision, share in shares.items():
            _one_of(f"plan.mfu.{method} key", precision, PRECISIONS)
            if not 0 < share <= 1:
                _fail(f"plan.mfu.{method}.{precision}", share, "must be in (0, 1]")
    for attention, speedup in p.attention_speedup.items():
        _one_of("plan.attention_speedup key", attention, ATTN_IMPLEMENTATIONS)
        _positive(f"plan.attention_speedup.{attention}", speedup)
    if p.liger_speedup is not None:
        _positive("plan.liger_speedup", p.liger_speedup)
    _non_negative("plan.memory_overhead_gib", p.memory_overhead_gib)
    _non_negative("plan.fragmentation", p.fragmentation)
    _positive("plan.internode_gbit_per_s", p.internode_gbit_per_s)
