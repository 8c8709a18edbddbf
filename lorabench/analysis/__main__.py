"""`python -m lorabench.analysis key=value ...`: the study's report (`analysis.report`), a Hydra
app on `conf/report.yaml` (`--help` lists the options, `--cfg job` shows them composed)."""

import hydra
from omegaconf import DictConfig

from lorabench.cli import report_main
from lorabench.config import register_configs
from lorabench.config.store import REPORT_CONFIG

register_configs()


# No config_path: the report's config comes from Hydra's config store (register_configs).
@hydra.main(config_path=None, config_name=REPORT_CONFIG, version_base="1.3")
def main(cfg: DictConfig) -> None:
    report_main(cfg)


if __name__ == "__main__":
    main()
