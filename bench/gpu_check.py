"""GPU check: tokens/s per GPU and MFU of LoRA and full fine-tuning of a ~1B LLaMA-architecture
model, and answers/s of generation, on one GPU, the way the project trains and generates.

    python bench/gpu_check.py [--gpu h200-141gb] [--micro-batch 4] [--warmup 2] [--steps 3]
        [--items 32] [--new-tokens 128] [--smoke]

Run it on a GPU machine from the repository root, in the project's environment (flash-attn,
liger-kernel and vLLM are optional: each is measured when present). Nothing is downloaded and
nothing is kept: the model is TinyLlama-1.1B's shape (hidden 2,048, 22 layers, 32 heads with 4
key-value heads, MLP 5,632, vocabulary 32,000) built from its config with random weights; the
tokenizer is the demo's own (made locally in a second); every file goes to a temporary
directory, removed at the end. Sized for 8 minutes on one H200, from a run there (2026-12-04)
with 3 warm-up and 5 timed steps and 64 answers of 256 tokens: its six training measurements
(a LoRA step of 128 sequences took about 5 s, an FT step of 32 about 1 s) took most of 7
minutes, and HF generation of 64 × 256 tokens in batches of 8 did not finish in the 2.5 minutes
left to it; the defaults now time 3 steps after 2 and generate 32 × 128 tokens (a quarter of
the decoding steps), which was not run on a GPU again. vLLM adds up to two minutes to start.

Training, for `method=lora` and `method=ft` (the paper's presets: LoRA r=8 on q, k, v and the
MLP; their global batches, 128 and 32 sequences an optimiser step) at 1,024 tokens a sequence,
bf16, without activation checkpointing, once per kernel option: `model.attn_implementation`
`sdpa` and `eager`, then `flash_attention_2` and `training.liger_kernel=true` (with sdpa) where
the config accepts them and their packages are installed (train.py's own validation and
preflight, `lorabench.modeling.kernels`); their tokens/s over sdpa's are what
`plan.attention_speedup` and `plan.liger_speedup` assume. The model is built as `train.py`
builds it (`build_model` with the run's attention implementation, the method's load dtype and
`wrap`, `count_parameters`) and trained by the HF
Trainer with the project's TrainingArguments (`training_arguments`) and optimiser
(`Method.optimizer`) on random full-length sequences (no padding), `--warmup` optimiser steps,
then `--steps` timed ones (the GPU synchronised at both ends; no checkpoint written). The MFU is
the one runs log (`train/mfu`): the plan's FLOPs per position (`planning.flops_per_position`:
the method's FLOPs per token and parameter × all parameters) × tokens/s ÷ the GPU's peak at the
precision (`conf/gpus.yaml`, `--gpu`).

Generation: the same model (bf16, sdpa) answers `--items` demo eval questions with the paper's
decoding, at most `--new-tokens` new tokens each, through the HF backend (`generate_answers`,
`eval.batch_size` a batch) and, when the `vllm` command is there, through `eval.backend=vllm`'s
own server (`launched_vllm`, `ServerGenerator`). The random head's rows of ids the stand-in
tokenizer lacks are zeroed, so no answer holds an id it cannot decode (the matmul keeps its
32,000 rows).

Prints `name=value` lines: the settings (`device=`, `gpu=`, `peak_tflops=`, `precision=`,
`seq_len=`, `micro_batch=`, `warmup_steps=`, `measured_steps=`), per method `<method>_params=`
(all parameters, as the MFU counts them), per method and kernel option
`<method>_<attention>[_liger]_tokens_per_second_per_gpu=`, `_mfu=`, `_step_seconds=` and
`_peak_memory_gb=` (or `_error=`), `flash_attention_2_skipped=<reason>` and
`liger_kernel_skipped=<reason>` where an option cannot run (the config's or the preflight's
message),
`hf_items=`, `hf_new_tokens=`, `hf_seconds=`, `hf_answers_per_second=`, then
`vllm_startup_seconds=`, `vllm_seconds=`, `vllm_answers_per_second=` or `vllm_skipped=<reason>`,
and `total_seconds=`. A measurement that fails prints its error and the others still run; the
exit status is then 1. Measured on one H200 (989 dense bf16 TFLOP/s; torch 2.11, liger-kernel
0.8.5, no flash-attn or vLLM): sdpa FT 37,011 tokens/s at an MFU of 0.247, LoRA 26,984 at 0.121
(fewer tokens/s than FT: at this size the adapters' small matmuls and dropout copies cost more
than the frozen weights' gradients save); eager 0.65× (FT) and 0.78× (LoRA) of sdpa; Liger
0.82× (FT) and 0.71× (LoRA) of sdpa at 12% and 23% less peak memory.

`--smoke` runs it in seconds on a CPU (a tiny model of the same architecture, short sequences,
two steps; the same lines, whose values mean nothing: the MFU is against `--gpu`'s peak).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the project, also where it is not installed

import torch  # noqa: E402
import transformers  # noqa: E402
from benchutil import parse_with_smoke  # noqa: E402
from transformers import Trainer, TrainerCallback, default_data_collator  # noqa: E402

from lorabench.config import Config, compose, validate  # noqa: E402
from lorabench.config.schema import (  # noqa: E402
    FLASH_ATTENTION,
    DecodingConfig,
    ServerConfig,
    VllmConfig,
)
from lorabench.demo.corpus import generate_eval_set  # noqa: E402
from lorabench.errors import ConfigError  # noqa: E402
from lorabench.evaluation.generation import generate_answers  # noqa: E402
from lorabench.evaluation.server_generation import ServerGenerator  # noqa: E402
from lorabench.evaluation.targets import Target  # noqa: E402
from lorabench.evaluation.vllm_launcher import launched_vllm, vllm_executable  # noqa: E402
from lorabench.methods import method_for  # noqa: E402
from lorabench.modeling.base import (  # noqa: E402
    DTYPES,
    build_model,
    build_tokenizer,
    count_parameters,
)
from lorabench.modeling.kernels import kernel_problems  # noqa: E402
from lorabench.modeling.trained import ModelSpec  # noqa: E402
from lorabench.planning import Utilisation, flops_per_position, peak_flops  # noqa: E402
from lorabench.training import training_arguments  # noqa: E402
from lorabench.training.arguments import peak_memory_gb  # noqa: E402
from lorabench.training.callbacks import use_stage_progress  # noqa: E402

TINYLLAMA = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
"""TinyLlama-1.1B's architecture (its config.json's shape): 1.1B parameters."""
SMOKE_ARCHITECTURE = {
    **TINYLLAMA,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 2048,
}
ARCHITECTURES = {"tinyllama": TINYLLAMA, "smoke": SMOKE_ARCHITECTURE}
NO_SAVE = 1_000_000
"""`training.save_steps` past the check's steps (its final save is cancelled too)."""
METHODS = ("lora", "ft")
KERNEL_OPTIONS = (("sdpa", False), ("eager", False), (FLASH_ATTENTION, False), ("sdpa", True))
"""(`model.attn_implementation`, `training.liger_kernel`) pairs measured where they can run."""
SERVED_NAME = "gpu-check"
SMOKE = {
    "architecture": "smoke",
    "seq_len": 32,
    "micro_batch": 2,
    "global_batch": 2,
    "warmup": 1,
    "steps": 2,
    "items": 2,
    "new_tokens": 4,
}

