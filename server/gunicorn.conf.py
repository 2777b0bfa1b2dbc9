"""gunicorn settings for the predictor; the container and the local runner both use this file.

Values come from the environment so compose and the tests can set them.  This
file runs in the gunicorn master before any worker exists, which is where
process-wide environment for the workers belongs.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

bind = os.environ.get("PREDICTOR_BIND", "0.0.0.0:9696")
workers = int(os.environ.get("PREDICTOR_WORKERS", "2"))
# Threads let a worker keep connections alive and overlap the prediction log's I/O.
worker_class = "gthread"
threads = int(os.environ.get("PREDICTOR_THREADS", "4"))
# Loading the model takes a few seconds on a cold cache.
timeout = int(os.environ.get("PREDICTOR_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# The worker heartbeat touches a file on every loop turn (~one a request here): on a
# disk (or a container's overlay) that took ~60 us a touch, profiled; in memory it
# is nothing.  gunicorn's own docs advise /dev/shm in containers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = os.environ.get("PREDICTOR_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("PREDICTOR_LOG_LEVEL", "info")

# Prometheus multiprocess mode: every worker writes its metrics under this folder and
# any worker's /metrics adds them up.  It must be set before a worker imports
# prometheus_client; a private temp folder unless the deployment names one.
_owns_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _owns_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="onebox-metrics-")
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

# Imported here, in the master, once the folder is set (prometheus_client reads it at
# import).  Not inside child_exit: that hook runs in the master's SIGCHLD handler, and when
# two workers exit together (SIGTERM) the second handler re-entered the first one's import
# and found a half-initialised module: the master died with exit code 1.
from prometheus_client import multiprocess  # noqa: E402

# A predictor must not hang at start or in its alias checks while MLflow is away:
# fail fast and serve the local copy (MLflow's default retries take minutes).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


# Under Docker Swarm a stopping replica (a rolling update, a scale-down) is taken out of
# the service's DNS at once, but the front door re-resolves only every few seconds (its
# resolver's `valid`): for that long it still sends requests here.  On SIGTERM the master
# keeps its workers serving this long before the graceful stop, so none of those requests
# meets a closed socket.  0 (compose: one predictor, no other replica to send to) stops at
# once.  docker-stack.yml sets it, and a stop grace period that covers it.
drain_seconds = float(os.environ.get("PREDICTOR_DRAIN_SECONDS", "0"))


def when_ready(server):
    if drain_seconds <= 0:
        return
    stop = server.handle_term

    def drain_then_stop():
        server.log.info("SIGTERM: serving %.0f s more while the front door forgets this "
                        "replica, then stopping", drain_seconds)
        time.sleep(drain_seconds)
        stop()

    server.handle_term = drain_then_stop


def on_starting(server):
    """Start from empty metrics: files of an earlier run would be added in."""
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for path in _metrics_dir.glob("*.db"):
        path.unlink()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the scrape."""
    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))


def worker_exit(server, worker):
    """Write (or spool) the queued prediction log before the worker goes (SIGTERM, restarts)."""
    app = getattr(worker, "wsgi", None)
    predictor = getattr(app, "extensions", {}).get("onebox") if app is not None else None
    if predictor is not None:
        predictor.close()


def on_exit(server):
    if _owns_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    """Move what the worker has loaded (the model, pandas, sklearn, MLflow: ~360,000
    objects the collector tracks) out of the garbage collector's view.  With the
    prediction log on, request objects live long enough (queued for the writer) to
    reach the oldest generation, and each full collection then walked every loaded
    object too: p99 at 16 connections was 74-98 ms with the log on, 15-26 ms after."""
    import gc

    gc.collect()
    gc.freeze()
