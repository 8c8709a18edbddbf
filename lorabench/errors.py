"""Errors caused by the user's input; entry points print them without a traceback."""


class LorabenchError(Exception):
    """Base of the errors whose message tells the user what to fix."""


class ConfigError(LorabenchError, ValueError):
    """A configuration value is invalid; the message names the key."""


class ModelLoadError(LorabenchError, RuntimeError):
    """Weights or tokenizer could not be loaded; the message says how to point at local files."""


class DataError(LorabenchError, ValueError):
    """Training data is missing, malformed or too small; the message names the source."""


class GenerationError(LorabenchError, RuntimeError):
    """Answers could not be generated (an inference server unreachable, not serving the model,
    or failing items); the message names the server and model, and what was kept."""
