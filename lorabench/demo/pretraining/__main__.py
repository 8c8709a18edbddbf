"""Pretrain a demo base model (once: a valid cached base of the same config is kept):

    python -m lorabench.demo.pretraining profile=demo model=tiny
    python -m lorabench.demo.pretraining -m profile=demo model=tiny,tiny-13b  # both, one process
    python -m lorabench.demo.pretraining profile=demo model=tiny model.pretrain.epochs=2

Takes train.py's Hydra overrides; prints the base's directory, its held-out perplexity before
and after, and the MLflow run that pretrained it.
"""

import hydra
from omegaconf import DictConfig

from lorabench.cli import pretrain_main
from lorabench.config import register_configs
from lorabench.config.schema import CONF_DIR

register_configs()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    pretrain_main(cfg)


if __name__ == "__main__":
    main()
