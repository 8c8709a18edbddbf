"""Prepare (and cache) a training set from the command line:

    python -m lorabench.data prepare data=2m
    python -m lorabench.data prepare profile=demo data=4m cache_dir=/scratch/cache

Takes any Hydra overrides of train.py's config, prepares the set exactly as training will (same
cache key, so a later `train.py` with the same overrides loads it), then prints `name=value`
lines: rows read, valid, skipped by reason, kept, tokens, mean and 95th-percentile length, the
non-pad token share of the configured batching, and the cache path.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lorabench.config import compose, validate
from lorabench.data.batching import configured_nonpad_share
from lorabench.data.preparation import prepare_train_data
from lorabench.errors import LorabenchError


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lorabench.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="prepare and cache the training set")
    prepare.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=2m")
    return parser.parse_args(argv)


def prepare(overrides: list[str]) -> list[str]:
    """Prepare the set the overrides describe; its summary lines."""
    from lorabench.modeling.base import build_tokenizer

    cfg = validate(compose(overrides))
    tokenizer = build_tokenizer(cfg.model, cfg.cache_dir)
    prepared = prepare_train_data(cfg.data, tokenizer, cfg.method.max_length, cfg.cache_dir)
    share = configured_nonpad_share(cfg, prepared.dataset)
    return [
        f"data={cfg.data.name}",
        *prepared.report.summary(),
        f"nonpad_share_{cfg.data.batching}={share:.4f}",
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        lines = prepare(args.overrides)
    except LorabenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