log = logging.getLogger("gpu_check")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="h200-141gb", help="the GPU type in conf/gpus.yaml")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--architecture", default="tinyllama", choices=sorted(ARCHITECTURES))
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=4, help="sequences a forward pass")
    parser.add_argument(
        "--global-batch",
        type=int,
        default=None,
        help="sequences an optimiser step (default: "
        "the method preset's, 128 for LoRA and 32 for FT)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="optimiser steps not timed")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps timed")
    parser.add_argument("--items", type=int, default=32, help="questions to answer")
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parse_with_smoke(parser, argv, SMOKE)
    sizes = (args.seq_len, args.micro_batch, args.warmup, args.steps, args.items, args.new_tokens)
    if min(sizes) < 1:
        # A warm-up step at least: the timing starts at the end of the last one.
        parser.error("sizes and counts (--warmup included) must be >= 1")
    args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    return args


def compose_config(
    args: argparse.Namespace,
    method: str,
    workdir: Path,
    attention: str = "sdpa",
    liger: bool = False,
) -> Config:
    """The project's config of one training measurement: the method preset on one GPU (or the
    CPU in smoke mode) with the kernel option (`attention`, `liger`), the check's model, sizes
    and steps, no tracking and no saving (ConfigError where the option cannot run)."""
    hardware = [
        "hardware=gpu8",
        "hardware.num_processes=1",
        "hardware.deepspeed=null",
        f"hardware.gpu={args.gpu}",
        f"hardware.precision={args.precision}",
    ]
    if args.device == "cpu":  # no GPU type on CPU hardware; fp32, which every CPU runs
        hardware = ["hardware=cpu", "hardware.precision=fp32"]
    overrides = [
        *hardware,
        "model=tiny",  # for its tokenizer, made locally; the architecture is replaced below
        f"model.attn_implementation={attention}",
        f"training.liger_kernel={str(liger).lower()}",
        f"method={method}",
        "hardware.activation_checkpointing=false",
        f"hardware.micro_batch_size={args.micro_batch}",
        "hardware.dataloader_num_workers=0",
        f"method.max_length={args.seq_len}",
        "data.batching=padded",  # random full-length rows: nothing to group
        f"training.max_steps={args.warmup + args.steps}",
        f"training.save_steps={NO_SAVE}",
        f"training.logging_steps={NO_SAVE}",  # no per-step loss read back (a GPU sync)
        f"training.output_dir={workdir / method}",
        "training.progress_bar=false",
        "tracking.enabled=false",
        f"cache_dir={workdir / 'cache'}",
    ]
    if args.global_batch is not None:
        overrides.append(f"method.global_batch_size={args.global_batch}")
    cfg = validate(compose(overrides))
    # Random weights of the check's architecture (its own vocabulary size), not pretrained.
    model = replace(
        cfg.model,
        name=f"{args.architecture}-shape",
        pretrain=None,
        architecture=dict(ARCHITECTURES[args.architecture]),
    )
    return replace(cfg, model=model)


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (a timing edge); nothing on a CPU."""
    if device == "cuda":
        torch.cuda.synchronize()


class RandomSequences(torch.utils.data.Dataset):
    """Full-length rows of random token ids (no padding: every position is a token)."""

    def __init__(self, rows: int, length: int, vocab: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (rows, length), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


class StepTimer(TrainerCallback):
    """Times the optimiser steps after the warm-up ones, and cancels every checkpoint save."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        control.should_save = False  # runs after the Trainer's flow callback, which set it
        if state.global_step in (self.warmup, state.max_steps):
            synchronize(self.device)
            self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

    def tokens_per_second(self) -> tuple[float, float]:
        """(tokens per second, seconds) over the timed steps."""
        (start, tokens0), (end, tokens1) = self.marks[0], self.marks[-1]
        return (tokens1 - tokens0) / (end - start), end - start


