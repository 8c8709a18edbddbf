"""MLflow: the store, one run per grid point and its closing (`runs`); the names are
`lorabench.contract`'s."""
