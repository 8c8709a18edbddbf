"""Train one grid point of the study and track it in MLflow.

python train.py model=llama-7b method=lora data=2m            # 8 GPUs, DeepSpeed ZeRO-2
python train.py profile=demo method=ft data=0.6m              # tiny model, CPU, offline
python train.py model=llama-13b method=lora dry_run=true      # parameter counts only
python train.py method=ft hardware.gpu=a100-80gb sweep.plan=true   # memory per GPU, hours

`sweep.plan=true` trains nothing: it prints the run's memory per GPU against the GPU's
(`hardware.gpu`, conf/gpus.yaml), the setting that would make it fit if it does not, and its
hours with their assumptions, offline. Before starting any rank, train.py checks that the GPUs
the hardware asks for are here and that the model's config and tokenizer load; if not, it exits
with one message naming the fix (exit code 1).
"""

import hydra
from omegaconf import DictConfig

from lorabench.cli import train_main
from lorabench.config import register_configs

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    # The run's objective, for an optimising sweeper (-m hydra/sweeper=optuna).
    return train_main(cfg)


if __name__ == "__main__":
    main()
