"""Models: a base and tokenizer from its config (`base`), the kernels it trains with (`kernels`),
and the model a trained run left, resolved through any chain of base runs (`trained`)."""
