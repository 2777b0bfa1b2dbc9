"""Prefect flows: training with search, registration and the promotion gate; the demo."""
