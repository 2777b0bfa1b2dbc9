"""Drift reports: HTML per window against the champion's reference, and the index page:
trend charts (one point per window, oldest left), the windows newest first in words that
read the right way, request volume and refusals from a real Prometheus, the model cards."""

from __future__ import annotations

import html
import json
import re
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from core import registry
from core.page_header import PAGES, header_html
from core.registry import PREDICTION_COLUMN
from core.schema import Schema, model_frame
from core.store import PredictionRecord, PredictionStore
from monitoring.window import estimate_from_served
from operations import processes
from reporting.drift_page import p_text, summary_section, with_summary
from reporting.model_card import card_path, card_summary_path
from reporting.report import (
    EmptyWindow,
    _classification_snapshot,
    report_latest_window,
    request_figures,
    write_index,
    write_report,
)
from simulation.generator import SCENARIOS, Drift, generate
from simulation.traffic import records_from_frame
from tests import browser
from tests.conftest import set_up_store, settings_for
from tests.test_prometheus import NotYet, eventually, running, tool

SVG = "{http://www.w3.org/2000/svg}"


def window(champion: registry.LoadedModel, schema: Schema, rows: int, seed: int,
           scenario: str = "none") -> pd.DataFrame:
    frame = generate(rows, seed, SCENARIOS[scenario], schema)
    frame[PREDICTION_COLUMN] = champion.predict_proba(model_frame(schema, frame))
    return frame


@pytest.mark.slow
def test_reference_sample_travels_with_the_model(champion: registry.LoadedModel,
                                                 schema: Schema) -> None:
    reference = champion.reference()
    assert len(reference) > 1000
    assert set(schema.feature_names) <= set(reference.columns)
    scored = reference[PREDICTION_COLUMN].notna()
    assert scored.sum() > 500
    assert reference.loc[scored, PREDICTION_COLUMN].between(0, 1).all()
    # Its predictions are out of sample, as new customers' are: rows the model did not
    # train on (it ranks its own training rows, whose prediction is left empty, better
    # than it will ever rank anyone new), so the prediction's drift can count.
    assert champion.reference_out_of_sample
    served = champion.predict_proba(model_frame(schema, reference))
    labels = reference[schema.target]
    assert roc_auc_score(labels[~scored], served[~scored]) > roc_auc_score(
        labels[scored], reference.loc[scored, PREDICTION_COLUMN]) + 0.01


@pytest.mark.slow
def test_drifted_window_names_the_drifted_features_and_clean_one_none(
    champion: registry.LoadedModel, schema: Schema, tmp_path: Path
) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    clean = write_report(window(champion, schema, 2000, seed=11), champion, tmp_path,
                         title="clean", now=t0)
    drifted = write_report(window(champion, schema, 2000, seed=12, scenario="economic_shift"),
                           champion, tmp_path, title="drifted", now=t0 + timedelta(hours=1))

    assert clean.summary_data["drifted_features"] == []
    assert clean.summary_data["drift_share"] == 0.0
    assert set(drifted.summary_data["drifted_features"]) == {
        "customer_age", "credit_limit", "total_revolving_bal"}
    assert drifted.summary_data["drift_share"] == pytest.approx(3 / 11)
    assert drifted.summary_data["model_version"] == "1"
    # The label-free quality estimate of each window, and the line its alert is drawn at.
    for files, frame_seed, scenario in ((clean, 11, "none"), (drifted, 12, "economic_shift")):
        expected = estimate_from_served(champion, window(
            champion, schema, 2000, frame_seed, scenario)[PREDICTION_COLUMN].to_numpy())
        assert files.summary_data["estimated"]["auc"] == pytest.approx(expected.auc)
        assert files.summary_data["quality"]["estimated_auc"] == pytest.approx(expected.auc)
    floor = champion.holdout_auc - 0.05
    assert drifted.summary_data["estimated_auc_floor"] == pytest.approx(floor)
    # Self-contained HTML, and the JSON summary beside it.
    page = drifted.html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") or "<html" in page[:500].lower()
    assert "credit_limit" in page
    assert json.loads(drifted.summary.read_text())["report"] == drifted.html.name

    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "2 report(s)" in index
    # Newest first, each linking its report.
    assert index.index(drifted.html.name) < index.index(clean.html.name)
    assert "customer_age, credit_limit, total_revolving_bal" in index
    assert "estimated AUC" in index and f"alert &lt; {floor:.3f}" in index


@pytest.mark.slow
def test_report_of_the_latest_logged_window(trained_home: Path, tmp_path: Path,
                                            schema: Schema,
                                            champion: registry.LoadedModel) -> None:
    store_url = set_up_store(f"sqlite:///{tmp_path / 'predictions.db'}")
    settings = settings_for(trained_home, PREDICTION_STORE_URL=store_url,
                            REPORTS_DIR=str(tmp_path / "reports"),
                            MODEL_CACHE_DIR=str(tmp_path / "cache"))
    with pytest.raises(EmptyWindow):
        report_latest_window(settings, window_rows=500)

    # Old clean traffic, then 1,200 newer rows of premium-card drift: the window of 1,200
    # must see only the newer rows.
    store = PredictionStore(store_url)
    start = datetime.now(UTC) - timedelta(hours=2)
    frames = [window(champion, schema, 1500, seed=21),
              window(champion, schema, 1200, seed=22, scenario="premium_cards")]
    rows = pd.concat(frames, ignore_index=True)
    store.log([
        PredictionRecord(str(uuid.uuid4()), "churn-classifier", "1", rec,
                         float(p), int(p >= 0.5), start + timedelta(seconds=i))
        for i, (rec, p) in enumerate(zip(records_from_frame(rows, schema),
                                         rows[PREDICTION_COLUMN], strict=True))
    ])
    store.dispose()
    files = report_latest_window(settings, window_rows=1200)
    assert files.summary_data["current_rows"] == 1200
    assert files.summary_data["drifted_features"] == ["card_category"]
    assert files.html.parent == tmp_path / "reports"
    assert files.quality_html is None  # no feedback yet
    assert "no labels yet" in files.index.read_text(encoding="utf-8")


