"""The demo's world, for machines without LLaMA or BELLE's data: the generated world and its text,
its instruction corpus and eval set, the tiny tokenizer and the tiny bases' pretraining."""
