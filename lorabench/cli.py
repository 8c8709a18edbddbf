"""What the entry points do once Hydra has composed the config."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from lorabench.config import validate
from lorabench.errors import LorabenchError
from lorabench.launching import DistEnv, check_world_size, needs_launcher, relaunch_under_torchrun


def train_main(cfg: DictConfig) -> None:
    """`train.py`: validate, then dry-run, relaunch under torchrun, or train.

    Errors in the user's input end the process with their message alone (exit code 1).
    """
    try:
        _train_main(cfg)
    except LorabenchError as err:
        sys.exit(f"error: {err}")


def _train_main(cfg: DictConfig) -> None:
    config = validate(cfg)
    if config.dry_run:
        from lorabench.training import dry_run

        counts = dry_run(config)
        print(f"additional_params={counts.additional}")
        print(f"trainable_params={counts.trainable}")
        print(f"total_params={counts.total}")
        return
    env = DistEnv.from_environ()
    if needs_launcher(config, env):
        sys.exit(relaunch_under_torchrun(config, sys.argv))
    check_world_size(config, env)
    from lorabench.training import train

    result = train(config, env)
    if env.is_main:
        print(f"model saved to {result.model_path}")
        if result.run_id:
            uri = config.tracking.tracking_uri
            print(f"mlflow run {result.run_id} ({config.run_name}) in {uri}")