@pytest.mark.slow
def test_labelled_window_gets_a_classification_quality_report(
    trained_home: Path, tmp_path: Path, schema: Schema, champion: registry.LoadedModel
) -> None:
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    settings = settings_for(trained_home, PREDICTION_STORE_URL=store_url,
                            REPORTS_DIR=str(tmp_path / "reports"),
                            MODEL_CACHE_DIR=str(tmp_path / "cache"))
    frame = window(champion, schema, 600, seed=31)
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = [str(uuid.uuid4()) for _ in range(len(frame))]
    store = PredictionStore(store_url)
    store.migrate()
    store.log([
        PredictionRecord(pid, "churn-classifier", "1", rec, float(p),
                         int(p >= champion.threshold), start + timedelta(seconds=i))
        for i, (pid, rec, p) in enumerate(zip(ids, records_from_frame(frame, schema),
                                              frame[PREDICTION_COLUMN], strict=True))
    ])
    # The real outcome arrives for the first 400 predictions only.
    for pid, outcome in zip(ids[:400], frame[schema.target][:400], strict=True):
        store.record_feedback(pid, int(outcome))
    store.dispose()

    files = report_latest_window(settings, window_rows=600)

    quality = files.summary_data["quality"]
    assert quality["labels"] == 400
    labelled = frame.iloc[:400]
    assert quality["auc"] == pytest.approx(
        roc_auc_score(labelled[schema.target], labelled[PREDICTION_COLUMN]), abs=1e-9)
    assert quality["auc"] > 0.6  # the champion really separates churners here
    assert files.quality_html is not None and files.quality_html.exists()
    page = files.quality_html.read_text(encoding="utf-8")
    assert "<html" in page[:1000].lower() and "ROC" in page
    index = files.index.read_text(encoding="utf-8")
    assert f'href="{files.quality_html.name}"' in index
    assert f"{quality['auc']:.3f}" in index


@pytest.mark.slow
def test_the_quality_reports_figures_are_those_of_the_logged_decisions(
    champion: registry.LoadedModel, schema: Schema,
) -> None:
    """The served threshold, not Evidently's 0.5: the figures a person reads in the quality
    report are those of the decisions the predictor answered and logged (the served
    threshold is write_report's `model.threshold`).  At 0.5 they differed by 0.1-0.3."""
    frame = window(champion, schema, 600, seed=33)
    proba = frame[PREDICTION_COLUMN].to_numpy()
    actual = frame[schema.target].to_numpy()
    for threshold in (champion.threshold, 0.2):
        decision = (proba >= threshold).astype(int)
        logged = pd.DataFrame({"actual": actual, "decision": decision,
                               PREDICTION_COLUMN: proba})
        shown = {m["metric_name"].split("(")[0]: m["value"] for m in
                 _classification_snapshot(logged, replace(champion, threshold=threshold))
                 .dict()["metrics"]}
        for name, score in {"Accuracy": accuracy_score, "Precision": precision_score,
                            "Recall": recall_score, "F1Score": f1_score}.items():
            assert shown[name] == pytest.approx(score(actual, decision)), (threshold, name)
    assert precision_score(actual, proba >= 0.2) != pytest.approx(
        precision_score(actual, proba >= 0.5))  # a 0.5 cut would show other figures


# --- reading the index as a person (and a parser) would ---------------------------------


def charts(page: str) -> dict[str, ET.Element]:
    """The index's charts by title (the words before "(higher/lower is better)")."""
    found = {}
    for svg in re.findall(r"<svg\b.*?</svg>", page, re.S):
        element = ET.fromstring(svg)
        assert "chart" in element.get("class", "").split()
        title = element.find(f"{SVG}title").text
        found[title.removesuffix(" (higher is better)").removesuffix(" (lower is better)")] = \
            element
    return found


def points(chart: ET.Element) -> list[tuple[float, str, str]]:
    """(x, class, tooltip) of each point of a chart, left to right."""
    circles = [(float(c.get("cx")), c.get("class"), c.find(f"{SVG}title").text)
               for c in chart.iter(f"{SVG}circle")]
    return sorted(circles)