def trained_model(cfg: Config, device: str) -> tuple[torch.nn.Module, int]:
    """The model as training builds it (the method's load dtype, wrapped), on `device`; and
    all its parameters, as the MFU counts them."""
    method = method_for(cfg.method)
    model = build_model(
        cfg.model,
        None,
        dtype=method.load_dtype(DTYPES[cfg.precision], False),
        attn_implementation=cfg.model.attn_implementation,
    )
    method.check(model)
    torch.manual_seed(cfg.training.seed)
    model = method.wrap(model.to(device))
    return model, count_parameters(model, method).total


def measure_training(cfg: Config, args: argparse.Namespace, prefix: str) -> int:
    """Train `--warmup` then `--steps` optimiser steps; print the throughput lines under
    `prefix`; returns the model's parameters."""
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model, params = trained_model(cfg, args.device)
    train_args = training_arguments(cfg)
    timer = StepTimer(args.warmup, args.device)
    rows = cfg.method.global_batch_size * (args.warmup + args.steps)
    trainer = Trainer(
        model=model,
        args=train_args,
        train_dataset=RandomSequences(rows, args.seq_len, cfg.model.architecture["vocab_size"]),
        data_collator=default_data_collator,
        callbacks=[timer],
        optimizers=(method_for(cfg.method).optimizer(model, train_args), None),
    )
    use_stage_progress(trainer, prefix, enabled=False)
    trainer.train()
    tokens_per_second, seconds = timer.tokens_per_second()
    gpu = cfg.gpus[args.gpu]
    mfu = Utilisation(flops_per_position(cfg, params), peak_flops(gpu, cfg.precision))
    print(f"{prefix}_tokens_per_second_per_gpu={tokens_per_second:.0f}")
    # Against a GPU's peak, a CPU's throughput is no utilisation: absent, as in runs (train/mfu).
    shown = "absent (cpu)" if args.device == "cpu" else f"{mfu.mfu(tokens_per_second):.3f}"
    print(f"{prefix}_mfu={shown}")
    print(f"{prefix}_step_seconds={seconds / args.steps:.3f}")
    print(f"{prefix}_peak_memory_gb={peak_memory_gb(args.device):.1f}", flush=True)
    del trainer, model
    return params


