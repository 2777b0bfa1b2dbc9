# One image for every Python service of the stack: setup, MLflow, the Prefect server and
# worker, bootstrap and deploy, the predictor, the drift exporter, the simulator.  Compose
# gives each its command.  Build context: the repository root (.dockerignore lets in only
# what runs).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# The direct dependencies, read out of pyproject.toml in a stage of their own: an edit to
# pyproject.toml that leaves them alone (a pytest or ruff setting) yields the same file,
# so the install below stays cached.
FROM ${PYTHON_IMAGE} AS requirements
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt

FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/onebox/venv \
    PATH=/opt/onebox/venv/bin:$PATH

# Dependencies first, in a layer of their own: it is rebuilt only when the dependency list
# or constraints.txt (the tested versions) change, never for a code edit.  The scientific
# libraries' own test suites (~140 MB, never imported by a service) are dropped in the same
# layer; Evidently's `tests` package is its API, not a test suite, and stays.
COPY --from=requirements /tmp/requirements.txt /opt/onebox/requirements.txt
COPY constraints.txt /opt/onebox/constraints.txt
RUN python -m venv "$VIRTUAL_ENV" \
 && pip install --quiet -c /opt/onebox/constraints.txt -r /opt/onebox/requirements.txt \
 && for package in numpy pandas pyarrow scipy sklearn statsmodels matplotlib; do \
      find "$VIRTUAL_ENV/lib/python3.11/site-packages/$package" -depth -type d -name tests \
        -exec rm -rf {} +; \
    done

# Non-root, with every folder a service writes created and owned here: a named volume
# mounted over one of them takes this ownership on first use.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/onebox --no-create-home onebox \
 && mkdir -p /var/lib/onebox/data /var/lib/onebox/reports /var/lib/onebox/model-cache \
             /var/lib/onebox/spool /var/lib/onebox/prefect /var/lib/onebox/prefect-ui \
             /var/lib/onebox/mlartifacts /var/lib/onebox/gateway /var/lib/onebox/alertmanager \
 && chown -R onebox:onebox /var/lib/onebox

# The code last: a code-only change rebuilds from here (seconds).  It runs from /app
# (PYTHONPATH), which is also the folder the Prefect deployments point the worker at.
WORKDIR /app
COPY core core
COPY server server
COPY simulation simulation
COPY monitoring monitoring
COPY reporting reporting
COPY orchestration orchestration
COPY operations operations
COPY mlflow/start-mlflow.sh /usr/local/bin/start-mlflow
COPY docker-entrypoint.sh /usr/local/bin/onebox-entrypoint

ENV PYTHONPATH=/app \
    ONEBOX_HOME=/var/lib/onebox \
    PREFECT_HOME=/var/lib/onebox/prefect \
    PREFECT_UI_STATIC_DIRECTORY=/var/lib/onebox/prefect-ui \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1
# The build, reported by the predictor's /health (`--build-arg ONEBOX_RELEASE=...`): last,
# so a new release label costs one layer.
ARG ONEBOX_RELEASE=0.1.0
ENV ONEBOX_RELEASE=${ONEBOX_RELEASE}
USER onebox
# Secrets given as files (Docker Swarm) become environment variables: docker-entrypoint.sh.
ENTRYPOINT ["onebox-entrypoint"]
# The predictor by default (server/process.py: the one place its start command is written,
# gunicorn with its config and app); compose gives every other service its own command.
CMD ["python", "-m", "server.process"]
