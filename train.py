"""Train one grid point of the study and track it in MLflow.

python train.py model=llama-7b method=lora data=2m            # 8 GPUs, DeepSpeed ZeRO-2
python train.py profile=demo method=ft data=0.6m              # tiny model, CPU, offline
python train.py model=llama-13b method=lora dry_run=true      # parameter counts only
"""

import hydra
from omegaconf import DictConfig

from lorabench.cli import train_main
from lorabench.config import register_configs

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train_main(cfg)


if __name__ == "__main__":
    main()
