"""How the predictor process is started: the one command line the container, the
local runner (`make serve`, the demo) and the tests all use."""

from __future__ import annotations

import sys

# Relative to the repository root, which is the working directory of the container
# (/app) and of the local runner alike.
GUNICORN_CONFIG = "server/gunicorn.conf.py"
APP = "server.app:create_app()"


def predictor_argv(bind: str | None = None, python: str = sys.executable) -> list[str]:
    """The gunicorn command line; `bind` overrides PREDICTOR_BIND (host:port)."""
    argv = [python, "-m", "gunicorn", "-c", GUNICORN_CONFIG]
    if bind:
        argv += ["--bind", bind]
    return [*argv, APP]


def main(argv: list[str] | None = None) -> None:
    """Exec gunicorn with the predictor's command line (`make serve`)."""
    import argparse
    import os
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Serve the predictor under gunicorn.")
    parser.add_argument("--bind", default=None, help="host:port (default PREDICTOR_BIND)")
    args = parser.parse_args(argv)
    argv_ = predictor_argv(args.bind)
    os.chdir(Path(__file__).resolve().parent.parent)
    os.execv(argv_[0], argv_)


if __name__ == "__main__":
    main()
