"""MLflow: the store, one run per grid point and its closing (`runs`), a sweep's parent run
(`parents`); the names are `lorabench.contract`'s."""
