"""Configuration: the typed schema, its registration with Hydra, and validation."""

from lorabench.config.schema import Config, ReportOptions
from lorabench.config.store import (
    CONF_DIR,
    compose,
    register_configs,
    report_options,
    typed,
    validate,
)
from lorabench.errors import ConfigError

__all__ = [
    "CONF_DIR",
    "Config",
    "ConfigError",
    "ReportOptions",
    "compose",
    "register_configs",
    "report_options",
    "typed",
    "validate",
]
