"""Prefect flows: `train` (search, register, promote through the gate), `report` and
`drift-check`; one module per flow (operations/deploy.py registers them)."""
