"""Hydra registration, composition and validation of the typed config."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lorabench.config.schema import CONF_DIR, Config, ReportOptions
from lorabench.errors import ConfigError

SCHEMA_NAME = "lorabench_schema"
REPORT_SCHEMA_NAME = "report_schema"
REPORT_CONFIG = "report"
"""`conf/report.yaml`: `python -m lorabench.analysis`'s config."""


def register_configs() -> None:
    """Register the typed schemas the configs extend: the root one of `conf/config.yaml`
    (`- lorabench_schema`) and the report's of `conf/report.yaml` (`- report_schema`); and the
    report's config itself (`report_config`)."""
    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=Config)
    store.store(name=REPORT_SCHEMA_NAME, node=ReportOptions)
    store.store(name=REPORT_CONFIG, node=report_config())


@functools.cache  # read once a process: register_configs runs before every compose
def report_config() -> DictConfig:
    """`conf/report.yaml` with the Hydra settings every entry point shares (conf/hydra's quiet
    logging and output directories) inlined: the report's app composes from the config store
    alone, since conf/'s config groups would take over its keys (conf/experiment/ makes
    `experiment=` a group choice), and conf/hydra's files are in those groups."""
    hydra = CONF_DIR / "hydra"
    shared = OmegaConf.merge(
        {
            "job_logging": OmegaConf.load(hydra / "job_logging" / "quiet.yaml"),
            "hydra_logging": OmegaConf.load(hydra / "hydra_logging" / "quiet.yaml"),
        },
        OmegaConf.load(hydra / "output" / "lorabench.yaml"),  # `@package hydra`
    )
    return OmegaConf.merge(OmegaConf.load(CONF_DIR / f"{REPORT_CONFIG}.yaml"), {"hydra": shared})


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
    return typed(cfg)


def typed(cfg: DictConfig) -> Any:
    """A composed config as its schema's dataclasses, every value check run (`__post_init__`);
    raises ConfigError naming the offending key."""
    try:
        return OmegaConf.to_object(cfg)
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


def report_options(overrides: Sequence[str] = ()) -> ReportOptions:
    """The options `python -m lorabench.analysis OVERRIDES` runs with, composed outside the app
    (tests, notebooks)."""
    register_configs()
    with initialize(config_path=None, version_base="1.3"):
        return typed(hydra_compose(config_name=REPORT_CONFIG, overrides=list(overrides)))
