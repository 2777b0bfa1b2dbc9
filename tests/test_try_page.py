"""The predictor for people, on a real gunicorn process with API keys: explanations
(`?explain=true`), CSV files in and out, and the try-it page at `/` in a real headless
chromium."""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import xgboost

from core import registry
from core.api_keys import new_key
from core.schema import Schema, model_frame
from core.store import PredictionStore
from core.task import Task, task_of
from tests import browser
from tests.factories import valid_record
from tests.test_predictor import MAX_BATCH, Predictor, start

pytestmark = pytest.mark.slow

ANALYST, ANALYST_KEY = new_key("analyst", ["predict"])
AUTH = {"Authorization": f"Bearer {ANALYST}"}
CSV_TYPE = {**AUTH, "Content-Type": "text/csv"}


@pytest.fixture(scope="module")
def predictor(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predictor]:
    yield from start(trained_home, tmp_path_factory.mktemp("try-page"),
                     PREDICTOR_API_KEYS=ANALYST_KEY.spec())


def logged_rows(predictor: Predictor, settle_seconds: float = 1.5) -> int:
    """The rows in the prediction log once it has stopped growing (the log writes behind
    the answers, every flush interval)."""
    store = PredictionStore(predictor.store_url)
    try:
        count, stable_since = int(store.count()), time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() - stable_since < settle_seconds and time.monotonic() < deadline:
            time.sleep(0.25)
            now = int(store.count())
            if now != count:
                count, stable_since = now, time.monotonic()
        return count
    finally:
        store.dispose()


def logistic(score: float) -> float:
    return 1.0 / (1.0 + math.exp(-score))


# --- explanations -----------------------------------------------------------------------------

def xgboost_contributions(champion: registry.LoadedModel, record: dict) -> dict[str, float]:
    """TreeSHAP straight from the pipeline (its own transform and booster), one-hot columns
    summed back by the encoder's own column names: what the predictor must agree with."""
    transformer, classifier = champion.pipeline.steps[0][1], champion.pipeline.steps[1][1]
    frame = model_frame(champion.schema, [record])
    matrix = np.asarray(transformer.transform(frame), dtype=np.float64)
    raw = classifier.get_booster().predict(xgboost.DMatrix(matrix, missing=np.nan),
                                           pred_contribs=True)[0]
    out = dict.fromkeys(champion.schema.feature_names, 0.0)
    for column, value in zip(transformer.get_feature_names_out(), raw[:-1], strict=True):
        encoded = column.split("__", 1)[-1]  # "cat__gender_M" or "gender_M"
        feature = next(name for name in sorted(out, key=len, reverse=True)
                       if encoded == name or encoded.startswith(name + "_"))
        out[feature] += float(value)
    return out


def test_an_explanation_names_each_feature_and_adds_up_to_the_probability(
    predictor: Predictor, champion: registry.LoadedModel, schema: Schema
) -> None:
    record = valid_record(card_category="gold", education_level=None, credit_limit=2500.0)
    plain = predictor.post("/predict", record, headers=AUTH).json()
    assert "explanation" not in plain  # only on request: the default answer is unchanged
    answer = predictor.post("/predict?explain=true", record, headers=AUTH).json()
    explanation = answer["explanation"]
    assert list(explanation["contributions"]) == schema.feature_names
    assert explanation["unit"] == "log-odds"
    total = explanation["base"] + sum(explanation["contributions"].values())
    assert total == pytest.approx(explanation["score"], abs=1e-6)
    assert logistic(explanation["score"]) == pytest.approx(answer["churn_probability"],
                                                            abs=1e-5)
    assert answer["churn_probability"] == pytest.approx(plain["churn_probability"], abs=1e-9)
    # XGBoost's own TreeSHAP, through the version's Platt scaling (linear in log-odds).
    assert not champion.calibration.is_identity
    expected = xgboost_contributions(champion, record)
    for name, value in explanation["contributions"].items():
        assert value == pytest.approx(expected[name] * champion.calibration.slope,
                                      abs=1e-5), name
    # Not every feature is silent: the model uses several of them for this customer.
    assert sum(abs(v) > 1e-3 for v in explanation["contributions"].values()) >= 3


