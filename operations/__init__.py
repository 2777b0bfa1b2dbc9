"""The stack's operations, around the flows: the config check, the generated .env, the
setup of the databases and the prediction log, the bootstrap, the Prefect deployments,
the rollback, the local processes of the embedded stack and its demo."""
