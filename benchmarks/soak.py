"""`make soak`: the compose stack under steady traffic for a while, minute by minute.

The stack (offline override, as the tests run it; its own project name; taken down with
its volumes at the end) gets single-record /predict requests through its published port
(the front door: TLS, an API key), the prediction log on:

1. the peak: wrk, 16 connections, `--peak-seconds`;
2. the soak: `--fraction` of that peak (default half) for `--minutes` (default 10), paced
   by wrk (each connection pausing after each answer), one wrk run per minute;
3. each minute: requests answered, errors (non-2xx and socket errors), p50/p99, and every
   container's memory (`docker stats`);
4. the end: the log's backlog and spool back to zero, and the rows in the prediction log
   equal to the 200s answered (nothing lost).

Verdicts: error rate 0; each container's memory in the last minute within
max(MEMORY_GROWTH_MIB, MEMORY_GROWTH_FRACTION of it) of the second minute's (the first
minute still warms caches) -- PostgreSQL's also within its shared_buffers (128 MiB by
default), a cache of fixed size that fills as the table grows; backlog back to 0; no
answered prediction missing from the log (rows >= answers: wrk does not count the
requests still in flight when each minute's run stops, at most one per connection, which
the predictor answered and logged).  Numbers move with the machine's other load.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

from benchmarks.predictor.wrk import require_wrk, run_wrk
from benchmarks.stack import EXAMPLE, memory
from testkit.stacks import ComposeStack, build_standins, require_engine, wait_for

say = partial(print, flush=True)
CONNECTIONS = 16
MEMORY_GROWTH_MIB = 64.0
MEMORY_GROWTH_FRACTION = 0.15
# Memory that fills to a fixed size as data grows, on top of the growth bound.
FIXED_CACHES_MIB = {"postgres": 128.0}  # shared_buffers, PostgreSQL's default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="soak length (default 10)")
    parser.add_argument("--fraction", type=float, default=0.5,
                        help="share of the measured peak to send (default 0.5)")
    parser.add_argument("--peak-seconds", type=float, default=20.0,
                        help="wrk run that measures the peak (default 20)")
    return parser.parse_args(argv)


def prediction_rows(stack: ComposeStack) -> int:
    return int(stack.psql("monitoring", "SELECT count(*) FROM predictions"))


def log_state(stack: ComposeStack) -> list[dict]:
    """The prediction log as /health shows it, asked often enough to hear both workers."""
    return [stack.get("predictor", "/health").json()["prediction_log"] for _ in range(6)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_engine()
    require_wrk()
    build_standins()
    with tempfile.TemporaryDirectory(prefix="onebox-soak-") as tmp:
        scratch = Path(tmp)
        body = scratch / "single.json"
        body.write_text(json.dumps(EXAMPLE))
        stack = ComposeStack.create(scratch)
        try:
            stack.down(volumes=True)
            say(f"up ({stack.project}) ...")
            stack.up()
            return soak(stack, body, args)
        finally:
            stack.down(volumes=True)


def soak(stack: ComposeStack, body: Path, args: argparse.Namespace) -> int:
    url, key = stack.url("predictor", "/predict"), stack.key("predict")["Authorization"]
    run_wrk(url, body, connections=CONNECTIONS, threads=2, seconds=3, authorization=key)
    peak = run_wrk(url, body, connections=CONNECTIONS, threads=2, seconds=args.peak_seconds,
                   authorization=key)
    target = peak.requests_per_second * args.fraction
    pause_ms = max(1, round(CONNECTIONS * 1000 / target - peak.p50_ms))
    say(f"peak {peak.requests_per_second:,.0f} req/s (p99 {peak.p99_ms:.1f} ms); soak at "
        f"~{target:,.0f} req/s: {CONNECTIONS} connections pausing {pause_ms} ms, "
        f"{args.minutes} min")
    wait_for("the peak's rows written", lambda: True if all(
        s["backlog"] == 0 and s["spooled_rows"] == 0 for s in log_state(stack)) else None,
        timeout=300)
    rows_before = prediction_rows(stack)
    minutes, mib = [], []
    for minute in range(1, args.minutes + 1):
        result = run_wrk(url, body, connections=CONNECTIONS, threads=2, seconds=60,
                         authorization=key, pause_ms=pause_ms)
        used = {name: mib for name, mib in memory(stack).items() if mib > 0}  # not one-offs
        backlog = max(s["backlog"] for s in log_state(stack)[:2])
        minutes.append(result)
        mib.append(used)
        say(f"minute {minute:2d}: {result.requests_per_second:6,.0f} req/s  "
            f"errors {result.non_2xx + result.socket_errors}  p50 {result.p50_ms:5.1f} ms  "
            f"p99 {result.p99_ms:6.1f} ms  backlog {backlog:5d}  memory "
            + " ".join(f"{name} {value:.0f}" for name, value in sorted(used.items())))
    settle_started = time.monotonic()
    wait_for("backlog and spool back to 0", lambda: True if all(
        s["backlog"] == 0 and s["spooled_rows"] == 0 for s in log_state(stack)) else None,
        timeout=600)
    settled_s = time.monotonic() - settle_started
    rows = prediction_rows(stack) - rows_before
    sent = sum(r.requests for r in minutes)
    errors = sum(r.non_2xx + r.socket_errors for r in minutes)
    answered = sent - errors
    return report(args, peak.requests_per_second, minutes, mib, sent, errors, answered, rows,
                  settled_s)


def report(args: argparse.Namespace, peak: float, minutes: list, mib: list[dict[str, float]],
           sent: int, errors: int, answered: int, rows: int, settled_s: float) -> int:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    say("\n================ onebox soak ================")
    say(f"machine       {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    say(f"traffic       {args.minutes} min at ~{args.fraction:.0%} of the peak "
        f"({peak:,.0f} req/s): {sent:,} requests, "
        f"{statistics_line(minutes)}")
    say(f"errors        {errors} ({errors / max(sent, 1):.4%}) {verdict(errors == 0)}")
    say("p99 by minute " + " ".join(f"{r.p99_ms:.1f}" for r in minutes) + " ms")
    growth_ok = True
    baseline = mib[1] if len(mib) > 1 else mib[0]
    say("memory (MiB)  container: minute 2 -> last (max over the soak)")
    for name in sorted(baseline):
        last = mib[-1].get(name, 0.0)
        allowed = (max(MEMORY_GROWTH_MIB, MEMORY_GROWTH_FRACTION * baseline[name])
                   + FIXED_CACHES_MIB.get(name, 0.0))
        ok = last - baseline[name] <= allowed
        growth_ok &= ok
        peak_mib = max(m.get(name, 0.0) for m in mib)
        say(f"  {name:<16} {baseline[name]:7.0f} -> {last:7.0f} (max {peak_mib:.0f}; "
            f"growth allowed {allowed:.0f}) {verdict(ok)}")
    say(f"  total            {sum(baseline.values()):7.0f} -> {sum(mib[-1].values()):7.0f}")
    in_flight = CONNECTIONS * len(minutes)  # answered after wrk stopped counting
    logged_ok = answered <= rows <= answered + in_flight
    say(f"log           backlog and spool back to 0 {settled_s:.0f} s after the last minute; "
        f"rows written {rows:,} for {answered:,} answers counted by wrk (+ up to "
        f"{in_flight} in flight when each run stopped) {verdict(logged_ok)}")
    return 0 if errors == 0 and growth_ok and logged_ok else 1


def statistics_line(minutes: list) -> str:
    rates = [r.requests_per_second for r in minutes]
    return f"{min(rates):,.0f}-{max(rates):,.0f} req/s per minute"


if __name__ == "__main__":
    raise SystemExit(main())
