"""How the predictor process is started, written once: `python -m server.process`, which
execs gunicorn with the predictor's config file and app factory.

The image's default command, the compose service, the Kubernetes Deployment (and the
Swarm file rendered from compose) run `COMMAND`; the local runner (`make serve`, the
demo, the tests) runs `start_command()`, the same with a bind address.  A test holds
them together.
"""

from __future__ import annotations

import sys

# The command line every deployment writes for the predictor: this module.
COMMAND = ("python", "-m", "server.process")
# Relative to the repository root, which is the working directory of the container
# (/app) and of the local runner alike.
GUNICORN_CONFIG = "server/gunicorn.conf.py"
APP = "server.app:create_app()"


def start_command(bind: str | None = None, python: str = sys.executable) -> list[str]:
    """`COMMAND` with this interpreter; `bind` (host:port) overrides PREDICTOR_BIND."""
    return [python, *COMMAND[1:], *(["--bind", bind] if bind else [])]


def gunicorn_argv(bind: str | None = None, python: str = sys.executable) -> list[str]:
    """The gunicorn command line the start command execs."""
    argv = [python, "-m", "gunicorn", "-c", GUNICORN_CONFIG]
    if bind:
        argv += ["--bind", bind]
    return [*argv, APP]


def main(argv: list[str] | None = None) -> None:
    """Exec gunicorn with the predictor's command line (PID 1 in a container stays the
    gunicorn master, which gets the stop signals)."""
    import argparse
    import os
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Serve the predictor under gunicorn.")
    parser.add_argument("--bind", default=None, help="host:port (default PREDICTOR_BIND)")
    args = parser.parse_args(argv)
    argv_ = gunicorn_argv(args.bind)
    os.chdir(Path(__file__).resolve().parent.parent)
    os.execv(argv_[0], argv_)


if __name__ == "__main__":
    main()
