# onebox — the front door.  `make demo` and `make test` work on a fresh machine:
# they create the virtualenv they need (.venv, pinned by constraints.txt).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Embedded defaults: everything lives under ONEBOX_HOME (SQLite, local folders).
export ONEBOX_HOME ?= $(CURDIR)/.onebox
# Prefect's temporary server (no PREFECT_API_URL) keeps its database here too.
export PREFECT_HOME ?= $(ONEBOX_HOME)/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# Prefect's temporary server gets 20 s to start by default; a busy 2-core machine
# (tests starting servers side by side) needed more.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR ?= false
export PYTHONDONTWRITEBYTECODE ?= 1

PYTEST_ARGS ?=

.PHONY: screenshots help venv home demo data train serve traffic report rollback bench bench-train bench-intervals bench-fidelity bench-false-alarms bench-estimation bench-exporter bench-stack bench-swarm bench-journal soak test test-fast test-stack test-prereqs lint audit compose-check clean up down logs ps backup restore up-offline down-offline standins test-images env-file swarm-up swarm-down swarm-up-offline swarm-render traffic-stack

help:
	@echo "make demo      the whole loop on embedded defaults (data, train, serve, traffic, report);"
	@echo "               DEMO=flights runs it on flight fares (a number) instead of churn"
	@echo "make test      the test suite (starts its own servers; needs PostgreSQL reachable)"
	@echo "make data      generate the demo training table (DATA_PATH)"
	@echo "make train     run the train flow (search, register, gate)"
	@echo "make serve     after make demo: every page on http://127.0.0.1:8080/ (try-it, reports and"
	@echo "               cards, MLflow's UI, the API) until Ctrl-C; DEMO=flights after that demo;"
	@echo "               SERVE_ARGS='--port 8081'"
	@echo "make traffic   send simulated requests to the predictor of make serve"
	@echo "make report    write a drift report of the latest window"
	@echo "make rollback  move @champion back to @previous (the predictor follows)"
	@echo "make bench     predictor vs a constant-answer ceiling and mlflow models serve (needs wrk, PostgreSQL)"
	@echo "make bench-train  train wall time by rows and trials"
	@echo "make bench-fidelity  predictions until each simulated drift raises the alarm; false alarms (~15 min)"
	@echo "make bench-false-alarms  clean 1,000-row windows alarmed, over 4 champions trained on tables of their own (~35 min, both cores)"
	@echo "make bench-estimation  label-free quality estimates against the realised: CBPE's AUC (churn), DLE's error vs NannyML's (flights) (~10 min)"
	@echo "make bench-exporter  drift exporter compute time at 3k/10k/100k rows"
	@echo "make bench-stack  the compose stack's figures: memory, image size, build and start times, req/s (Docker)"
	@echo "make bench-swarm  Docker Swarm: /predict req/s through the front door with 1, 2, 3 replicas vs one replica's port"
	@echo "make bench-journal  what the prediction journal adds to a request (us an append)"
	@echo "make soak      the compose stack at half its peak for 10 min: errors, p99 and memory per minute (Docker, wrk)"
	@echo "make screenshots  the pages' pictures in docs/screenshots (their browser tests)"
	@echo "make lint      ruff"
	@echo "make audit     known vulnerabilities of the pinned packages (pip-audit; needs PyPI's JSON API or OSV)"
	@echo "make clean     remove the embedded state (.onebox)"
	@echo ""
	@echo "The compose stack (env=local: .env generated from .env.local, the default; env=cloud:"
	@echo "from .env.cloud; generated the first time, then kept: env= naming the other template"
	@echo "than the existing .env's stops and says so).  Only the front door is"
	@echo "published; debug=1 also publishes the services behind it on 127.0.0.1 (no credentials):"
	@echo "make up        build and start it, wait until every service is healthy"
	@echo "make down      stop it (volumes kept; docker compose down -v removes them)"
	@echo "make logs      follow its logs"
	@echo "make ps        its containers and their health"
	@echo "make traffic-stack  simulated customers and their outcomes, from a container on the"
	@echo "               stack's network (the generated keys; nothing published needed)"
	@echo "make backup    one archive (+ .sha256) of its databases, model files and reports, in"
	@echo "               BACKUP_DIR (backups/), while it runs"
	@echo "make restore ARCHIVE=backups/onebox-....tar.gz   put one back (stops and restarts"
	@echo "               the services that write what it replaces)"
	@echo "make up-offline    the same on a machine that cannot pull images: stand-ins built"
	@echo "                   from Debian's packages (tests/stack/), Grafana left out"
	@echo "make down-offline  stop that stack"
	@echo ""
	@echo "Docker Swarm (docker-stack.yml, rendered from docker-compose.yml; README, \"Docker Swarm\"):"
	@echo "make swarm-up      deploy on this engine's swarm (a single-node one is made when there is"
	@echo "                   none), secrets from .env, wait until every service is up"
	@echo "make swarm-down    remove the stack (volumes kept)"
	@echo "make swarm-up-offline  the same with the stand-in images (tests/stack/), no Grafana"
	@echo "make swarm-render  write docker-stack.yml again after editing docker-compose.yml"
	@echo "make test-prereqs  (root, Debian 12) install and start what make test needs:"
	@echo "                   PostgreSQL, Docker engine + compose, prometheus, nginx, wrk"

