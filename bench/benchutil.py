"""What the benchmarks share: their `--smoke` option, and the demo's tiny base as training loads
it. Imported by the scripts in this directory (run as `python bench/NAME.py`, which puts this
directory first on the module path)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lorabench.config import Config, compose, validate
from lorabench.demo.pretraining import resolved_model
from lorabench.launching.topology import set_cpu_threads
from lorabench.modeling.base import build_model, build_tokenizer


def parse_with_smoke(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, smoke: dict[str, object]
) -> argparse.Namespace:
    """Parse `argv` with `parser` plus a `--smoke` option that replaces the defaults named in
    `smoke` (argparse dests) by tiny ones: the benchmark runs quickly and prints the same
    figure names, which checks that it works, not how fast anything is. Options given
    explicitly still win."""
    sizes = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in smoke.items())
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a quick check that it runs, with the same output lines (their values mean "
        f"nothing): {sizes} unless given",
    )
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**smoke)
    return parser.parse_args(argv)


def demo_config(cache_dir: Path) -> Config:
    """The demo config (`profile=demo`) with its caches under `cache_dir` and no tracking."""
    return validate(compose(["profile=demo", f"cache_dir={cache_dir}", "tracking.enabled=false"]))


def demo_base(cfg: Config) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """The tokenizer of `cfg` and its tiny base with the pretrained weights training starts from
    (`resolved_model`): pretrained into `cfg.cache_dir` first (about 1.5 min on a 2-core CPU,
    before anything is timed) unless LORABENCH_PRETRAINED_DIR holds it already."""
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    threads = torch.get_num_threads()
    set_cpu_threads(cfg.hardware)  # a pretraining runs as the CLI's: far faster on a busy CPU
    try:
        model_cfg = resolved_model(cfg)
    finally:
        torch.set_num_threads(threads)  # the caller's, for what it measures
    return tokenizer, build_model(model_cfg, tokenizer, seed=0)
