"""Configuration: the typed schema, its registration with Hydra, and validation."""

from lorabench.config.schema import Config
from lorabench.config.store import CONF_DIR, compose, register_configs, validate
from lorabench.errors import ConfigError

__all__ = ["CONF_DIR", "Config", "ConfigError", "compose", "register_configs", "validate"]
