"""Hydra registration, composition and validation of the typed config."""

from __future__ import annotations

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lorabench.config.schema import CONF_DIR, Config
from lorabench.errors import ConfigError

SCHEMA_NAME = "lorabench_schema"


def register_configs() -> None:
    """Register the root schema, which `conf/config.yaml` extends (`- lorabench_schema`), and
    the resolver that names runs."""
    from lorabench.chaining import run_name

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)
    OmegaConf.register_new_resolver("lorabench_run_name", run_name, replace=True)


def validate(cfg: DictConfig) -> Config:
    """Turn a composed config into typed objects, running every value check.

    Raises ConfigError naming the offending key; nothing heavy has been built yet.
    """
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        # OmegaConf wraps exceptions raised in __post_init__; surface ours unchanged.
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(str(err)) from err


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the project config outside a Hydra app (tests, notebooks, benchmarks)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides or [])