def test_a_batch_is_explained_record_by_record(predictor: Predictor) -> None:
    # 20 records: the batch goes through the column-wise validator and XGBoost's own call.
    batch = [valid_record(customer_age=30 + i, credit_limit=2000.0 + 900 * i) for i in range(20)]
    answers = predictor.post("/predict?explain=true", batch, headers=AUTH).json()["predictions"]
    scores = [a["explanation"]["score"] for a in answers]
    assert [logistic(s) for s in scores] == pytest.approx(
        [a["churn_probability"] for a in answers], abs=1e-5)
    assert len(set(scores)) > 1


@pytest.mark.parametrize("value", ["maybe", "1", "", "True"])
def test_a_bad_explain_flag_is_named(predictor: Predictor, value: str) -> None:
    refused = predictor.post(f"/predict?explain={value}", valid_record(), headers=AUTH)
    assert refused.status_code == 400
    assert refused.json()["problems"][0]["field"] == "explain"
    assert repr(value) in refused.json()["problems"][0]["problem"]


def test_an_unknown_query_parameter_is_named_not_ignored(predictor: Predictor) -> None:
    """`?explian=true` (misspelt) would otherwise answer without the explanation asked
    for; found by schemathesis' negative fuzzing (an unknown query parameter accepted)."""
    refused = predictor.post("/predict?explian=true", valid_record(), headers=AUTH)
    assert refused.status_code == 400
    assert refused.json()["problems"] == [
        {"field": "explian", "problem": "is not a query parameter of /predict (only explain)"}]
    assert predictor.post("/predict?explain=false", valid_record(),
                          headers=AUTH).status_code == 200


# --- CSV files --------------------------------------------------------------------------------

