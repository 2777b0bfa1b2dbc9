"""gunicorn settings for the predictor; the container and the local runner both use this file.

Values come from the environment so compose and the tests can set them.
"""

import os

bind = os.environ.get("PREDICTOR_BIND", "0.0.0.0:9696")
workers = int(os.environ.get("PREDICTOR_WORKERS", "2"))
# Threads let a worker keep connections alive and overlap the prediction log's I/O.
worker_class = "gthread"
threads = int(os.environ.get("PREDICTOR_THREADS", "4"))
# Loading the model takes a few seconds on a cold cache.
timeout = int(os.environ.get("PREDICTOR_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("PREDICTOR_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("PREDICTOR_LOG_LEVEL", "info")


def worker_exit(server, worker):
    """Write the queued prediction log before the worker goes (SIGTERM, restarts)."""
    app = getattr(worker, "wsgi", None)
    predictor = getattr(app, "extensions", {}).get("onebox") if app is not None else None
    if predictor is not None:
        predictor.close()
