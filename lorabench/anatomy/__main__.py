"""Measure a finished run's weight update from the command line:

    python -m lorabench.anatomy run='llama-7b+lora(2m)'
    python -m lorabench.anatomy profile=demo run='tiny+ft(2m)' anatomy.targets=all_linear

A Hydra app on train.py's config (`run=` names the run, by name or id; the `anatomy` section
says what is measured). It logs `anatomy/*` metrics and the per-matrix tables to the run and
prints `name=value` lines: the run-level means, the matrices measured and the table's path.
A run already measured with the same settings on the same weights is read back, not measured
again; an interrupted measurement resumes from the matrices it finished.
"""

import hydra
from omegaconf import DictConfig

from lorabench.cli import anatomy_main
from lorabench.config import CONF_DIR, register_configs

register_configs()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    anatomy_main(cfg)


if __name__ == "__main__":
    main()