venv: $(STAMP)

# Prefect creates PREFECT_HOME only if its parent exists.
home:
	@mkdir -p "$(PREFECT_HOME)"

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: onebox needs Python 3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# DEMO=flights: the flight-fare business (a number) instead of churn.
DEMO ?=

demo: $(STAMP) home
	$(BIN)/python -m operations.demo $(if $(DEMO),--business $(DEMO))

data: $(STAMP) home
	$(BIN)/python -m simulation.demo_tables

train: $(STAMP) home
	$(BIN)/python -m simulation.demo_tables --if-missing
	$(BIN)/python -m orchestration.train

# Every page of the embedded stack on one port, in the foreground until Ctrl-C, at the
# front door's paths: the predictor (its log migrated first, as compose's `setup` step
# does; on :9696 too, for make traffic), MLflow's UI, the reports (operations/serve.py).
SERVE_ARGS ?=
serve: $(STAMP) home
	$(BIN)/python -m operations.serve $(if $(DEMO),--business $(DEMO)) $(SERVE_ARGS)

traffic: $(STAMP) home
	$(BIN)/python -m simulation.traffic --url http://127.0.0.1:9696 --feedback

report: $(STAMP) home
	$(BIN)/python -m reporting.report

BENCH_ARGS ?=

bench: $(STAMP) home
	$(BIN)/python -m benchmarks.predictor $(BENCH_ARGS)

# DEMO=flights: the flight-fare business's drift scenarios and clean windows instead.
bench-fidelity: $(STAMP) home
	$(BIN)/python -m $(if $(filter flights,$(DEMO)),benchmarks.flight_drift,benchmarks.fidelity) $(BENCH_ARGS)

bench-false-alarms: $(STAMP) home
	$(BIN)/python -m $(if $(filter flights,$(DEMO)),benchmarks.flight_drift --clean-windows 400 --scenario-windows 0,benchmarks.false_alarms) $(BENCH_ARGS)

# The regression half compares with NannyML's own DLE, in a venv of its own (it pins older
# lightgbm and plotly than onebox's); never part of the tests.
NANNYML_VENV := .venv-nannyml
bench-estimation: $(STAMP) home
	@test -x $(NANNYML_VENV)/bin/python || { $(PYTHON) -m venv $(NANNYML_VENV) && $(NANNYML_VENV)/bin/pip install --quiet -r benchmarks/nannyml-requirements.txt; }
	$(BIN)/python -m benchmarks.estimation
	NANNYML_PYTHON=$(NANNYML_VENV)/bin/python $(BIN)/python -m benchmarks.loss_estimation

bench-exporter: $(STAMP) home
	$(BIN)/python -m benchmarks.exporter

bench-train: $(STAMP) home
	$(BIN)/python -m benchmarks.train $(BENCH_ARGS)

bench-intervals: $(STAMP)
	$(BIN)/python -m benchmarks.intervals

bench-stack: $(STAMP) home standins
	$(BIN)/python -m benchmarks.stack $(BENCH_ARGS)

bench-swarm: $(STAMP) home standins
	$(BIN)/python -m benchmarks.swarm $(BENCH_ARGS)

bench-journal: $(STAMP)
	$(BIN)/python -m benchmarks.journal

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

rollback: $(STAMP) home
	$(BIN)/python -m operations.rollback

# Workers of `make test` (pytest-xdist), each running whole modules in the order
# tests/conftest.py sets: the container suites on one, one stack at a time, while the
# other runs everything else (more overloaded 2 cores: see tests/conftest.py).
# TEST_WORKERS=0 runs it all in this process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	  $(PYTEST_ARGS)

# The docs' pictures of the pages, from the demo's own output: make demo in a fresh home,
# make serve, each page in chromium at 1280 px (tests/screenshots.py; DEMO=flights too).
screenshots: $(STAMP)
	$(BIN)/python -m tests.screenshots $(if $(DEMO),--business $(DEMO))

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not stack" $(PYTEST_ARGS)

# The compose stack built and walked in containers (Docker engine; ~10 min the first time).
test-stack: $(STAMP)
	$(BIN)/python -m pytest -m stack $(PYTEST_ARGS)

# A fresh Debian 12 machine, as root: what the tests need, installed and started.
test-prereqs:
	bash tests/prepare_machine.sh

lint: $(STAMP)
	$(BIN)/ruff check .

# Known vulnerabilities of every pinned package (pip-audit, in a venv of its own).  It needs
# PyPI's per-release JSON API or OSV (api.osv.dev); --strict fails when a package could
# not be audited, so an unreachable database is a failure, never a silent pass.
AUDIT_VENV := .venv-audit
audit:
	@test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install --quiet pip-audit==2.10.1; }
	$(AUDIT_VENV)/bin/pip-audit --strict --requirement constraints.txt --no-deps --disable-pip --progress-spinner off

