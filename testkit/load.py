"""Steady traffic against a predictor while something else happens (an alias moves, a
store dies, a container is killed, replicas scale): `threads` clients, each sending one
record to /predict on a kept-alive connection -- at `rate_per_thread` a second, or as fast
as answers come -- until stopped.  Every answer is kept (when, by which model version,
its prediction id), and every failure with its time, so a test can say what was sent,
answered, failed and logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import requests

from core.schema import Schema
from simulation.generator import generate
from simulation.traffic import records_from_frame


class Answer(NamedTuple):
    at: float            # time.monotonic() when it arrived
    version: str         # the model version that answered
    prediction_id: str


def generated_records(rows: int = 200, seed: int = 5) -> list[dict[str, Any]]:
    """Customers from the demo's generator, as request records."""
    schema = Schema.load()
    return records_from_frame(generate(rows, seed, schema=schema), schema)


@dataclass
class SteadyLoad:
    url: str                                   # the predictor's /predict
    threads: int = 4
    rate_per_thread: float | None = 10.0       # None: each client sends again at once
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True                  # the front door's certificate, for https
    max_seconds: float = 600.0                 # a bound, should a test forget to stop it
    records: list[dict[str, Any]] = field(default_factory=generated_records)
    answers: list[Answer] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(self.threads)]

    @classmethod
    def through_front_door(cls, stack: Any, **options: Any) -> SteadyLoad:
        """Against a test stack's predictor, through its front door with its client key
        (TLS checked against the certificate the stack made)."""
        return cls(stack.url("predictor", "/predict"), headers=stack.key("predict"),
                   verify=str(stack.ca_file), **options)

    def __enter__(self) -> SteadyLoad:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(self.headers)
        return session

    def _client(self, index: int) -> None:
        session = self._session()
        interval = 1 / self.rate_per_thread if self.rate_per_thread else 0.0
        deadline = time.monotonic() + self.max_seconds
        n = index
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            record = self.records[n % len(self.records)]
            n += self.threads
            answer, error = None, None
            try:
                # `verify` per call: REQUESTS_CA_BUNDLE would win over session.verify.
                response = session.post(self.url, json=record, verify=self.verify, timeout=30)
                if response.status_code == 200:
                    body = response.json()
                    answer = Answer(time.monotonic(), str(body["model"]["version"]),
                                    body["prediction_id"])
                else:
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
            except (requests.RequestException, ValueError, KeyError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                session = self._session()  # a broken connection is not reused
            with self._lock:
                self.sent += 1
                if answer is not None:
                    self.answers.append(answer)
                else:
                    self.failures.append((time.monotonic(), str(error)))
            if interval:
                self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    @property
    def answered(self) -> list[str]:
        """The prediction ids answered so far."""
        with self._lock:
            return [a.prediction_id for a in self.answers]

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        """Until `more` answers have come in from now on."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.count() >= target, f"load stalled at {self.count()} answers"

    def summary(self) -> str:
        return f"sent {self.sent}, answered {self.count()}, failed {len(self.failures)}"
