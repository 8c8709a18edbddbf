"""Hydra registration, composition and validation of the typed config."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lorabench.config.schema import CONF_DIR, Config
from lorabench.errors import ConfigError

SCHEMA_NAME = "lorabench_schema"


def register_configs() -> None:
    """Register the root schema, which `conf/config.yaml` extends (`- lorabench_schema`)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


def _name(cfg: DictConfig, overrides: Sequence[str] | None) -> None:
    from lorabench.identity import name_run

    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    try:
        if GlobalHydra.instance().is_initialized():
            name_run(cfg, overrides)
            return
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            name_run(cfg, overrides)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err)) from err


def validate(cfg: DictConfig, overrides: Sequence[str] | None = None) -> Config:
    """Turn a composed config into typed objects, running every value check.

    A null `run_name` is filled in from the config and the `overrides` it was composed with
    (default: the running Hydra job's). Raises ConfigError naming the offending key; nothing
    heavy has been built yet.
    """
    if cfg.get("run_name") is None:
        _name(cfg, overrides)
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        # OmegaConf wraps exceptions raised in __post_init__; surface ours unchanged.
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(str(err)) from err


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the project config outside a Hydra app (tests, notebooks, benchmarks), its run
    named from the overrides."""
    from lorabench.identity import name_run

    register_configs()
    overrides = overrides or []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return name_run(hydra_compose(config_name=config_name, overrides=overrides), overrides)