def kernel_options(args: argparse.Namespace, workdir: Path) -> list[tuple[str, bool]]:
    """The kernel options to measure: those the config accepts here and whose packages are
    installed (what train.py's validation and preflight check); prints why any other is
    skipped."""
    found = []
    for attention, liger in KERNEL_OPTIONS:
        try:
            problems = kernel_problems(compose_config(args, "ft", workdir, attention, liger))
        except ConfigError as err:
            problems = [str(err)]
        if problems:
            print(f"{'liger_kernel' if liger else attention}_skipped={'; '.join(problems)}")
        else:
            found.append((attention, liger))
    return found


def free_memory() -> None:
    """Release what the last measurement left on the GPU."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def guarded(prefix: str, errors: list[str], fn: Callable[[], object]) -> object | None:
    """`fn()`, or, when it fails, a `<prefix>_error=` line (the check goes on) and None."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - one failed measurement must not hide the others
        message = str(err).splitlines()[0] if str(err) else ""
        print(f"{prefix}_error={type(err).__name__}: {message}", flush=True)
        log.exception("%s failed", prefix)
        errors.append(prefix)
        return None
    finally:
        free_memory()


def training_checks(args: argparse.Namespace, workdir: Path, errors: list[str]) -> None:
    """Both methods under every kernel option that can run here."""
    for attention, liger in kernel_options(args, workdir):
        for method in METHODS:
            cfg = compose_config(args, method, workdir, attention, liger)
            prefix = f"{method}_{attention}{'_liger' if liger else ''}"
            params = guarded(
                prefix, errors, lambda cfg=cfg, p=prefix: measure_training(cfg, args, p)
            )
            if params is not None and (attention, liger) == KERNEL_OPTIONS[0]:
                print(f"{method}_params={params}", flush=True)


def generation_model(cfg: Config, device: str, vocab_used: int) -> torch.nn.Module:
    """The check's model for generation (the run's precision, sdpa) on `device`, its head's
    rows past `vocab_used` zeroed: a random model then never picks an id the stand-in
    tokenizer lacks (the matmul keeps every row)."""
    model = build_model(
        cfg.model, None, dtype=DTYPES[cfg.precision], attn_implementation="sdpa"
    ).to(device)
    with torch.no_grad():
        model.get_output_embeddings().weight[vocab_used:] = 0
    return model.eval()


def measure_hf(model, tokenizer, questions: list[str], decoding, batch_size: int) -> None:
    """Answers/s of the HF backend (`generate_answers`), after a short untimed batch."""
    warmup = replace(decoding, max_new_tokens=min(2, decoding.max_new_tokens))
    list(generate_answers(model, tokenizer, questions[:batch_size], warmup, progress=False))
    synchronize(model.device.type)
    start = time.perf_counter()
    answers = list(
        generate_answers(
            model, tokenizer, questions, decoding, batch_size=batch_size, progress=False
        )
    )
    synchronize(model.device.type)
    seconds = time.perf_counter() - start
    print(f"hf_items={len(answers)}")
    print(f"hf_new_tokens={decoding.max_new_tokens}")
    print(f"hf_batch_size={batch_size}")
    print(f"hf_seconds={seconds:.1f}")
    print(f"hf_answers_per_second={len(answers) / seconds:.2f}", flush=True)


