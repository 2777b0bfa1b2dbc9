"""Shared fixtures: schema, settings on a temp home, a trained model, real servers.

Every fixture that starts something stops it after `yield`; every test gets its
own temp folders, and Postgres tests their own database.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg2
import pytest
from psycopg2 import sql

from core import registry
from core.schema import Schema
from core.settings import Settings
from testkit.stacks import EngineLease
from tests.factories import write_training_csv

# What each test module cost, printed at the end of every run (tests/ledger.py).
pytest_plugins = ["tests.ledger"]

# Quiet, offline, and no stray state in the user's home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Prefect's temporary server (a flow run without PREFECT_API_URL) gets 20 s to start by
# default; with the workers and the stacks starting side by side on 2 cores it needed more
# (as under `make`, which sets the same).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# Prefect's temporary server keeps its database under PREFECT_HOME: one per test session,
# never the user's ~/.prefect.  Set before anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="onebox-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME

# The server the tests create their databases in: TEST_POSTGRES_DSN, or the machine's own
# on 127.0.0.1:5432.  When that one does not let us in, pytest_configure starts a
# throwaway cluster for the session and points ADMIN_DSN at it (before any test module,
# which imports ADMIN_DSN, is collected).
ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_throwaway_cluster = None


def _postgres_answers(dsn: str) -> str | None:
    """None when `dsn` lets us in, else why not."""
    try:
        psycopg2.connect(dsn, connect_timeout=5).close()
    except psycopg2.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def pytest_configure(config: pytest.Config) -> None:
    global ADMIN_DSN, _throwaway_cluster
    if "TEST_POSTGRES_DSN" in os.environ:
        return  # asked for by name: use it, and let a wrong one fail loudly
    why = _postgres_answers(ADMIN_DSN)
    if why is None:
        return
    from operations.processes import free_port
    from tests.pg_cluster import PgCluster

    _throwaway_cluster = PgCluster(free_port())
    _throwaway_cluster.start()
    ADMIN_DSN = _throwaway_cluster.url
    os.environ["TEST_POSTGRES_DSN"] = ADMIN_DSN  # for the servers the tests start
    print(f"\nPostgreSQL at 127.0.0.1:5432 did not let us in ({why}); "
          f"the tests use a throwaway cluster at {ADMIN_DSN}")


# `make test` runs on two workers (pytest-xdist, --dist loadfile): each module whole on one
# worker, so its module-scoped servers and stacks start once.  The container suites -- the
# compose walk-through, its faults, the swarm -- are one unit of work, on one worker, one
# stack at a time, while the other worker runs the rest: the containers' waits overlap the
# CPU-bound tests.  Measured on 2 cores, before the priority below: one track took 2,420 s
# (the faults 1,514 s of it; the other worker was done at about 1,300 s), the machine busy
# 1.48 cores on average, 3,751 core-seconds in all.  Two tracks (two
# stacks up at once) beside the rest ran the machine at a load of 10-16, both cores busy
# throughout, and got through fewer tests in 20 minutes than one track did; with their
# starts at the same time, a swarm's health checks timed out and Swarm restarted its
# services for ten minutes.  More workers (TEST_WORKERS) only spread the rest.  The images
# are built once (testkit.stacks.build_images; .ci/run builds them beforehand), and the
# fault test that restarts the engine, like the swarm suite's leaving the swarm, waits
# until no other suite's stack is up (testkit.stacks.EngineLease: a benchmark's or a
# second run's stack on the same engine).  (xdist's `loadgroup`
# cannot express the track: under pytest 9 it groups nothing, the node id being kept apart
# from the `_nodeid` it rewrites.)
CONTAINER_TRACK = "the container suites, one stack at a time"
TRACKS = {module: CONTAINER_TRACK for module in
          ("tests/test_stack.py", "tests/test_stack_faults.py", "tests/test_swarm.py")}


# The container track is latency-bound (it waits on containers: a bring-up, a training run, a
# restart), the rest is throughput-bound.  Docker's containers all sit in one cgroup
# ("docker", cgroup v1 here), which the kernel weighs as ONE task at nice 0 against every
# process of the other worker (pytest, the servers it starts, their workers): on 2 cores the
# stacks got a sliver of the CPU, and the container track took 2,518 s in CI where it takes
# 1,358 s alone (0.62 cores on average).  So the other worker's modules run at a lower
# priority: they take what the containers leave, which is most of the machine.  Measured
# with it (make test, images built): the walk-through 250 s (258 s alone, 430 s before),
# the swarm 438 s (360 s alone, 786 s before), and the rest done in 544 s (1,292 s before:
# its servers waited on the starved stacks' neighbours less than on each other).  At 10 the
# container track still set CI's wall time (2,115 s busy; its backup test 383 s where it
# takes 199 s alone); at 19, measured on a fresh machine (.ci/run): the container track
# 1,639 s, the rest 776 s, CI 1,802 s in all (2,324 s at 10).
OTHER_MODULES_NICENESS = 19


@pytest.fixture(scope="module", autouse=True)
def the_container_track_first_on_the_cpu(request: pytest.FixtureRequest) -> None:
    """Under `make test` (pytest-xdist), a worker running a module off the container track
    lowers its priority (for good: niceness only goes up; its child processes inherit it)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and request.node.nodeid not in TRACKS:
        os.nice(max(0, OTHER_MODULES_NICENESS - os.nice(0)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadfile, with the modules of a track as one unit of work."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class TrackScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return TRACKS.get(module, module)

    return TrackScheduling(config, log)


def give_generated_tests_ids_of_their_own(items: list[pytest.Item]) -> None:
    """schemathesis 4.32.5 names each operation's test (`...[POST /predict]`) but, under
    pytest 9.2, leaves them one node id (it sets `_nodeid`, which pytest no longer reads).
    pytest-xdist keys the tests it hands out by node id: seven tests of one id ran as one,
    and six operations went unfuzzed on a worker (1,501 requests instead of 2,785).  Each
    gets its name as its id, as pytest would give it."""
    from _pytest.nodes import coerce_node_id

    seen = Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1:
            item._id = coerce_node_id(f"{item.nodeid.rsplit('::', 1)[0]}::{item.name}")
    again = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    assert not again, f"tests sharing a node id (pytest-xdist would run one): {again}"


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The container suites first, then the modules with slow tests, then the rest (the
    longest work first keeps the workers' ends close), in pytest-randomly's order
    otherwise; the engine restart, and the switch to another business, last in their
    modules."""
    give_generated_tests_ids_of_their_own(items)
    slow_modules = {item.nodeid.split("::")[0] for item in items
                    if item.get_closest_marker("slow")}

    # Each module's tests stay together: a test sorted after another module's would tear
    # its module's stack down and bring it up again for itself alone (the engine restart
    # did, in two orders of three: a whole bring-up of the faults' stack, ~200 s).
    modules = list(dict.fromkeys(item.nodeid.split("::")[0] for item in items))

    def rank(item: pytest.Item) -> tuple[int, int, bool]:
        module = item.nodeid.split("::")[0]
        kind = (0 if item.get_closest_marker("stack") else 1 if module in slow_modules else 2)
        last = any(item.get_closest_marker(name) for name in ("engine_restart",
                                                             "business_switch"))
        return kind, modules.index(module), last

    items.sort(key=rank)  # stable


def pytest_unconfigure(config: pytest.Config) -> None:
    if _throwaway_cluster is not None:
        _throwaway_cluster.remove()


@pytest.fixture(scope="session")
def schema() -> Schema:
    return Schema.load()


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a onebox process whose whole state lives under `home`."""
    return {"ONEBOX_HOME": str(home), **extra}


def settings_for(home: Path, **extra: str) -> Settings:
    return Settings.from_env(home_env(home, **extra))


def set_up_store(store_url: str) -> str:
    """What the stack's setup step does for a prediction log before any service uses it:
    its tables migrated (the services themselves never migrate).  Returns the URL."""
    from core.store import PredictionStore

    store = PredictionStore(store_url)
    try:
        store.migrate()
    finally:
        store.dispose()
    return store_url


def run_train_flow(home: Path, trials: int = 3, **kwargs: object) -> dict:
    """Run the real train flow with its state under `home`."""
    from orchestration.train import train

    with mock.patch.dict(os.environ, home_env(home)):
        return train(n_trials=trials, **kwargs)


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, schema: Schema) -> Path:
    """A home with a generated dataset and a trained, promoted champion (v1).

    Shared read-only by the tests that need a model; tests that change the
    registry train in a home of their own.  Trained once per run: under pytest-xdist the
    first worker to need it trains it while holding a lock in the run's own temp folder,
    and the others wait for it and then read it.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder: each worker's basetemp is a child of it
    home = shared / "trained-home"
    with FileLock(str(shared / "trained-home.lock")):
        if not (home / ".trained").exists():
            write_training_csv(settings_for(home).data_path, schema, rows=4000)
            result = run_train_flow(home, trials=3)
            assert result["promoted"] and result["version"] == "1"
            (home / ".trained").write_text(result["run_id"])
    return home


@pytest.fixture(scope="session")
def champion(trained_home: Path) -> registry.LoadedModel:
    """The trained home's champion, loaded as the services load it."""
    settings = settings_for(trained_home)
    model = registry.load_champion(registry.connect(settings), settings)
    assert model is not None
    return model


@pytest.fixture(scope="module")
def engine_lease() -> Iterator[EngineLease]:
    """A container suite's share of the Docker engine for the module's life (its
    `exclusive()` for what disturbs every stack on the engine)."""
    lease = EngineLease()
    try:
        yield lease
    finally:
        lease.release()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the real PostgreSQL server, dropped afterwards."""
    name = f"onebox_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                        .format(sql.Identifier(name)))
        admin.close()


@pytest.fixture(scope="session", autouse=True)
def _quiet_logging_at_exit() -> Iterator[None]:
    """The temporary Prefect server the flows start is stopped at interpreter exit and logs
    a goodbye; by then pytest has closed the captured streams, so silence logging first."""
    yield
    logging.disable(logging.CRITICAL)
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


# What a process's Settings are read from, and MLflow's own process-wide registry URI.
_SETTINGS_VARIABLES = tuple(sorted(
    {str(f.validation_alias) for f in Settings.model_fields.values() if f.validation_alias}
    | {"MLFLOW_REGISTRY_URI"}))


# As the session found them: a module or session fixture sets up before a test's own
# snapshot, so each test is held to these.
_SETTINGS_AT_START = {name: os.environ.get(name) for name in _SETTINGS_VARIABLES}


@pytest.fixture(autouse=True)
def _no_setting_leaks_into_later_tests() -> Iterator[None]:
    """Fail the test (or the fixture set up for it) that leaves a setting in os.environ.
    MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI: a test that called it outside
    a patched environment sent every later train flow on its worker (pytest-randomly
    decides which) to its own registry."""
    yield
    after = {name: os.environ.get(name) for name in _SETTINGS_VARIABLES}
    leaked = {name: value for name, value in after.items()
              if value != _SETTINGS_AT_START[name]}
    assert not leaked, f"settings left in os.environ for later tests: {leaked}"
