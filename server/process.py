"""How the predictor process is started: the one command line the container, the
local runner (`make serve`, the demo) and the tests all use."""

from __future__ import annotations

import sys
from pathlib import Path

GUNICORN_CONFIG = Path(__file__).with_name("gunicorn.conf.py")
APP = "server.app:create_app()"


def predictor_argv(bind: str | None = None, python: str = sys.executable) -> list[str]:
    """The gunicorn command line; `bind` overrides PREDICTOR_BIND (host:port)."""
    argv = [python, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG)]
    if bind:
        argv += ["--bind", bind]
    return [*argv, APP]
