"""The test part of CI's ledger: what each test module cost.

Per module, the seconds its tests took -- setup, call and teardown, a module-scoped
fixture's start and stop included -- and how many passed, summed over the workers that
ran them; and the run's wall time.  Printed at the end of every run (`make test`), and
with ONEBOX_LEDGER=FILE also written there as JSON, which .ci/run prints beside the time
of its other parts.  A change that adds test time shows here, module by module.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

_seconds: dict[str, float] = defaultdict(float)
_passed: dict[str, int] = defaultdict(int)
_worker_seconds: dict[str, float] = defaultdict(float)  # the balance of the workers
_started = time.monotonic()


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # On the controller this sees every worker's reports (pytest-xdist sends them).
    module = module_of(report.nodeid)
    _seconds[module] += report.duration
    node = getattr(report, "node", None)  # pytest-xdist's worker, on the controller
    _worker_seconds[node.gateway.id if node is not None else "main"] += report.duration
    if report.when == "call" and report.passed:
        _passed[module] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _seconds or hasattr(terminalreporter.config, "workerinput"):
        return
    wall = time.monotonic() - _started
    rows = sorted(_seconds.items(), key=lambda item: -item[1])
    terminalreporter.write_sep("=", "ledger: seconds per test module (summed over workers)")
    width = max(len(module) for module, _ in rows)
    for module, seconds in rows:
        terminalreporter.write_line(f"{module:<{width}}  {seconds:8.1f} s  "
                                    f"{_passed[module]:4d} passed")
    total = sum(_seconds.values())
    terminalreporter.write_line(f"{'all modules':<{width}}  {total:8.1f} s  "
                                f"{sum(_passed.values()):4d} passed; wall {wall:.0f} s")
    terminalreporter.write_line("busy per worker: " + ", ".join(
        f"{worker} {seconds:.0f} s" for worker, seconds in sorted(_worker_seconds.items())))
    out = os.environ.get("ONEBOX_LEDGER")
    if out:
        Path(out).write_text(json.dumps({
            "wall_seconds": round(wall, 1),
            "worker_seconds": {worker: round(seconds, 1)
                               for worker, seconds in sorted(_worker_seconds.items())},
            "modules": {module: {"seconds": round(seconds, 1), "passed": _passed[module]}
                        for module, seconds in rows}}, indent=1))
