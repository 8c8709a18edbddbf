"""Sweeps: each grid point trains then evaluates as one MLflow run under the sweep's parent run:
one point (`points`), an experiment's rows (`rows`), a Hydra multirun's jobs (`multirun`)."""