def vllm_skipped(device: str) -> str | None:
    """Why vLLM is not measured here (None: it is)."""
    if device != "cuda":
        return f"needs a CUDA GPU (device {device})"
    try:
        vllm_executable(VllmConfig())
    except ConfigError:
        return "no vllm command (pip install vllm, or put its environment's bin on PATH)"
    return None


def measure_vllm(cfg: Config, model_dir: Path, tokenizer, questions, decoding, workdir) -> None:
    """Answers/s through `eval.backend=vllm`'s server (started by the project's launcher,
    asked by its ServerGenerator) serving the saved check model."""
    target = Target(SERVED_NAME, ModelSpec(base=cfg.model, saved=model_dir), None, workdir / "eval")
    # Half the GPU: this process keeps its CUDA context; a timeout that fits the check's budget.
    vllm = VllmConfig(startup_timeout=240, extra_args=["--gpu-memory-utilization", "0.5"])
    start = time.perf_counter()
    with launched_vllm(vllm, target, SERVED_NAME, workdir / "vllm.log") as url:
        print(f"vllm_startup_seconds={time.perf_counter() - start:.1f}", flush=True)
        server = ServerConfig(url=url)
        generator = ServerGenerator(server, url, SERVED_NAME, tokenizer, decoding, seed=42)
        generator.preflight()
        start = time.perf_counter()
        answers = list(generator.generate(questions, progress=False))
        seconds = time.perf_counter() - start
    print(f"vllm_seconds={seconds:.1f}")
    print(f"vllm_answers_per_second={len(answers) / seconds:.2f}", flush=True)


def generation_checks(args: argparse.Namespace, workdir: Path, errors: list[str]) -> None:
    """HF generation, then vLLM's (or why it is skipped), on the same model and questions."""
    cfg = compose_config(args, "ft", workdir)
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)  # the demo's, made in a second
    rows = generate_eval_set(-(-args.items // 10), seed=0)[: args.items]
    questions = [row["question"] for row in rows]
    decoding = DecodingConfig(max_new_tokens=args.new_tokens)
    skipped = vllm_skipped(args.device)
    model_dir = workdir / "served"

    def hf() -> None:
        model = generation_model(cfg, args.device, len(tokenizer))
        measure_hf(model, tokenizer, questions, decoding, cfg.eval.batch_size)
        if skipped is None:  # the server loads the same weights
            model.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)

    guarded("hf", errors, hf)
    if skipped is not None:
        print(f"vllm_skipped={skipped}", flush=True)
    elif model_dir.is_dir():
        guarded(
            "vllm",
            errors,
            lambda: measure_vllm(cfg, model_dir, tokenizer, questions, decoding, workdir),
        )


def quiet_libraries() -> None:
    """Keep the libraries' progress bars and info logs out of the figures."""
    transformers.logging.set_verbosity_error()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A temporary directory for everything the check writes, removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="lorabench-gpu-check-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def print_settings(args: argparse.Namespace, cfg: Config) -> None:
    """The lines that say what was measured where."""
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"device={name.replace(' ', '_')}")
    print(f"gpu={args.gpu}")
    print(f"peak_tflops={cfg.gpus[args.gpu].peak_tflops.get(cfg.precision)}")
    print(f"precision={cfg.precision}")
    print(f"architecture={args.architecture}")
    print(f"seq_len={args.seq_len}")
    print(f"micro_batch={args.micro_batch}")
    print(f"warmup_steps={args.warmup}")
    print(f"measured_steps={args.steps}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    start, errors = time.perf_counter(), []
    with workdir() as folder:
        cfg = compose_config(args, "ft", folder)
        if args.gpu not in cfg.gpus:
            raise SystemExit(f"--gpu {args.gpu}: not in conf/gpus.yaml ({', '.join(cfg.gpus)})")
        print_settings(args, cfg)
        # Generation first: Liger (`training.liger_kernel`) patches transformers' LLaMA code for
        # the rest of the process, so a model built after it would not generate as `eval` does.
        generation_checks(args, folder, errors)
        training_checks(args, folder, errors)
    print(f"total_seconds={time.perf_counter() - start:.0f}")
    if errors:
        print(f"failed={','.join(errors)}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
