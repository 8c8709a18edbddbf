"""The demo's own world, for machines without the LLaMA weights or BELLE's data: the generated
world and its text, the instruction corpus about it, the tiny tokenizer and the tiny bases'
pretraining."""
