"""Models: a base model and tokenizer built or loaded from its config (`base`), and the model a
trained run left, resolved through any chain of base runs (`trained`)."""
