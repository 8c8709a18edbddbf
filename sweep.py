"""Run a grid of the study: each point trains, then evaluates, as one MLflow run nested under a
parent run for the sweep. Finished points are skipped, unfinished ones resume.

    python sweep.py -m method=lora,ft data=0.6m,2m,4m                 # the paper's grid, 8 GPUs
    python sweep.py -m method=lora,ft data=0.6m,2m,4m profile=demo    # offline, CPU, minutes
    python sweep.py -m method=lora,ft data=0.6m,2m sweep.plan=true    # memory, hours: what fits
    python sweep.py experiment=paper_table4                           # Table 4's 8 rows, chained
    python sweep.py -m ... hydra/launcher=slurm_gpu8                  # one Slurm job per point

A sweep whose points failed runs the others, lists the failed ones and exits with code 1.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from lorabench.cli import sweep_entry
from lorabench.config import register_configs

register_configs()


@hydra.main(config_path="conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    # The point's objective, for an optimising sweeper (-m hydra/sweeper=optuna).
    return sweep_entry(cfg, str(Path(__file__).resolve().with_name("train.py")))


if __name__ == "__main__":
    main()
