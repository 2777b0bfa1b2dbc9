"""Who may call the predictor, on a real gunicorn process with keys configured: scopes,
forged, missing, expired and wrong-scope keys, labels that remember their sender, and
made-up feedback ids answered at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests

from core.api_keys import KeySpecError, new_key, parse_keys
from core.store import PredictionStore
from server.auth import AuthError, KeyRing
from tests.factories import valid_record
from tests.test_exporter import scrape
from tests.test_predictor import Predictor, start

YESTERDAY = date.today() - timedelta(days=1)
CLIENT, CLIENT_KEY = new_key("crm", ["predict"])
LABELS, LABELS_KEY = new_key("billing", ["feedback"], trusted=True)
PARTNER, PARTNER_KEY = new_key("partner", ["predict", "feedback"])  # labels not trusted
OLD, OLD_KEY = new_key("old-client", ["predict"], expires=YESTERDAY)
SPEC = ",".join(key.spec() for key in (CLIENT_KEY, LABELS_KEY, PARTNER_KEY, OLD_KEY))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the key ring, without a server ------------------------------------------------------------

def test_records_round_trip_and_bad_ones_are_named() -> None:
    keys = parse_keys(SPEC)
    assert keys["billing"] == LABELS_KEY and keys["old-client"].expires == YESTERDAY
    assert parse_keys("") == {}
    for bad, words in [
        ("crm:predict:trusted:never", "record 1 must be"),
        ("crm:admin:trusted:never:" + "0" * 64, "scopes must be among"),
        ("crm:predict:yes:never:" + "0" * 64, "trust must be"),
        ("crm:predict:trusted:soon:" + "0" * 64, "expiry must be"),
        ("crm:predict:trusted:never:abc", "SHA-256"),
        ("Bad_Id:predict:trusted:never:" + "0" * 64, "key id"),
        (f"{CLIENT_KEY.spec()},{CLIENT_KEY.spec()}", "record 2: key id 'crm' appears twice"),
    ]:
        with pytest.raises(KeySpecError, match=words):
            parse_keys(bad)


# Ids of our own: the keys are made afresh at import, and pytest-xdist's workers must all
# collect the same test names.
@pytest.mark.parametrize(("header", "scope", "status", "words"), [
    (None, "predict", 401, "an API key is required"),
    ("Basic dXNlcjpwYXNz", "predict", 401, "must be 'Bearer <key>'"),
    ("Bearer ", "predict", 401, "must be 'Bearer <key>'"),
    (f"Bearer {CLIENT[:-4]}AAAA", "predict", 401, "is not valid"),     # forged secret
    ("Bearer obx_nobody_" + "A" * 43, "predict", 401, "is not valid"),  # unknown key id
    ("Bearer not-even-shaped-like-a-key", "predict", 401, "is not valid"),
    (f"Bearer {OLD}", "predict", 401, f"expired on {YESTERDAY.isoformat()}"),
    (f"Bearer {CLIENT}", "feedback", 403, "'crm' may not feedback"),
    (f"Bearer {LABELS}", "predict", 403, "'billing' may not predict"),
], ids=["no-header", "basic-auth", "empty-bearer", "forged-secret", "unknown-key-id",
        "not-a-key", "expired", "predict-key-on-feedback", "feedback-key-on-predict"])
def test_refusals_say_what_is_wrong(header: str | None, scope: str, status: int,
                                    words: str) -> None:
    with pytest.raises(AuthError, match=words) as refused:
        KeyRing(parse_keys(SPEC)).check(header, scope)
    assert refused.value.status == status


def test_a_valid_key_of_the_scope_passes_and_no_keys_means_an_open_api() -> None:
    ring = KeyRing(parse_keys(SPEC))
    assert ring.check(f"Bearer {CLIENT}", "predict") == CLIENT_KEY
    assert ring.check(f"bearer  {PARTNER} ", "feedback") == PARTNER_KEY
    assert ring.check(f"Bearer {LABELS}", None) == LABELS_KEY  # any scope
    assert KeyRing({}).check(None, "predict") is None


# --- the predictor, for real ----------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predictor]:
    yield from start(trained_home, tmp_path_factory.mktemp("guarded"), PREDICTOR_API_KEYS=SPEC,
                     PREDICTION_ID_KEY="a-key-for-the-guarded-predictor-tests")


def answered(predictor: Predictor, token: str) -> str:
    answer = predictor.post("/predict", valid_record(), headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return answer.json()["prediction_id"]


@pytest.mark.slow
def test_every_endpoint_asks_for_the_key_it_needs(guarded: Predictor) -> None:
    url = guarded.url
    # Open: the stack's own health check and scraper.
    assert requests.get(url + "/health", timeout=5).status_code == 200
    assert requests.get(url + "/metrics", timeout=5).status_code == 200
    # Any valid key.
    for path in ("/model", "/openapi.json"):
        refused = requests.get(url + path, timeout=5)
        assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
        assert requests.get(url + path, headers=bearer(LABELS), timeout=5).status_code == 200
    # The document says so.
    document = requests.get(url + "/openapi.json", headers=bearer(CLIENT), timeout=5).json()
    assert document["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in document["paths"]["/health"]["get"]
    # Scoped.
    assert guarded.post("/predict", valid_record()).status_code == 401
    refused = guarded.post("/predict", valid_record(), headers=bearer(LABELS))
    assert refused.status_code == 403
    assert refused.json()["problems"] == [{"field": "Authorization",
                                           "problem": refused.json()["error"]}]
    assert guarded.post("/predict", valid_record(), headers=bearer(OLD)).status_code == 401
    prediction_id = answered(guarded, CLIENT)
    body = {"prediction_id": prediction_id, "churn": 1}
    assert guarded.post("/feedback", body).status_code == 401
    assert guarded.post("/feedback", body, headers=bearer(CLIENT)).status_code == 403
    assert guarded.post("/feedback", body, headers=bearer(LABELS)).status_code == 200
    refusals = scrape(url + "/metrics")
    assert sum(v for (name, labels), v in refusals.items()
               if name == "onebox_auth_refusals_total" and dict(labels)["status"] == "403") >= 2


@pytest.mark.slow
def test_labels_remember_their_sender_and_only_trusted_ones_teach(guarded: Predictor) -> None:
    trusted_id = answered(guarded, CLIENT)
    untrusted_id = answered(guarded, PARTNER)
    assert guarded.post("/feedback", {"prediction_id": trusted_id, "churn": 1},
                        headers=bearer(LABELS)).status_code == 200
    assert guarded.post("/feedback", {"prediction_id": untrusted_id, "churn": 1},
                        headers=bearer(PARTNER)).status_code == 200
    store = PredictionStore(guarded.store_url)
    try:
        labelled = store.labelled(10_000).set_index("prediction_id")
        assert trusted_id in labelled.index and untrusted_id not in labelled.index
        assert labelled.loc[trusted_id, "feedback_by"] == "billing"
        window = store.recent(10_000).set_index("prediction_id")
        assert window.loc[untrusted_id, "feedback_by"] == "partner"
        assert pd.isna(window.loc[untrusted_id, "actual"])  # kept, but read as missing
        assert window.loc[trusted_id, "actual"] == 1
    finally:
        store.dispose()


@pytest.mark.slow
def test_a_made_up_feedback_id_is_answered_at_once_and_never_waits_for_the_log(
    guarded: Predictor,
) -> None:
    def waits() -> float:
        return scrape(guarded.url + "/metrics").get(("onebox_feedback_log_waits_total", ()), 0.0)

    before = waits()
    for _ in range(40):
        answer = guarded.post("/feedback", {"prediction_id": str(uuid.uuid4()), "churn": 0},
                              headers=bearer(LABELS))
        assert answer.status_code == 404 and "no prediction with id" in answer.text
    assert waits() == before  # not one of the 40 held a thread for the log
    # An id this predictor issued, sent back the moment it was answered (its row may still
    # be queued in either worker), is found: that is what the wait is for.
    for _ in range(5):
        prediction_id = answered(guarded, CLIENT)
        answer = guarded.post("/feedback", {"prediction_id": prediction_id, "churn": 0},
                              headers=bearer(LABELS))
        assert answer.status_code == 200, answer.text
