"""Prepare (and cache) a training set from the command line:

    python -m lorabench.data data=2m
    python -m lorabench.data profile=demo data=4m cache_dir=/scratch/cache
    python -m lorabench.data -m profile=demo data=0.6m,2m,4m      # several sets, one by one

A Hydra app on train.py's config: it takes the same overrides, prepares the set exactly as
training will (same cache key, so a later `train.py` with the same overrides loads it), then
prints `name=value` lines: rows read, valid, skipped by reason, kept, tokens, mean and
95th-percentile length, the non-pad token share of the configured batching, and the cache path.
"""

import hydra
from omegaconf import DictConfig

from lorabench.cli import prepare_main
from lorabench.config import CONF_DIR, register_configs

register_configs()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    prepare_main(cfg)


if __name__ == "__main__":
    main()
