"""Business traffic for the predictor: prediction requests from a generated table,
and, optionally, the ground truth for each answered prediction.

Requests are bounded (the table's rows) and go only to the URL given.
"""

from __future__ import annotations

import argparse
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
import requests

from core.schema import Schema
from core.task import task_of


@dataclass
class TrafficStats:
    requests: int = 0
    ok: int = 0
    client_errors: int = 0      # 4xx: the predictor refused the input
    server_errors: int = 0      # 5xx or no answer: a failure
    predictions: int = 0
    feedback_sent: int = 0
    prediction_ids: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def failed(self) -> int:
        return self.server_errors


def records_from_frame(frame: pd.DataFrame, schema: Schema) -> list[dict]:
    """The table's rows as JSON-ready request records (NaN/NA becomes null)."""
    records = []
    for row in frame[schema.feature_names].astype(object).to_dict(orient="records"):
        records.append({k: _json_value(v) for k, v in row.items()})
    return records


def _json_value(value: object) -> object:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()  # type: ignore[union-attr]
    return value


def send_traffic(
    base_url: str,
    frame: pd.DataFrame,
    schema: Schema,
    *,
    batch_size: int = 1,
    concurrency: int = 4,
    send_feedback: bool = False,
    timeout: float = 10.0,
    predict_key: str | None = None,
    feedback_key: str | None = None,
    ca_file: str | None = None,
) -> TrafficStats:
    """POST the table's rows to /predict (one record or `batch_size` per request), with
    the API keys (bearer) when the predictor asks for them; `ca_file`: the certificate
    to check an https URL's TLS against (the front door's self-signed one)."""
    records = records_from_frame(frame, schema)
    # The outcomes as feedback takes them: 0/1 integers, or numbers (core.task).
    labels = (task_of(schema).canonical(frame[schema.target]).tolist()
              if schema.target in frame else None)
    stats = TrafficStats()
    chunks = [(i, records[i:i + batch_size]) for i in range(0, len(records), batch_size)]
    local = threading.local()
    outcomes: list[tuple[str, float]] = []

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    # Per call: REQUESTS_CA_BUNDLE in the environment would win over session.verify.
    verify: bool | str = ca_file or True

    predict_headers = {"Authorization": f"Bearer {predict_key}"} if predict_key else {}
    feedback_headers = {"Authorization": f"Bearer {feedback_key}"} if feedback_key else {}

    def send(start: int, chunk: list[dict]) -> None:
        body = chunk[0] if batch_size == 1 else chunk
        try:
            resp = session().post(f"{base_url}/predict", json=body, timeout=timeout,
                                  headers=predict_headers, verify=verify)
        except requests.RequestException:
            with stats._lock:
                stats.requests += 1
                stats.server_errors += 1
            return
        answers: list[dict] = []
        with stats._lock:
            stats.requests += 1
            if resp.status_code == 200:
                data = resp.json()
                answers = data["predictions"] if batch_size != 1 else [data]
                stats.ok += 1
                stats.predictions += len(answers)
                stats.prediction_ids.extend(a["prediction_id"] for a in answers)
            elif resp.status_code < 500:
                stats.client_errors += 1
            else:
                stats.server_errors += 1
        if labels is not None:
            with stats._lock:
                outcomes.extend((a["prediction_id"], labels[start + i])
                                for i, a in enumerate(answers))

    def send_outcome(prediction_id: str, outcome: float) -> None:
        # Under the target's name, as the schema declares it (0/1, or a number).
        resp = session().post(f"{base_url}/feedback", timeout=timeout, headers=feedback_headers,
                              json={"prediction_id": prediction_id, schema.target: outcome},
                              verify=verify)
        if resp.status_code == 200:
            with stats._lock:
                stats.feedback_sent += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(send, start, chunk) for start, chunk in chunks]:
            future.result()
        # Ground truth arrives later than the prediction, as it does in the business.
        if send_feedback:
            for future in [pool.submit(send_outcome, pid, y) for pid, y in outcomes]:
                future.result()
    return stats


def main(argv: list[str] | None = None) -> None:
    from core.settings import Settings
    from simulation.demo_tables import BUSINESSES, NoDemoTable, demo_table

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        description="Send the generated rows of the schema's business (SCHEMA_PATH) to the "
                    "predictor.")
    parser.add_argument("--url", default="http://127.0.0.1:9696",
                        help="the predictor (make serve), or the stack's front door "
                             "(PUBLIC_URL)")
    parser.add_argument("--ca-file", default=None,
                        help="certificate to check an https URL against (the front door's "
                             "self-signed one: docker compose cp "
                             "gateway:/etc/onebox/gateway/tls/cert.pem gateway-ca.pem)")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=settings.seed + 1)
    parser.add_argument("--scenario", default="none",
                        help="a drift scenario of the business (" + "; ".join(
                            f"{name}: {', '.join(b.scenarios)}"
                            for name, b in BUSINESSES.items()) + ")")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--feedback", action="store_true", help="also send the true outcomes")
    parser.add_argument("--predict-key", default=os.environ.get("ONEBOX_PREDICT_KEY"),
                        help="API key for /predict (default ONEBOX_PREDICT_KEY)")
    parser.add_argument("--feedback-key", default=os.environ.get("ONEBOX_FEEDBACK_KEY"),
                        help="API key for /feedback (default ONEBOX_FEEDBACK_KEY)")
    args = parser.parse_args(argv)
    schema = Schema.load(settings.schema_path)
    try:
        frame = demo_table(schema, args.rows, args.seed, args.scenario)
    except NoDemoTable as exc:
        parser.exit(2, f"{settings.schema_path}: {exc}\n")
    stats = send_traffic(args.url, frame, schema, batch_size=args.batch_size,
                         concurrency=args.concurrency, send_feedback=args.feedback,
                         predict_key=args.predict_key, feedback_key=args.feedback_key,
                         ca_file=args.ca_file)
    print(f"requests {stats.requests}: ok {stats.ok}, refused (4xx) {stats.client_errors}, "
          f"failed {stats.failed}; predictions {stats.predictions}, "
          f"feedback {stats.feedback_sent}")


if __name__ == "__main__":
    main()