def csv_text(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_a_csv_file_comes_back_with_a_probability_per_row_and_its_own_columns(
    predictor: Predictor, schema: Schema
) -> None:
    records = [valid_record(customer_age=25 + 7 * i, card_category=card)
               for i, card in enumerate(["blue", "silver", "gold", "platinum", "blue"])]
    # A person's export: their own id column first, ordinals by level name, an empty cell
    # for an unknown income, a quoted note with a comma and a line break.
    rows = []
    for i, record in enumerate(records):
        row = {"customer_id": f"C-{i:03d}", **record,
               "education_level": schema.feature("education_level").levels[
                   record["education_level"]],
               "note": "called twice,\nno answer" if i == 1 else ""}
        rows.append(row)
    rows[2]["income_category"] = ""
    records[2]["income_category"] = None
    columns = ["customer_id", *schema.feature_names, "note"]
    before = logged_rows(predictor)

    answer = requests.post(predictor.url + "/predict", data=csv_text(rows, columns).encode(),
                           headers=CSV_TYPE, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert "predictions.csv" in answer.headers["Content-Disposition"]
    back = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["customer_id"] for r in back] == [r["customer_id"] for r in rows]
    assert back[1]["note"] == "called twice,\nno answer"
    assert list(back[0]) == [*columns, "prediction_id", "churn_probability", "churn_predicted"]
    expected = predictor.post("/predict", records, headers=AUTH).json()["predictions"]
    assert [float(r["churn_probability"]) for r in back] == pytest.approx(
        [e["churn_probability"] for e in expected], abs=1e-6)
    assert [int(r["churn_predicted"]) for r in back] == [int(e["churn"]) for e in expected]
    assert logged_rows(predictor) == before + 2 * len(records)  # the file's rows are logged too


def test_a_csv_file_with_explanations_has_a_contribution_column_per_feature(
    predictor: Predictor, schema: Schema
) -> None:
    text = csv_text([valid_record()], schema.feature_names)
    answer = requests.post(predictor.url + "/predict?explain=true", data=text,
                           headers=CSV_TYPE, timeout=10)
    row = next(csv.DictReader(io.StringIO(answer.text)))
    contributions = [float(row[f"contribution_{name}"]) for name in schema.feature_names]
    assert sum(contributions) != 0
    one = predictor.post("/predict?explain=true", valid_record(), headers=AUTH).json()
    assert contributions == pytest.approx(
        list(one["explanation"]["contributions"].values()), abs=1e-5)


def test_bad_rows_of_a_csv_file_are_named_by_line_and_column(
    predictor: Predictor, schema: Schema
) -> None:
    rows = [valid_record(), valid_record(credit_limit=-5), valid_record(),
            valid_record(gender="X", customer_age="old")]
    before = logged_rows(predictor)
    refused = requests.post(predictor.url + "/predict",
                            data=csv_text(rows, schema.feature_names), headers=CSV_TYPE,
                            timeout=10)
    assert refused.status_code == 422
    problems = {p["field"]: p["problem"] for p in refused.json()["problems"]}
    assert set(problems) == {"line 3.credit_limit", "line 5.gender", "line 5.customer_age"}
    assert ">= 0" in problems["line 3.credit_limit"]
    assert "'old'" in problems["line 5.customer_age"]
    assert "unknown category 'X'" in problems["line 5.gender"]
    assert logged_rows(predictor) == before  # a refused file logs nothing


@pytest.mark.parametrize(("body", "status", "field", "words"), [
    ("customer_age,gender\n45,M\n", 422, "credit_limit", "is a required column"),
    ("", 400, "body", "is empty"),
    (",".join(valid_record()) + "\n", 422, "body", "no rows"),
    (",".join(valid_record()) + "\n" + "1,2\n", 422, "line 2", "has 2 cells"),
])
def test_a_csv_file_that_is_not_a_table_of_the_features_is_named(
    predictor: Predictor, body: str, status: int, field: str, words: str
) -> None:
    refused = requests.post(predictor.url + "/predict", data=body.encode(), headers=CSV_TYPE,
                            timeout=10)
    assert refused.status_code == status, refused.text
    problems = {p["field"]: p["problem"] for p in refused.json()["problems"]}
    assert words in problems[field]


def test_a_csv_file_over_the_batch_limit_or_not_utf8_is_refused(
    predictor: Predictor, schema: Schema
) -> None:
    big = csv_text([valid_record()] * (MAX_BATCH + 1), schema.feature_names)
    refused = requests.post(predictor.url + "/predict", data=big, headers=CSV_TYPE, timeout=10)
    assert refused.status_code == 413
    assert str(MAX_BATCH) in refused.json()["error"]
    latin = csv_text([valid_record(gender="M")], schema.feature_names).replace(
        "married", "mariée").encode("latin-1")
    refused = requests.post(predictor.url + "/predict", data=latin, headers=CSV_TYPE,
                            timeout=10)
    assert refused.status_code == 422 and "UTF-8" in refused.json()["error"]


# --- the page -----------------------------------------------------------------------------------

def test_the_page_loads_nothing_from_elsewhere_and_holds_nothing_of_the_model(
    predictor: Predictor, champion: registry.LoadedModel
) -> None:
    page = requests.get(predictor.url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    # The page is served without a key; the model's schema is not in it (it needs the key).
    assert "credit_limit" not in page.text
    assert requests.get(predictor.url + "/model", timeout=5).status_code == 401


def test_the_model_says_its_typical_record_which_the_schema_accepts(
    predictor: Predictor, champion: registry.LoadedModel, schema: Schema
) -> None:
    model = requests.get(predictor.url + "/model", headers=AUTH, timeout=5).json()
    typical = model["typical_record"]
    assert schema.validate_record(typical) == typical
    reference = champion.reference()
    assert typical["customer_age"] == int(round(reference["customer_age"].median()))
    assert typical["card_category"] == reference["card_category"].mode().iloc[0]
    assert model["explainable"] is True and model["max_batch_records"] == MAX_BATCH
    # The columns a scored file gets after its own, named by the predictor for the page.
    assert model["csv_answer_columns"] == ["prediction_id", "churn_probability",
                                           "churn_predicted"]
    scored = requests.post(predictor.url + "/predict",
                           data=csv_text([typical], schema.feature_names), headers=CSV_TYPE,
                           timeout=10)
    assert next(csv.reader(io.StringIO(scored.text)))[len(schema.feature_names):] == model[
        "csv_answer_columns"]


def field_problem(chrome: object, name: str) -> str:
    return chrome.find_element(  # type: ignore[attr-defined]
        "css selector", f'.field[data-field="{name}"] .problem').text


def test_a_person_tries_the_model_in_a_browser(predictor: Predictor, schema: Schema,
                                               tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    with browser.open_browser() as chrome:
        chrome.get(predictor.url + "/")
        # The predictor asks for a key: the page asks the person for it.
        browser.wait_for_text(chrome, "asks for an API key")
        chrome.find_element("id", "key").send_keys("obx_analyst_wrong")
        chrome.find_element("id", "use-key").click()
        browser.wait_for_text(chrome, "the API key is not valid")
        chrome.find_element("id", "key").send_keys(ANALYST)
        chrome.find_element("id", "use-key").click()
        browser.wait_for_text(chrome, "churn-classifier v1")

        # A field per feature, the typical customer filled in.
        fields = chrome.find_elements("css selector", ".field")
        assert [f.get_attribute("data-field") for f in fields] == schema.feature_names
        assert chrome.find_element("id", "f-customer_age").get_attribute("value") != ""
        assert "18 to 100" in fields[0].text

        # A bad value: the predictor's own message, under the field.
        limit = chrome.find_element("id", "f-credit_limit")
        limit.clear()
        limit.send_keys("-5")
        chrome.find_element("id", "predict").click()
        browser.wait_for_text(chrome, "Credit limit: must be >=")  # the field's label
        assert "must be >=" in field_problem(chrome, "credit_limit")

        # Fixed, with a gold card: the answer, the decision and the reasons.
        limit.clear()
        limit.send_keys("3000")
        Select(chrome.find_element("id", "f-card_category")).select_by_visible_text("gold")
        chrome.find_element("id", "predict").click()
        text = browser.wait_for_text(chrome, "chance of churn")
        assert field_problem(chrome, "credit_limit") == ""
        shown = float(chrome.find_element("id", "probability").text.split("%")[0])
        shown_record = {**_typical(predictor), "credit_limit": 3000.0, "card_category": "gold"}
        expected = predictor.post("/predict", shown_record, headers=AUTH).json()
        assert shown == pytest.approx(100 * expected["churn_probability"], abs=0.05)
        assert ("Predicted churn" if expected["churn"] else "Predicted no churn") in text
        bars = chrome.find_elements("css selector", "#explanation .bar[data-feature]")
        assert sorted(b.get_attribute("data-feature") for b in bars) == sorted(
            schema.feature_names)
        assert "Card category = gold" in chrome.find_element("id", "explanation").text
        browser.save_screenshot(chrome, "try-page")

        # A file: scored, previewed, offered for download.
        good = tmp_path / "customers.csv"
        columns = ["customer_id", *schema.feature_names, "note"]
        good.write_text(csv_text([{"customer_id": f"C-{i}", **valid_record(customer_age=30 + i),
                                   "note": "called, twice\nno answer"} for i in range(3)],
                                 columns))
        chrome.find_element("id", "csv-file").send_keys(str(good))
        chrome.find_element("id", "csv-submit").click()
        browser.wait_for_text(chrome, "Scored 3 rows with v1")
        # The preview: the answer's columns first (the file keeps its own order).
        header = [c.text for c in chrome.find_elements("css selector", "#csv-table th")]
        assert header == ["prediction_id", "churn_probability", "churn_predicted", *columns]
        first = chrome.find_elements("css selector", "#csv-table tr")[1]
        cells = [c.text for c in first.find_elements("css selector", "td")]
        assert len(cells) == len(header) and cells[header.index("customer_id")] == "C-0"
        link = chrome.find_element("id", "csv-download").get_attribute("href")
        assert link.startswith("blob:")
        browser.save_screenshot(chrome, "try-page-csv")

        # A file with a bad row: named by its line, nothing scored.
        bad = tmp_path / "bad.csv"
        bad.write_text(csv_text([valid_record(), valid_record(dependent_count=9)],
                                schema.feature_names))
        chrome.find_element("id", "csv-file").send_keys(str(bad))
        chrome.find_element("id", "csv-submit").click()
        browser.wait_for_text(chrome, "line 3.dependent_count: must be <= 5")
        assert not chrome.find_element("id", "csv-result").is_displayed()


# What a person at a 1280 x 800 screen sees: nothing wider than its box.  Every element
# shown is checked (its content no wider than it), the page itself too; the CSV preview is
# the one box that may scroll sideways (its own scrollbar, inside the page).
OVERFLOWS = """
const out = [];
const page = document.scrollingElement;
if (page.scrollWidth > page.clientWidth) {
  out.push("page " + page.scrollWidth + " > " + page.clientWidth);
}
for (const el of document.body.querySelectorAll("*")) {
  const style = getComputedStyle(el);
  if (style.display === "none" || style.display === "inline" || el.clientWidth === 0) continue;
  if (el.id === "csv-preview") {
    if (!["auto", "scroll"].includes(style.overflowX)) out.push("the preview does not scroll");
    continue;
  }
  if (el.scrollWidth > el.clientWidth + 1) {
    out.push(el.tagName + "#" + el.id + "." + el.className + " " + el.scrollWidth + " > " +
             el.clientWidth + ": " + (el.textContent || "").slice(0, 60));
  }
}
return out;
"""


def at_1280_by_800(chrome: object) -> None:
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # type: ignore[attr-defined]
        "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})


def assert_fits(chrome: object) -> None:
    assert chrome.execute_script("return window.innerWidth") == 1280  # type: ignore[attr-defined]
    assert chrome.execute_script(OVERFLOWS) == []  # type: ignore[attr-defined]


def label_of(feature: dict) -> str:
    words = feature["name"].replace("_", " ").strip()
    return feature.get("label") or words[0].upper() + words[1:]


def test_the_page_has_the_header_labels_descriptions_points_and_links_at_1280(
    predictor: Predictor, trained_home: Path, tmp_path: Path
) -> None:
    from core.page_header import PAGES
    from reporting.model_card import card_path
    from reporting.model_card.card import card_url
    from tests.conftest import settings_for

    model = requests.get(predictor.url + "/model", headers=AUTH, timeout=5).json()
    features = model["schema"]["features"]
    with browser.open_browser() as chrome:
        at_1280_by_800(chrome)
        chrome.get(predictor.url + "/")
        # The project's header, before any key: every page's link, this one marked.
        nav = chrome.find_elements("css selector", "nav.onebox-nav a")
        assert [a.get_attribute("href") for a in nav] == [
            predictor.url + path for path, _, _ in PAGES]
        assert [a.text for a in nav] == [label for _, label, _ in PAGES]
        assert [a.get_attribute("aria-current") for a in nav] == [
            "page" if path == "/try" else None for path, _, _ in PAGES]
        browser.wait_for_text(chrome, "asks for an API key")
        assert chrome.find_element("id", "reports-link").get_attribute("href") == (
            predictor.url + "/reports/")
        assert_fits(chrome)
        chrome.find_element("id", "key").send_keys(ANALYST)
        chrome.find_element("id", "use-key").click()
        browser.wait_for_text(chrome, f"{model['name']} v{model['version']}")
        assert_fits(chrome)

        # The way to this version's card: where the train flow wrote it, under /reports/.
        card = chrome.find_element("id", "card-link")
        assert card.is_displayed()
        href = card.get_attribute("href")
        assert href == predictor.url + card_url(model["name"], model["version"])
        reports_dir = settings_for(trained_home).reports_dir
        written = card_path(reports_dir, model["name"], model["version"])
        assert written.is_file()
        assert href.removeprefix(predictor.url + "/reports/") == written.relative_to(
            reports_dir).as_posix()

        # Each field: its label in words, what the schema says of it under it, nothing
        # where the schema says nothing.
        described = 0
        for feature in features:
            row = chrome.find_element("css selector", f'.field[data-field="{feature["name"]}"]')
            label = row.find_element("tag name", "label").text
            assert label == label_of(feature) and "_" not in label, label
            descriptions = row.find_elements("css selector", ".desc")
            if feature.get("description"):
                described += 1
                assert [d.text for d in descriptions] == [feature["description"]]
                assert descriptions[0].is_displayed()
            else:
                assert descriptions == []
            assert feature["name"] in row.find_element("css selector", ".hint").text
        assert described >= 1
        assert chrome.find_element("css selector", 'label[for="f-credit_limit"]').text == (
            "Credit limit")

        # The reasons in percentage points: what the log-odds of the answer imply.
        chrome.find_element("id", "predict").click()
        browser.wait_for_text(chrome, "chance of churn")
        assert "percentage points" in chrome.find_element("id", "explanation-note").text
        explanation = predictor.post("/predict?explain=true", model["typical_record"],
                                     headers=AUTH).json()["explanation"]
        score = explanation["score"]
        implied = {name: 100 * (logistic(score) - logistic(score - value))
                   for name, value in explanation["contributions"].items()}
        bars = chrome.find_elements("css selector", "#explanation .bar[data-feature]")
        assert len(bars) == len(implied)
        shown_order = []
        for bar in bars:
            name = bar.get_attribute("data-feature")
            shown_order.append(name)
            text = bar.text
            points = re.search(r"([+-]\d+\.(\d+)) pp", text)
            assert points, text
            # The figure as shown, to its last digit, and as the page computed it.
            assert float(points.group(1)) == pytest.approx(
                implied[name], abs=0.5 * 10 ** -len(points.group(2)) + 1e-9), name
            assert float(bar.get_attribute("data-points")) == pytest.approx(implied[name],
                                                                           abs=1e-6)
            log_odds = re.search(r"([+-]\d+\.\d{3}) log-odds", text)
            assert log_odds and float(log_odds.group(1)) == pytest.approx(
                explanation["contributions"][name], abs=5e-4)
            feature = next(f for f in features if f["name"] == name)
            assert text.startswith(label_of(feature) + " = "), text
        assert shown_order == sorted(implied, key=lambda n: -abs(implied[n]))
        assert any(abs(v) >= 0.05 for v in implied.values())  # not all silent
        whole = chrome.find_element("id", "explanation").text
        assert f"{100 * logistic(score):.1f}%" in whole
        assert f"{100 * logistic(explanation['base']):.1f}%" in whole
        assert_fits(chrome)

        # A wide file, with its contributions: the answer's columns first, in sight inside
        # the preview's box, and nothing wider than the page.
        columns = ["customer_id", *[f["name"] for f in features], "note"]
        wide = tmp_path / "wide.csv"
        wide.write_text(csv_text([{"customer_id": f"CUSTOMER-{i:06d}-OF-A-LONG-EXPORT",
                                   **valid_record(customer_age=30 + i),
                                   "note": "a note long enough to need a wide column " * 3}
                                  for i in range(12)], columns))
        chrome.find_element("id", "csv-explain").click()
        chrome.find_element("id", "csv-file").send_keys(str(wide))
        chrome.find_element("id", "csv-submit").click()
        browser.wait_for_text(chrome, "Scored 12 rows")
        answer_columns = model["csv_answer_columns"]
        assert chrome.find_element("id", "csv-columns").text == " and ".join(answer_columns)
        header = [c.text for c in chrome.find_elements("css selector", "#csv-table th")]
        assert header[:len(answer_columns)] == answer_columns == list(
            _task(model).csv_answer_columns)
        assert header[len(answer_columns):] == [
            *columns, *(f"contribution_{f['name']}" for f in features)]
        assert len(chrome.find_elements("css selector", "#csv-table tr")) == 11  # 10 rows shown
        box = chrome.find_element("id", "csv-preview").rect
        shown = chrome.find_elements("css selector", "#csv-table th.answer")
        assert [c.text for c in shown] == answer_columns
        for cell in shown:
            assert box["x"] <= cell.rect["x"] and (
                cell.rect["x"] + cell.rect["width"] <= box["x"] + box["width"]), cell.text
        # Wider than its box: it scrolls there, not the page.
        assert chrome.execute_script("const box = document.getElementById('csv-preview'); "
                                     "return box.scrollWidth > box.clientWidth")
        assert_fits(chrome)


def _task(model: dict) -> Task:
    """The task of the served schema, as the predictor builds it (core/task.py)."""
    return task_of(Schema.from_dict(model["schema"]))


def _typical(predictor: Predictor) -> dict:
    return requests.get(predictor.url + "/model", headers=AUTH, timeout=5).json()[
        "typical_record"]


def test_a_labelled_export_keeps_its_outcome_column_and_empty_rows_are_skipped(
    predictor: Predictor, schema: Schema
) -> None:
    # The target's own name ("churn") is the person's real outcome: it comes back as sent.
    rows = [{**valid_record(), "churn": "1"}, {**valid_record(customer_age=60), "churn": "0"}]
    text = csv_text(rows, [*schema.feature_names, "churn"])
    text += "," * len(schema.feature_names) + "\n"  # a spreadsheet's empty last row
    answer = requests.post(predictor.url + "/predict", data=text, headers=CSV_TYPE, timeout=10)
    assert answer.status_code == 200, answer.text
    back = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["churn"] for r in back] == ["1", "0"]
    assert all(r["churn_predicted"] in ("0", "1") for r in back)


@pytest.mark.parametrize(("extra_column", "field"), [
    ("churn_probability", "churn_probability"),        # an answered file sent again
    ("contribution_credit_limit", "contribution_credit_limit"),
    ("customer_age", "customer_age"),                  # a column named twice
])
def test_a_column_the_answer_would_overwrite_or_a_repeated_one_is_named(
    predictor: Predictor, schema: Schema, extra_column: str, field: str
) -> None:
    header = ",".join([*schema.feature_names, extra_column])
    row = ",".join(str(v) for v in valid_record().values()) + ",0.5"
    refused = requests.post(predictor.url + "/predict", data=f"{header}\n{row}\n",
                            headers=CSV_TYPE, timeout=10)
    assert refused.status_code == 422, refused.text
    assert field in {p["field"] for p in refused.json()["problems"]}


@pytest.mark.parametrize("cell", ["1_000", "٤٥", "nan", "0x10", "12,5"])
def test_a_number_cell_is_read_as_json_writes_numbers(
    predictor: Predictor, schema: Schema, cell: str
) -> None:
    rows = [{**valid_record(), "customer_age": cell}]
    refused = requests.post(predictor.url + "/predict",
                            data=csv_text(rows, schema.feature_names).encode(),
                            headers=CSV_TYPE, timeout=10)
    assert refused.status_code == 422, refused.text
    assert {p["field"] for p in refused.json()["problems"]} == {"line 2.customer_age"}
