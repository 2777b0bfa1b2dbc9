"""Load with wrk (POST of a JSON body, benchmarks/predictor/post.lua) and read what it prints."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

POST_SCRIPT = Path(__file__).resolve().parent / "post.lua"

# wrk prints times as 412.00us, 2.76ms, 1.02s, 1.50m.
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class WrkMissing(RuntimeError):
    pass


class WrkOutputUnreadable(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    latency_seconds: dict[int, float]   # percentile (50, 75, 90, 99) -> seconds
    non_2xx: int                        # wrk prints the line only when there are some
    socket_errors: int                  # connect + read + write + timeout
    output: str

    @property
    def p50_ms(self) -> float:
        return self.latency_seconds[50] * 1000

    @property
    def p99_ms(self) -> float:
        return self.latency_seconds[99] * 1000

    @property
    def clean(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing("wrk is not on PATH; the benchmark needs it: apt-get install wrk")
    return path


def run_wrk(url: str, body_file: Path, *, connections: int, threads: int,
            seconds: float, timeout_seconds: float = 10.0,
            authorization: str | None = None, pause_ms: float | None = None) -> WrkResult:
    """POST `body_file` to `url` for `seconds` (with `authorization` as the Authorization
    header when given) and return what wrk measured.  With `pause_ms`, each connection
    waits that long after each answer: a steady rate instead of the peak."""
    extra = [] if pause_ms is None else [f"{round(pause_ms)}"]  # wrk's delay is whole ms
    argv = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            f"--timeout={round(timeout_seconds)}s", "--latency", "-s", str(POST_SCRIPT),
            url, "--", str(body_file), authorization or "", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WrkOutputUnreadable(
            f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk_output(done.stdout)


def parse_wrk_output(text: str) -> WrkResult:
    """The figures of one `wrk --latency` run."""
    requests = _REQUESTS.search(text)
    rate = _RATE.search(text)
    percentiles = {int(p): float(v) * _TIME_UNITS[unit]
                   for p, v, unit in _PERCENTILE.findall(text)}
    if requests is None or rate is None or not {50, 99} <= percentiles.keys():
        raise WrkOutputUnreadable(f"cannot read wrk's output:\n{text}")
    non_2xx = _NON_2XX.search(text)
    socket_errors = _SOCKET_ERRORS.search(text)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _TIME_UNITS[requests.group(3)],
        requests_per_second=float(rate.group(1)),
        latency_seconds=percentiles,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        output=text,
    )