def table_rows(page: str, table: str) -> list[list[str]]:
    """The cells' text (tags stripped) of each body row of table.<table>."""
    body = re.search(rf'<table class="{table}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell))
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr\b[^>]*>(.*?)</tr>", body, re.S)]


def headers(page: str, table: str) -> dict[str, str]:
    """Header text -> its tooltip, for table.<table>."""
    head = re.search(rf'<table class="{table}"><thead>(.*?)</thead>', page, re.S).group(1)
    return dict((name, tip) for tip, name in re.findall(r'<th title="([^"]*)">(.*?)</th>',
                                                        head))


def summary(end: datetime, **changes: object) -> dict:
    """A window's summary as write_report writes it (the figures the index reads)."""
    base = {
        "title": f"window to {end:%H:%M}", "report": f"drift-{end:%Y%m%dT%H%M%S}.html",
        "created_at": (end + timedelta(minutes=1)).isoformat(),
        "model_name": "churn-classifier", "model_version": "1",
        "window_start": (end - timedelta(minutes=10)).isoformat(),
        "window_end": end.isoformat(), "drift_detected": False, "drift_share": 0.0,
        "drift_share_threshold": 1 / 11, "drifted_features": [], "drifted_relations": [],
        "prediction_drift": {"score": 1.0, "drifted": False, "method": "onebox_mw_ks",
                             "threshold": 0.0004},
        "current_rows": 1000,
        "quality": {"labels": 0, "auc": None, "precision": None, "recall": None,
                    "error_rate": None, "report": None},
        "quality_min_auc": 0.65, "requests": 600.0, "requests_per_minute": 60.0,
        "refusal_rate": 0.02, "volume_source": "prometheus", "volume_note": None,
    }
    return {**base, **changes}


def write_summaries(folder: Path, summaries: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in summaries:
        (folder / s["report"].replace(".html", ".json")).write_text(json.dumps(s))


T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)


def drifted_summary(end: datetime, **changes: object) -> dict:
    drifted = {"drift_detected": True, "drift_share": 3 / 11,
               "drifted_features": ["customer_age", "credit_limit"],
               "drifted_relations": ["total_revolving_bal | others"],
               "prediction_drift": {"score": 0.02, "drifted": True, "method": "onebox_mw_ks",
                                    "threshold": 0.04}}
    return summary(end, **{**drifted, **changes})


def test_index_charts_every_figure_one_point_per_window_oldest_left(tmp_path: Path) -> None:
    # Written out of order: the index orders by the windows' ends, not by file names.
    windows = [summary(T0 + timedelta(hours=2), refusal_rate=0.10, requests_per_minute=90.0,
                       quality={"labels": 400, "auc": 0.55, "report": None}),
               summary(T0, refusal_rate=0.01, requests_per_minute=30.0,
                       quality={"labels": 400, "auc": 0.80, "report": None}),
               drifted_summary(T0 + timedelta(hours=1), refusal_rate=0.05,
                               requests_per_minute=60.0,
                               quality={"labels": 400, "auc": 0.75, "report": None})]
    write_summaries(tmp_path, windows)
    page = write_index(tmp_path).read_text(encoding="utf-8")

    drawn = charts(page)
    assert set(drawn) == {"Drift share", "Live AUC", "Requests per minute",
                          "Refusal rate (4xx)"}  # no summary has an estimated AUC
    assert drawn["Drift share"].find(f"{SVG}title").text == "Drift share (lower is better)"
    assert drawn["Live AUC"].find(f"{SVG}title").text == "Live AUC (higher is better)"
    assert drawn["Refusal rate (4xx)"].find(f"{SVG}title").text.endswith("(lower is better)")
    for chart in drawn.values():
        assert len(points(chart)) == 3
    # Oldest left: the tooltips' times rise left to right, and so do the volumes.
    tips = [tip for _, _, tip in points(drawn["Requests per minute"])]
    assert tips == ["2026-05-01 08:00: 30.0", "2026-05-01 09:00: 60.0",
                    "2026-05-01 10:00: 90.0"]
    assert [tip.split(": ")[1] for _, _, tip in points(drawn["Refusal rate (4xx)"])] == [
        "1.0%", "5.0%", "10.0%"]
    # The drifted window (the middle one) is the only bad drift point; the limit is drawn.
    assert [cls for _, cls, _ in points(drawn["Drift share"])] == [
        "point", "point bad", "point"]
    assert drawn["Drift share"].find(f"{SVG}line[@class='limit']") is not None
    # AUC below the floor (0.65, from the summaries) is bad; the others are not.
    assert [cls for _, cls, _ in points(drawn["Live AUC"])] == ["point", "point", "point bad"]
    # Trends come before the table.
    assert page.index("<svg") < page.index('<table class="windows">')


def test_table_reads_the_right_way_newest_first(tmp_path: Path) -> None:
    write_summaries(tmp_path, [summary(T0), drifted_summary(T0 + timedelta(hours=1)),
                               summary(T0 + timedelta(hours=2))])
    page = write_index(tmp_path).read_text(encoding="utf-8")

    heads = headers(page, "windows")
    assert "drift share ↑ worse" in heads and "live AUC ↓ worse" in heads
    assert "refusal rate ↑ worse" in heads
    assert any(h.startswith("prediction drift") and "worse" in h for h in heads)
    assert all(tip for tip in heads.values())  # every header explains itself on hover
    rows = table_rows(page, "windows")
    assert [row[0] for row in rows] == ["2026-05-01 10:00:00", "2026-05-01 09:00:00",
                                        "2026-05-01 08:00:00"]
    column = list(heads).index(next(h for h in heads if h.startswith("prediction drift")))
    verdicts = [row[column] for row in rows]
    assert verdicts == ["no (p = 1.000)", "drifted (p = 0.020)", "no (p = 1.000)"]
    refusal = list(heads).index("refusal rate ↑ worse")
    assert [row[refusal] for row in rows] == ["2.0%"] * 3
    # Each row links its own drift report.
    assert re.findall(r'<a href="(drift-[^"]+)"', page) == [
        "drift-20260501T100000.html", "drift-20260501T090000.html",
        "drift-20260501T080000.html"]


def test_old_summaries_without_the_new_figures_still_render(tmp_path: Path) -> None:
    # A summary as the first reports wrote them: no window times, no volume, no floor,
    # the p-value alone; and a summary being written right now.
    old = {"title": "Last 1000 predictions", "report": "drift-20250101T000000000000Z.html",
           "created_at": "2025-01-01T00:00:00+00:00", "model_name": "churn-classifier",
           "model_version": "1", "drift_share": 0.0, "drifted_features": [],
           "current_rows": 1000, "prediction_drift": None}
    (tmp_path / "drift-20250101T000000000000Z.json").write_text(json.dumps(old))
    (tmp_path / "drift-20250102T000000000000Z.json").write_text('{"title": "half')
    write_summaries(tmp_path, [summary(T0, quality={"labels": 300, "auc": 0.7,
                                                "estimated_auc": 0.72, "report": None})])
    page = write_index(tmp_path).read_text(encoding="utf-8")

    assert "2 report(s)" in page
    rows = table_rows(page, "windows")
    heads = list(headers(page, "windows"))
    assert [row[0] for row in rows] == ["2026-05-01 08:00:00", "2025-01-01 00:00:00"]
    old_row = dict(zip(heads, rows[1], strict=True))
    assert old_row["requests / min"] == "n/a"
    assert old_row["refusal rate ↑ worse"] == "n/a"
    assert old_row["estimated AUC ↓ worse"] == "n/a"
    assert next(v for h, v in old_row.items() if h.startswith("prediction drift")) == "n/a"
    assert old_row["labels"] == "0" and old_row["quality report"] == "no labels yet"
    # One summary has an estimated AUC: its chart is drawn, with a gap for the old window.
    drawn = charts(page)
    assert len(points(drawn["Estimated AUC"])) == 1
    assert len(points(drawn["Requests per minute"])) == 1
    assert len(points(drawn["Drift share"])) == 2


def test_index_is_self_contained_and_escaped(tmp_path: Path) -> None:
    write_summaries(tmp_path, [drifted_summary(
        T0, title='<script>alert("x")</script>', model_name="churn<b>",
        drifted_features=["a&b <i>"])])
    page = write_index(tmp_path).read_text(encoding="utf-8")
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;" in page and "a&amp;b &lt;i&gt;" in page
    targets = re.findall(r'(?:href|src)="([^"]*)"', page)
    assert targets and not [t for t in targets if "://" in t or t.startswith("//")]
    assert "<link" not in page and "@import" not in page


def test_model_cards_are_listed_newest_first_and_windows_link_their_card(
    tmp_path: Path
) -> None:
    def card(version: str, decision: str, **extra: object) -> dict:
        return {"model_name": "churn-classifier", "version": version,
                "created_at": f"2026-04-0{version}T03:00:00+00:00", "holdout_auc": 0.76,
                "holdout_auc_ci": [0.741, 0.779], "gate_decision": decision,
                "gate_reason": "beats the champion by 0.004", "champion_version": None,
                "champion_auc": None, "run_id": "abc", "card": "x.html", **extra}

    for version, decision in (("1", "promoted"), ("2", "rejected")):
        path = card_summary_path(tmp_path, "churn-classifier", version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(card(version, decision)))
    card_path(tmp_path, "churn-classifier", "2").write_text("<html>card v2</html>")
    # A card's summary broken, and one being written aside: skipped.
    card_summary_path(tmp_path, "churn-classifier", "3").write_text('{"model_name": "chu')
    (tmp_path / "models" / ".churn-classifier-v4.json.123.tmp.json").write_text("{}")
    write_summaries(tmp_path, [summary(T0, model_version="2"),
                               summary(T0 + timedelta(hours=1), model_version="1")])
    page = write_index(tmp_path).read_text(encoding="utf-8")

    rows = table_rows(page, "models")
    assert [row[1] for row in rows] == ["v2", "v1"]
    # A summary from before gate_metric was written: judged on AUC.
    assert rows[0][3] == "AUC 0.760 [0.741, 0.779]"
    assert rows[0][4].startswith("rejected") and rows[1][4].startswith("promoted")
    assert rows[0][6] == "model card" and rows[1][6] == "card not written yet"
    assert "holdout score [CI]" in headers(page, "models")
    # The v2 window's model cell links v2's card; v1 has no card file, so no link.
    assert re.findall(r'href="(models/[^"]+)"', page) == ["models/churn-classifier-v2.html"] * 2
    windows = table_rows(page, "windows")
    assert [row[2] for row in windows] == ["churn-classifier v1", "churn-classifier v2"]


def test_a_regression_card_is_listed_with_its_error(tmp_path: Path) -> None:
    path = card_summary_path(tmp_path, "diabetes-progression", "2")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "model_name": "diabetes-progression", "version": "2", "gate_metric": "rmse",
        "created_at": "2026-04-02T03:00:00+00:00", "holdout_rmse": 54.123,
        "holdout_rmse_ci": [50.01, 58.37], "gate_decision": "rejected",
        "gate_reason": "does not beat champion v1", "champion_version": "1",
        "champion_rmse": 53.5, "holdout_auc": 0.99, "card": "x.html"}))
    [row] = table_rows(write_index(tmp_path).read_text(encoding="utf-8"), "models")
    assert row[3] == "RMSE 54.12 [50.01, 58.37]" and row[5] == "v1 (RMSE 53.5)"