compose-check: $(STAMP)
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

clean:
	rm -rf .onebox

# --- the compose stack -------------------------------------------------------------
# .env holds the stack's secrets: generated from the template of `env` the first time
# (random passwords and keys; never committed), then used as it is.
env ?= local
ifeq ($(env),local)
TEMPLATE := .env.local
else ifeq ($(env),cloud)
TEMPLATE := .env.cloud
else
$(error env must be local or cloud, got '$(env)')
endif
# Closed by default: only the front door is published.  `debug=1` also publishes the
# services behind it on 127.0.0.1, without their credentials (docker-compose.debug.yml):
# a developer asks for that on their own host, never on a VM others reach.
debug ?=
COMPOSE_FILES := -f docker-compose.yml
ifneq ($(filter 1 yes on true,$(debug)),)
COMPOSE_FILES += -f docker-compose.debug.yml
else ifneq ($(debug),)
$(error debug must be 1 (or yes, on, true) or empty, got '$(debug)')
endif
COMPOSE := docker compose --env-file .env $(COMPOSE_FILES)
# Stand-ins for the upstream images, on a machine that cannot pull them (tests/stack/).
OFFLINE := -f tests/stack/compose.offline.yml

# An .env made from the other template is named, not used silently, when env= is given.
env-file:
	@$(PYTHON) -m operations.generate_env --template $(TEMPLATE) --out .env \
	  $(if $(filter command line,$(origin env)),--same-template)

up: env-file
	$(COMPOSE) up -d --build --wait --wait-timeout 900
	@echo "the front door: $$(sed -n 's/^PUBLIC_URL=//p' .env)/ (login: ADMIN_USER / ADMIN_PASSWORD in .env)"

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs --follow --tail=200

ps:
	$(COMPOSE) ps --all

TRAFFIC_ARGS ?= --rows 1000 --feedback
traffic-stack:
	$(COMPOSE) --profile demo run --rm simulator python -m simulation.traffic \
	  --url http://predictor:9696 $(TRAFFIC_ARGS)

# Backups (backup/backup.sh, run as the compose service `backup`).  A restore replaces
# the databases and folders whole, so the services writing them stop first; `up` brings
# them back (and re-runs the one-off steps, which find everything there).
export BACKUP_DIR ?= $(CURDIR)/backups
STATE_WRITERS := mlflow prefect-server prefect-worker predictor drift-exporter

backup:
	@mkdir -p "$(BACKUP_DIR)"
	$(COMPOSE) run --rm backup backup

restore:
	@test -n "$(ARCHIVE)" || { echo "usage: make restore ARCHIVE=backups/onebox-<time>.tar.gz"; exit 2; }
	@test "$$(cd "$$(dirname "$(ARCHIVE)")" && pwd)" = "$$(cd "$(BACKUP_DIR)" && pwd)" \
	  || { echo "$(ARCHIVE) must be in BACKUP_DIR ($(BACKUP_DIR))"; exit 2; }
	$(COMPOSE) stop $(STATE_WRITERS)
	$(COMPOSE) run --rm backup restore "$(notdir $(ARCHIVE))"
	$(COMPOSE) up -d --wait --wait-timeout 900

standins:
	tests/stack/standins/build.sh

# The images the container tests run -- the stand-ins and the onebox image built on them --
# built ahead (.ci/run builds them while the venv installs); the tests find them built
# (testkit.stacks.build_images: seconds).  Needs no venv: an env file of throwaway secrets
# only lets compose read the files.
test-images: standins
	@env_file=$$(mktemp -u /tmp/onebox-images-env.XXXXXX) \
	  && $(PYTHON) -m operations.generate_env --template .env.local --out "$$env_file" >/dev/null \
	  && docker compose --env-file "$$env_file" -p onebox-test-images -f docker-compose.yml \
	     $(OFFLINE) build; status=$$?; rm -f "$$env_file"; exit $$status

up-offline: env-file standins
	$(COMPOSE) $(OFFLINE) up -d --build --wait --wait-timeout 900
	@echo "the front door: $$(sed -n 's/^PUBLIC_URL=//p' .env)/ (login: ADMIN_USER / ADMIN_PASSWORD in .env)"

down-offline:
	$(COMPOSE) $(OFFLINE) down

# --- Docker Swarm (swarm/): the same services from docker-stack.yml --------------------------
# The stack's name is onebox; SWARM_ADVERTISE_ADDR is the address a new swarm is advertised
# on (other nodes join there; 127.0.0.1 by default: this machine alone).
swarm-up: env-file $(STAMP)
	$(BIN)/python -m swarm.deploy up --env-file .env

swarm-up-offline: env-file standins $(STAMP)
	$(BIN)/python -m swarm.deploy up --env-file .env --offline

swarm-down: $(STAMP)
	$(BIN)/python -m swarm.deploy down

swarm-render: $(STAMP)
	$(BIN)/python -m swarm.render
