"""Alertmanager's configuration: the routing (routing.yml) and its receivers, rendered from
the environment at the stack's start (render.py)."""