# --- request volume and refusals: a real Prometheus scraping known counters --------------


class Counters:
    """What a predictor's /metrics says about onebox_http_requests_total, settable."""

    def __init__(self) -> None:
        self.values = {("/predict", "200"): 0, ("/predict", "401"): 0,
                       ("/predict", "422"): 0, ("/predict", "500"): 0,
                       ("/feedback", "422"): 0, ("/health", "200"): 0}

    def exposition(self) -> bytes:
        lines = ["# HELP onebox_http_requests_total HTTP requests by endpoint and status code.",
                 "# TYPE onebox_http_requests_total counter"]
        lines += [f'onebox_http_requests_total{{endpoint="{endpoint}",status="{status}"}} '
                  f"{value}" for (endpoint, status), value in self.values.items()]
        return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def metrics_target() -> Iterator[tuple[Counters, int]]:
    counters = Counters()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = counters.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield counters, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_target: tuple[Counters, int]) -> Iterator[str]:
    """A real Prometheus scraping the counters every second; its base URL."""
    port = processes.free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "predictor", "static_configs": [
            {"targets": [f"127.0.0.1:{metrics_target[1]}"]}]}]}))
    argv = [tool("prometheus"), f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with running(argv, tmp_path / "prometheus.log") as process:
        url = f"http://127.0.0.1:{port}"

        def ready() -> None:
            if process.poll() is not None:
                raise RuntimeError((tmp_path / "prometheus.log").read_text()[-2000:])
            try:
                requests.get(f"{url}/-/ready", timeout=2).raise_for_status()
            except requests.RequestException as exc:
                raise NotYet(str(exc)) from exc

        eventually(ready, timeout=60)
        yield url


def scraped_sample(url: str, series: str) -> tuple[float, float]:
    """(timestamp, value) of the newest scraped sample of `series`."""
    result = requests.get(f"{url}/api/v1/query", params={"query": series},
                          timeout=5).json()["data"]["result"]
    if not result:
        raise NotYet(f"{series} not scraped yet")
    value = result[0]["value"][1]
    timestamp = requests.get(f"{url}/api/v1/query", params={"query": f"timestamp({series})"},
                             timeout=5).json()["data"]["result"][0]["value"][1]
    return float(timestamp), float(value)


@pytest.mark.slow
def test_request_volume_and_refusal_rate_come_from_prometheus(
    prometheus: str, metrics_target: tuple[Counters, int], champion: registry.LoadedModel,
    schema: Schema, tmp_path: Path
) -> None:
    counters, _ = metrics_target
    ok = '{endpoint="/predict",status="200"}'
    series = f"onebox_http_requests_total{ok}"
    start = datetime.now(UTC)

    def zero_scraped_after_start() -> None:
        stamp, value = scraped_sample(prometheus, series)
        if stamp <= start.timestamp() or value != 0:
            raise NotYet("no sample inside the window yet")

    eventually(zero_scraped_after_start, timeout=60)
    # During the window: 200 calls to /predict, 40 refused for their key, 10 invalid
    # (so 25% refused), one 5xx that is no refusal; other endpoints must not count.
    counters.values.update({("/predict", "200"): 149, ("/predict", "401"): 40,
                            ("/predict", "422"): 10, ("/predict", "500"): 1,
                            ("/feedback", "422"): 70, ("/health", "200"): 900})

    def new_counts_scraped() -> float:
        stamp, value = scraped_sample(prometheus, series)
        if value != 149:
            raise NotYet("new counts not scraped yet")
        return stamp

    eventually(new_counts_scraped, timeout=60)
    time.sleep(3)  # a few more scrapes at the same counts
    end = datetime.now(UTC)
    frame = window(champion, schema, 400, seed=51)
    frame["created_at"] = pd.date_range(start, end, periods=len(frame))

    files = write_report(frame, champion, tmp_path / "reports", title="with prometheus",
                         prometheus_url=prometheus)

    s = files.summary_data
    assert s["volume_source"] == "prometheus"
    assert s["refusal_rate"] == pytest.approx(0.25, abs=0.01)
    # increase() extrapolates a little past the last scrape: about 200, not exactly.
    assert s["requests"] == pytest.approx(200, rel=0.2)
    seconds = (end - start).total_seconds()
    assert s["requests_per_minute"] == pytest.approx(s["requests"] * 60 / seconds, rel=0.2)
    assert json.loads(files.summary.read_text())["refusal_rate"] == s["refusal_rate"]
    page = files.index.read_text(encoding="utf-8")
    row = dict(zip(headers(page, "windows"), table_rows(page, "windows")[0], strict=True))
    assert row["refusal rate ↑ worse"] == f"{s['refusal_rate']:.1%}"
    assert row["requests / min"] == f"{s['requests_per_minute']:.1f}"
    assert len(points(charts(page)["Refusal rate (4xx)"])) == 1


def test_prometheus_unset_or_away_leaves_nulls_and_the_logs_volume() -> None:
    start, end = T0, T0 + timedelta(minutes=10)
    unset = request_figures(None, start, end, rows=600)
    assert unset["requests"] is None and unset["refusal_rate"] is None
    assert unset["requests_per_minute"] == pytest.approx(60.0)
    assert unset["volume_source"] == "prediction log"

    # Nothing listens: refused at once.
    refused = request_figures(f"http://127.0.0.1:{processes.free_port()}", start, end, 600)
    assert refused["refusal_rate"] is None and refused["volume_source"] == "prediction log"
    assert "did not answer" in refused["volume_note"]
    # It listens but never answers: the short timeout, not a hung report.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        began = time.monotonic()
        hung = request_figures(f"http://127.0.0.1:{silent.getsockname()[1]}", start, end, 600)
        assert time.monotonic() - began < 10
    assert hung["refusal_rate"] is None and hung["requests_per_minute"] == pytest.approx(60.0)
    # A window without timestamps: nothing to ask, nothing to divide by.
    assert request_figures(None, None, None, 600)["requests_per_minute"] is None


@pytest.mark.slow
def test_report_is_written_when_prometheus_is_away(
    champion: registry.LoadedModel, schema: Schema, tmp_path: Path
) -> None:
    frame = window(champion, schema, 400, seed=52)
    end = datetime.now(UTC)
    frame["created_at"] = pd.date_range(end - timedelta(minutes=20), end, periods=len(frame))
    files = write_report(frame, champion, tmp_path, title="prometheus away",
                         prometheus_url=f"http://127.0.0.1:{processes.free_port()}")
    s = files.summary_data
    assert files.html.exists() and files.index.exists()
    assert s["requests"] is None and s["refusal_rate"] is None
    assert s["volume_source"] == "prediction log"
    assert s["requests_per_minute"] == pytest.approx(20.0, rel=0.01)  # 400 rows in 20 min
    page = files.index.read_text(encoding="utf-8")
    row = dict(zip(headers(page, "windows"), table_rows(page, "windows")[0], strict=True))
    assert row["refusal rate ↑ worse"] == "n/a"
    assert row["requests / min"] == "20.0 (log)"


@pytest.mark.slow
def test_real_windows_chart_in_time_order_with_the_drifted_one_marked(
    champion: registry.LoadedModel, schema: Schema, tmp_path: Path
) -> None:
    # Reported out of order (a backfill): the index follows the windows' own times.  The
    # drifted window: older customers with much lower balances, which moves the
    # predictions too.
    balances_fall = Drift(scale={"total_revolving_bal": 0.4}, offset={"customer_age": 5})
    plan = [(T0 + timedelta(hours=2), 61, SCENARIOS["none"]), (T0, 62, SCENARIOS["none"]),
            (T0 + timedelta(hours=1), 63, balances_fall)]
    written = []
    for n, (end, seed, drift) in enumerate(plan):
        frame = generate(1000, seed, drift, schema)
        frame[PREDICTION_COLUMN] = champion.predict_proba(model_frame(schema, frame))
        frame["created_at"] = pd.date_range(end - timedelta(minutes=30), end,
                                            periods=len(frame))
        written.append(write_report(frame, champion, tmp_path, title=f"window {n}",
                                    now=datetime.now(UTC) + timedelta(seconds=n)).summary_data)
    later, earlier, drifted = written
    assert drifted["drift_detected"] and drifted["prediction_drift"]["drifted"]
    assert not earlier["drift_detected"] and not later["drift_detected"]
    page = (tmp_path / "index.html").read_text(encoding="utf-8")

    share = points(charts(page)["Drift share"])
    assert [tip.split(": ")[0] for _, _, tip in share] == [
        "2026-05-01 08:00", "2026-05-01 09:00", "2026-05-01 10:00"]
    assert [cls for _, cls, _ in share] == ["point", "point bad", "point"]
    rows = table_rows(page, "windows")
    assert [row[0] for row in rows] == ["2026-05-01 10:00:00", "2026-05-01 09:00:00",
                                        "2026-05-01 08:00:00"]
    heads = list(headers(page, "windows"))
    verdicts = [row[next(i for i, h in enumerate(heads) if h.startswith("prediction drift"))]
                for row in rows]
    assert verdicts[1].startswith("drifted (p = ")
    assert verdicts[0].startswith("no (p = ") and verdicts[2].startswith("no (p = ")
    assert rows[1][heads.index("drift share ↑ worse")] == f"{drifted['drift_share']:.2f}"


# --- the pages as a person sees them: chromium at 1280 x 800 ---------------------------

# Every box of the page (and the page itself) whose content is wider than the box: text or
# a table cut off, or a page that scrolls sideways.  Inline boxes have no width of their own.
OVERFLOWING = """
const found = [];
const boxes = [document.documentElement, document.body];
for (const el of [...boxes, ...document.body.querySelectorAll('*')]) {
  if (el.closest('svg')) continue;
  if (getComputedStyle(el).display === 'none' || el.clientWidth === 0) continue;
  if (el.scrollWidth > el.clientWidth + 1)
    found.push(`${el.tagName}.${el.className} ${el.scrollWidth} > ${el.clientWidth}: ` +
               (el.textContent || '').trim().slice(0, 60));
}
return found;
"""
# Each chart's texts outside its picture (a clipped tick label, "00.0%"), and its points
# outside its plot area.
CHART_FAULTS = """
const found = [];
for (const svg of document.querySelectorAll('svg.chart')) {
  const name = svg.getAttribute('aria-label');
  const box = svg.viewBox.baseVal;
  for (const text of svg.querySelectorAll('text')) {
    const b = text.getBBox();
    if (b.x < 0 || b.y < 0 || b.x + b.width > box.width || b.y + b.height > box.height)
      found.push(`${name}: text "${text.textContent}" outside the picture`);
  }
  const plot = svg.querySelector('rect.plot');
  if (!plot) continue;
  const x = plot.x.baseVal.value, y = plot.y.baseVal.value;
  const w = plot.width.baseVal.value, h = plot.height.baseVal.value;
  for (const point of svg.querySelectorAll('circle')) {
    const cx = point.cx.baseVal.value, cy = point.cy.baseVal.value;
    if (cx < x || cx > x + w || cy < y || cy > y + h)
      found.push(`${name}: point ${cx},${cy} outside the plot`);
  }
}
return found;
"""


def at_1280(chrome: object) -> None:
    """A 1280 x 800 screen (the window's size would leave less to the page)."""
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # type: ignore[attr-defined]
        "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})


def header_links(chrome: object) -> list[tuple[str, str | None]]:
    """(href as written, aria-current) of each link of the shared header."""
    return [(a.get_dom_attribute("href"), a.get_dom_attribute("aria-current"))  # type: ignore[attr-defined]
            for a in chrome.find_elements("css selector", "nav.onebox-nav a")]  # type: ignore[attr-defined]


PLOT_POINTS = """
const svg = [...document.querySelectorAll('svg.chart')]
  .find(s => s.getAttribute('aria-label').startsWith(arguments[0]));
const p = svg.querySelector('rect.plot');
const x = p.x.baseVal.value, y = p.y.baseVal.value;
const w = p.width.baseVal.value, h = p.height.baseVal.value;
return [...svg.querySelectorAll('circle')].map(c =>
  [(c.cx.baseVal.value - x) / w, (y + h - c.cy.baseVal.value) / h]);
"""


def plot_points(chrome: object, title: str) -> list[tuple[float, float]]:
    """(x, y) of the points of the chart titled `title`, as a share of its plot area's
    width and height (0, 0: bottom left)."""
    return chrome.execute_script(PLOT_POINTS, title)  # type: ignore[attr-defined]


EXPECTED_HEADER = [(path, "page" if path == "/reports/" else None) for path, _, _ in PAGES]


@pytest.mark.slow
def test_index_reads_in_a_real_browser(tmp_path: Path) -> None:
    # The refusal rate flat at 2% (then unknown), the drift share varying.
    write_summaries(tmp_path, [summary(T0), drifted_summary(T0 + timedelta(hours=1)),
                               summary(T0 + timedelta(hours=2), refusal_rate=None,
                                       requests=None, volume_source="prediction log")])
    cards = tmp_path / "models"
    cards.mkdir()
    (cards / "churn-classifier-v1.json").write_text(json.dumps({
        "model_name": "churn-classifier", "version": "1",
        "created_at": "2026-04-30T03:00:00+00:00", "holdout_auc": 0.76,
        "holdout_auc_ci": [0.74, 0.78], "gate_decision": "promoted",
        "gate_reason": "no champion yet", "champion_version": None, "champion_auc": None}))
    (cards / "churn-classifier-v1.html").write_text("<!doctype html><title>card</title>")
    index = write_index(tmp_path)
    # The widest table there is: both tasks' live figures and estimates, long names, many
    # drifted columns, a long title.
    wide = tmp_path / "wide"
    many = [f"feature_number_{i}_with_a_long_name" for i in range(8)]
    write_summaries(wide, [drifted_summary(
        T0 + timedelta(minutes=i), title="Demo: a very long phase name for a window " * 2,
        model_name="diabetes-progression-regression-model", model_version="12",
        drifted_features=many, drifted_relations=[f"{n} | others" for n in many],
        requests_per_minute=12345.6,
        quality={"labels": 1000, "auc": 0.7, "rmse": 54.123, "estimated_auc": 0.71,
                 "estimated_rmse": 55.5, "report": "quality-x.html"}) for i in range(2)])
    wide_index = write_index(wide)

    with browser.open_browser() as chrome:
        at_1280(chrome)
        chrome.get(index.as_uri())
        text = browser.wait_for_text(chrome, "Model versions")
        drawn = chrome.find_elements("css selector", "svg.chart")
        assert len(drawn) == 4
        assert all(chart.is_displayed() and chart.size["width"] > 100 for chart in drawn)
        assert len(chrome.find_elements("css selector", "svg.chart circle.bad")) == 1
        assert "drifted (p = 0.020)" in text and "no (p = 1.000)" in text
        assert "drift share ↑ worse" in text and "refusal rate ↑ worse" in text
        assert "0.760 [0.740, 0.780]" in text
        # Nothing wider than its box at 1280 px: the page, the tables, the texts.
        assert chrome.execute_script(OVERFLOWING) == []
        assert chrome.execute_script(CHART_FAULTS) == []
        # The flat rate sits at 2% of a 0-100% axis; the varying share spans its points.
        assert [round(y, 3) for _, y in plot_points(chrome, "Refusal rate")] == [0.02, 0.02]
        share = plot_points(chrome, "Drift share")
        assert [round(y, 3) for _, y in share] == [0.0, round(3 / 11, 3), 0.0]
        assert [x for x, _ in share] == [0.0, 0.5, 1.0]
        # Each column and each chart explained in words on the page, not only on hover.
        for table in ("windows", "models"):
            heads = [th.text.replace("\n", " ") for th in
                     chrome.find_elements("css selector", f"table.{table} th")]
            legend = chrome.find_elements(
                "xpath", f'//table[@class="{table}"]/following-sibling::dl[1]/*')
            assert all(item.is_displayed() and item.text for item in legend)
            assert [dt.text for dt in legend[0::2]] == heads
        captions = chrome.find_elements("css selector", "figure.trend figcaption")
        assert len(captions) == 4 and all(c.is_displayed() and c.text for c in captions)
        assert header_links(chrome) == EXPECTED_HEADER
        browser.save_screenshot(chrome, "reports-index")
        chrome.find_element("link text", "model card").click()
        assert chrome.current_url.endswith("/models/churn-classifier-v1.html")

        chrome.get(wide_index.as_uri())
        browser.wait_for_text(chrome, "Model versions")
        heads = [th.text for th in chrome.find_elements("css selector", "table.windows th")]
        assert len(heads) == 15 and "estimated RMSE ↑ worse" in heads
        assert chrome.execute_script(OVERFLOWING) == []
        assert chrome.execute_script(CHART_FAULTS) == []
        # Every column shows, the last one (the quality report's link) included.
        link = chrome.find_element("link text", "regression quality")
        assert link.is_displayed() and link.rect["x"] + link.rect["width"] <= 1280


def drift_summary_of(p_values: dict[str, float], threshold: float, **extra: object) -> dict:
    """A drift summary as DriftResult.summary writes it: features, relations "x | others",
    the joint test and the prediction, each p-value against one threshold."""
    def entry(p: float, method: str = "onebox_mw_ks") -> dict:
        return {"score": p, "threshold": threshold, "method": method, "drifted": p < threshold}

    features = {n: entry(p) for n, p in p_values.items()
                if " | " not in n and n not in ("features jointly", "prediction")}
    conditional = {n.removesuffix(" | others"): entry(p) for n, p in p_values.items()
                   if n.endswith(" | others")}
    base = {
        "title": "Demo: drifted phase", "model_name": "churn-classifier", "model_version": "3",
        "window_start": "2026-05-01T08:01:00+00:00",
        "window_end": "2026-05-01T08:03:30+00:00", "current_rows": 1000,
        "reference_rows": 4000, "false_alarm_rate": 0.005, "prediction_drift_alarm": True,
        "drift_share_threshold": 1 / len(features),
        "features": features, "conditional": conditional,
        "joint_drift": {**entry(p_values["features jointly"], "onebox_c2st"), "auc": 0.8},
        "prediction_drift": entry(p_values["prediction"]),
        "drifted_features": [n for n, c in features.items() if c["drifted"]],
        "drifted_relations": [f"{n} | others" for n, c in conditional.items() if c["drifted"]]
        + (["features jointly"] if p_values["features jointly"] < threshold else []),
    }
    base["drift_detected"] = bool(base["drifted_features"] or base["drifted_relations"])
    return {**base, **extra}


def test_a_drift_reports_summary_opens_with_the_drifted_columns_and_says_what_they_are(
) -> None:
    threshold = 0.005 / 17  # the budget split over 11 features, 4 relations, joint, prediction
    p_values = {"gender": 0.6, "customer_age": 7.5e-58, "credit_limit": 3.5e-27,
                "dependent_count": 1.0, "months_on_book": 0.74, "card_category": 0.31,
                "marital_status": 0.95, "income_category": 0.59, "education_level": 0.081,
                "total_relationship_count": 1.0, "total_revolving_bal": 6.4e-22,
                "credit_limit | others": 1.9e-38, "customer_age | others": 0.2,
                "months_on_book | others": 0.0004, "income_category | others": 3e-11,
                "features jointly": 2.9e-82, "prediction": 0.137}
    s = drift_summary_of(p_values, threshold)
    section = summary_section(s, card_href="models/churn-classifier-v3.html")
    rows = table_rows(section, "onebox-tests")
    drifted = sorted((p, n) for n, p in p_values.items() if p < threshold)
    assert [row[0] for row in rows[:len(drifted)]] == [n for _, n in drifted]
    assert all(row[4] == "drifted" for row in rows[:len(drifted)])
    assert all(row[4] == "no" for row in rows[len(drifted):])
    # The others after, by p-value; just above the threshold is not drifted.
    rest = [float(row[3]) for row in rows[len(drifted):]]
    assert rest == sorted(rest) and rows[len(drifted)][0] == "months_on_book | others"
    assert [row[3] for row in rows[:2]] == ["2.9e-82", "7.5e-58"]
    text = html.unescape(re.sub(r"<[^>]+>", " ", section))
    text = re.sub(r"\s+", " ", text)
    # The threshold rounded, never as the float it is.
    assert "p < 0.00029" in text and repr(threshold) not in text and "0.000294" not in text
    # What the rows beyond the features are.
    assert "17 columns where the index counts 11 features" in text
    assert "4 relations “feature | others”" in text
    assert "the joint test “features jointly”" in text and "the prediction" in text
    # The window, the model (linking its card), the phase, the verdict, the way back.
    assert "2026-05-01 08:01:00 to 08:03:30 UTC (2.5 min), 1,000 logged predictions" in text
    assert 'href="models/churn-classifier-v3.html">churn-classifier v3</a>' in section
    assert "Drift report: Demo: drifted phase" in text and "Data drift detected" in text
    assert 'href="index.html"' in section and header_html("/reports/") in section
    # A prediction that does not count is shown as such.
    shown_only = summary_section({**s, "prediction_drift_alarm": False})
    assert "the model's prediction (shown, not counted)" in html.unescape(shown_only)


def test_the_summary_goes_first_in_evidentlys_page() -> None:
    page = ("<!DOCTYPE html><html><head><meta charset='UTF-8'></head>\n<body>\n"
            "<div id='root_x'></div><script>draw()</script></body></html>")
    shown = with_summary(page, "<div id='ours'>ours</div>", "Drift report: <phase>")
    assert shown.index("<body>") < shown.index("id='ours'") < shown.index("root_x")
    assert "<title>Drift report: &lt;phase&gt;</title>" in shown
    assert shown.index("<head>") < shown.index("<title>") < shown.index("</head>")
    # A page without those tags still gets the summary first.
    assert with_summary("<div>x</div>", "<p>ours</p>", "t").index("<p>ours") < \
        with_summary("<div>x</div>", "<p>ours</p>", "t").index("<div>x")


def test_windows_close_in_time_read_apart_under_the_charts(tmp_path: Path) -> None:
    """Windows seconds apart (the demo's phases) read in seconds; hours apart, in minutes;
    the last text under a chart drops the date it shares with the first."""
    for gaps, tips, under in (
        ([0, 20, 50], ["2026-05-01 08:00:00", "2026-05-01 08:00:20", "2026-05-01 08:00:50"],
         ["2026-05-01 08:00:00", "08:00:50"]),
        ([0, 3600, 7200], ["2026-05-01 08:00", "2026-05-01 09:00", "2026-05-01 10:00"],
         ["2026-05-01 08:00", "10:00"]),
        ([0, 86400, 2 * 86400 + 60], ["2026-05-01 08:00", "2026-05-02 08:00",
                                      "2026-05-03 08:01"], ["2026-05-01 08:00", "05-03 08:01"]),
    ):
        folder = tmp_path / str(gaps[-1])
        write_summaries(folder, [summary(T0 + timedelta(seconds=g)) for g in gaps])
        chart = charts(write_index(folder).read_text(encoding="utf-8"))["Drift share"]
        assert [tip.split(": ")[0] for _, _, tip in points(chart)] == tips
        assert [t.text for t in chart.iter(f"{SVG}text") if t.get("class") == "axis"] == under


@pytest.mark.slow
def test_a_drift_report_opens_with_our_summary_in_a_real_browser(
    champion: registry.LoadedModel, schema: Schema, tmp_path: Path
) -> None:
    frame = window(champion, schema, 1000, seed=71, scenario="economic_shift")
    end = T0 + timedelta(minutes=5)
    frame["created_at"] = pd.date_range(T0, end, periods=len(frame))
    files = write_report(frame, champion, tmp_path, title="Demo: drifted phase", now=end)
    s = files.summary_data
    threshold = s["features"]["customer_age"]["threshold"]
    named = s["drifted_features"] + s["drifted_relations"]
    assert s["drift_detected"] and len(named) >= 3
    size = files.html.stat().st_size
    print(f"drift report: {size / 1e6:.1f} MB")  # Evidently's inline script, mostly

    with browser.open_browser() as chrome:
        at_1280(chrome)
        chrome.get(files.html.as_uri())
        # Evidently's script has drawn its part below ours.
        text = browser.wait_for_text(chrome, "Data Drift Summary")
        assert text.index("Drift report: Demo: drifted phase") < text.index("Data Drift Summary")
        assert chrome.title == f"Drift report: Demo: drifted phase ({champion.name} v1)"
        assert f"{champion.name} v1" in text and "1,000 logged predictions" in text
        assert "2026-05-01 08:00:00 to 08:05:00 UTC (5 min)" in text
        # The threshold rounded, here and in Evidently's words (a share of the columns).
        assert f"p < {p_text(threshold)}" in text and str(threshold) not in text
        assert re.search(r"threshold is 0\.\d{1,4}\b", text), text[:3000]
        assert not re.search(r"threshold is 0\.\d{5,}", text)
        # Our table's first rows are the drifted columns, lowest p-value first.
        rows = [[td.text for td in tr.find_elements("css selector", "td")] for tr in
                chrome.find_elements("css selector", "table.onebox-tests tbody tr")]
        assert {row[0] for row in rows[:len(named)]} == set(named)
        assert [row[4] for row in rows[:len(named)]] == ["drifted"] * len(named)
        assert all(row[4] == "no" for row in rows[len(named):])
        counted = len(s["features"]) + len(s["conditional"]) + 2  # the joint test, prediction
        assert len(rows) == counted
        assert (f"{counted} columns where the index counts {len(s['features'])} features"
                in text)
        # Nothing wider than its box, ours or Evidently's.
        assert chrome.execute_script(OVERFLOWING) == []
        assert header_links(chrome) == EXPECTED_HEADER
        browser.save_screenshot(chrome, "drift-report")
        # Back to the index, which links this report.
        chrome.find_element("partial link text", "All reports").click()
        assert chrome.current_url.endswith("/index.html")
        assert chrome.execute_script(OVERFLOWING) == []
        chrome.find_element("link text", "Demo: drifted phase").click()
        assert chrome.current_url.endswith(files.html.name)
