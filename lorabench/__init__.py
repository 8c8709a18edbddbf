"""lorabench: LoRA vs full fine-tuning study, tracked in MLflow."""
