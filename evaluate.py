"""Evaluate a trained model on the eval set with an LLM judge and log the scores to MLflow.

python evaluate.py run='llama-7b+lora(2m)'                  # a training run, by name or id
python evaluate.py model_path=/models/my-adapter            # a model or adapter directory
python evaluate.py run=<id> judge.model=gpt-4o-mini         # judge again: no regeneration
python evaluate.py run=<id> dry_run=true                    # judge calls and tokens only
python evaluate.py profile=demo run='tiny+lora(2m)'         # offline, the reference judge
"""

import hydra
from omegaconf import DictConfig

from lorabench.cli import evaluate_main
from lorabench.config import register_configs

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    evaluate_main(cfg)


if __name__ == "__main__":
    main()
