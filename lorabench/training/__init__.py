"""Training one grid point: `train(cfg)` runs `TrainingRecipe`'s phases; `dry_run(cfg)` counts
parameters of `meta_model(cfg)`, the run's model on the meta device."""

from lorabench.training.arguments import training_arguments
from lorabench.training.recipe import (
    TrainingRecipe,
    TrainResult,
    completed_result,
    dry_run,
    meta_model,
    train,
)

__all__ = [
    "TrainResult",
    "TrainingRecipe",
    "completed_result",
    "dry_run",
    "meta_model",
    "train",
    "training_arguments",
]
