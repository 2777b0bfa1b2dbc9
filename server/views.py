"""The predictor's HTTP API: `POST /predict` (JSON, or a CSV file), `POST /feedback`,
`GET /health`, `GET /model`, `GET /metrics`, `GET /openapi.json`; and `GET /`, a page
for people to try the model (server/pages/try.html).

Input is validated against the schema that travels with the served model version;
anything a client can get wrong is a 4xx whose message names the field and the problem.
A 5xx is a bug, or (503) a store that is away.  /predict needs an API key with the
`predict` scope, /feedback one with `feedback`, /model and /openapi.json any valid key;
/health and /metrics stay open for the stack's own checks and scraper (the front door
does not route /metrics).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from core.migrations import NotMigrated
from core.schema import FieldProblem, RecordInvalid
from core.store import FeedbackResult
from core.task import OutcomeInvalid
from server import csv_rows, pages
from server.auth import AuthError
from server.ids import issued_here
from server.model_source import ServedModel
from server.predictor import Predictor, current_predictor

log = logging.getLogger(__name__)

api = Blueprint("api", __name__)
ANY_SCOPE = None


class BadRequest(Exception):
    """A client error: HTTP status and the problems, each naming a field."""

    def __init__(self, status: int, problems: list[FieldProblem]):
        self.status = status
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def requires_key(scope: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The view answers only a request with a valid key of `scope` (any scope: None);
    the key is in `g.api_key` (None when the predictor asks no key)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            g.api_key = current_predictor().keys.check(request.headers.get("Authorization"),
                                                       scope)
            return view(*args, **kwargs)

        return checked

    return decorate


# --- errors, as JSON that names the field ---------------------------------------------------

@api.app_errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> tuple[Response, int]:
    return jsonify(error=str(exc), problems=[{"field": p.field, "problem": p.problem}
                                             for p in exc.problems]), exc.status


@api.app_errorhandler(AuthError)
def _unauthorized(exc: AuthError) -> tuple[Response, int]:
    current_predictor().metrics.auth_refusals.labels(str(exc.status)).inc()
    response = jsonify(error=exc.message,
                       problems=[{"field": "Authorization", "problem": exc.message}])
    if exc.status == 401:
        # RFC 6750: say how to authenticate, and (when a key was sent) that it failed.
        sent = "Authorization" in request.headers
        response.headers["WWW-Authenticate"] = (
            'Bearer realm="onebox"' + (', error="invalid_token"' if sent else ""))
    return response, exc.status


@api.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    # Werkzeug's own errors (404, 405, 413) as JSON, like ours.
    response = jsonify(error=f"{exc.name}: {exc.description}",
                       problems=[{"field": "body" if exc.code == 413 else "request",
                                  "problem": exc.description}])
    # Keep the error's own headers (a 405 must say which methods are allowed: RFC 9110).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, exc.code or 500


@api.app_errorhandler(SQLAlchemyError)
def _store_unavailable(exc: SQLAlchemyError) -> tuple[Response, int]:
    log.warning("prediction store error: %s", exc)
    return jsonify(error="the prediction store is unavailable; retry later",
                   problems=[{"field": "request", "problem": "prediction store unavailable"}]), 503


@api.app_errorhandler(NotMigrated)
def _store_not_migrated(exc: NotMigrated) -> tuple[Response, int]:
    # The operator's to fix (the setup step), not the client's: a 503 that says what.
    return jsonify(error=f"the prediction store is unavailable: {exc}",
                   problems=[{"field": "request", "problem": "prediction store not migrated"}]
                   ), 503


# --- the API ---------------------------------------------------------------------------------

@api.post("/predict")
@requires_key("predict")
def predict() -> Response:
    predictor = current_predictor()
    explain = _explain_requested()
    served = predictor.follower.current  # one version for the whole request, even mid-swap
    if explain and served.scorer is None:
        raise BadRequest(422, [FieldProblem("explain", "is not available for this model "
                                                       "version's pipeline")])
    if request.mimetype == "text/csv":
        return _predict_csv(predictor, served, explain)
    payload = _json_body()
    schema = served.model.schema
    if isinstance(payload, list):
        if not payload:
            raise BadRequest(422, [FieldProblem("body", "batch is empty")])
        limit = predictor.settings.max_batch_records
        if len(payload) > limit:
            raise BadRequest(413, [FieldProblem(
                "body", f"batch of {len(payload)} records is over the limit of {limit}")])
        try:
            batch = schema.validate_batch(payload)
        except RecordInvalid as exc:
            raise BadRequest(422, exc.problems) from None
        answers = predictor.predict(served, batch.records, batch.columns, explain=explain)
        return _json_response({"predictions": answers, "model": _model_info(served)})
    try:
        record = schema.validate_record(payload)
    except RecordInvalid as exc:
        raise BadRequest(422, exc.problems) from None
    answer = predictor.predict(served, [record], explain=explain)[0]
    return _json_response({**answer, "model": _model_info(served)})


def _predict_csv(predictor: Predictor, served: ServedModel, explain: bool) -> Response:
    """A CSV file's rows scored: the file back with the answer's columns (server/csv_rows.py)."""
    raw = request.get_data(cache=False)
    schema = served.model.schema
    try:
        header, rows, records = csv_rows.read_rows(raw, schema,
                                                   predictor.settings.max_batch_records)
    except csv_rows.CsvProblem as exc:
        raise BadRequest(422 if raw else 400, exc.problems) from None
    except OverflowError as exc:
        raise BadRequest(413, [FieldProblem("body", str(exc))]) from None
    except RecordInvalid as exc:
        raise BadRequest(422, exc.problems) from None
    answers = predictor.predict(served, records, explain=explain)
    body = csv_rows.write_answers(header, rows, answers, schema.feature_names,
                                  served.model.task)
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="predictions.csv"'
    response.headers["X-Onebox-Model-Version"] = served.version
    return response


@api.post("/feedback")
@requires_key("feedback")
def feedback() -> tuple[Response, int]:
    predictor = current_predictor()
    payload = _json_body()
    if not isinstance(payload, dict):
        raise BadRequest(422, [FieldProblem("body", "must be a JSON object")])
    problems = []
    # Ids are stored in canonical form (lowercase, hyphenated): an uppercased or braced
    # spelling of a real id must find it.
    prediction_id = _canonical_uuid(payload.get("prediction_id"))
    if prediction_id is None:
        problems.append(FieldProblem("prediction_id", "must be a prediction id (a UUID)"))
    # The outcome is sent under the target's name, checked by the served version's task
    # (0 or 1; or a number in the target's declared range).
    task = predictor.follower.current.model.task
    target = task.target
    actual = None
    try:
        actual = task.outcome(payload.get(target))
    except OutcomeInvalid as exc:
        problems.append(FieldProblem(target, str(exc)))
    extra = sorted(set(payload) - {"prediction_id", target})
    problems += [FieldProblem(name or '""', "is not a field of feedback") for name in extra]
    if problems:
        raise BadRequest(422, problems)
    key = g.api_key
    sender = {"sent_by": key.key_id, "trusted": key.trusted} if key is not None else {}
    sender["model_name"] = predictor.follower.current.model.name
    result = predictor.store.record_feedback(prediction_id, actual, **sender)
    logger = predictor.prediction_log
    if (result is FeedbackResult.UNKNOWN_ID and logger is not None
            and issued_here(prediction_id, predictor.id_key)):
        # Issued by this stack and not in the log yet: still queued, here or in a sibling
        # worker whose writer flushes every flush_interval. Write ours, give theirs one
        # more interval.  An id never issued here (made up, or another stack's) skips
        # this and gets its 404 at once.
        predictor.metrics.feedback_waits.inc()
        logger.flush(timeout=5.0)
        time.sleep(2 * logger.flush_interval)
        result = predictor.store.record_feedback(prediction_id, actual, **sender)
    if result is FeedbackResult.UNKNOWN_ID:
        raise BadRequest(404, [FieldProblem("prediction_id",
                                            f"no prediction with id {prediction_id}")])
    if result is FeedbackResult.OTHER_MODEL:
        raise BadRequest(422, [FieldProblem(
            "prediction_id", "was made by another registered model than the one served here "
            f"({predictor.follower.current.model.name}): its outcome is another business's")])
    if result is FeedbackResult.CONFLICT:
        raise BadRequest(409, [FieldProblem(
            target, "a different outcome was already recorded for this prediction")])
    return jsonify({"prediction_id": prediction_id, target: task.answered_outcome(actual),
                    "status": result.value}), 200


@api.get("/health")
def health() -> Response:
    predictor = current_predictor()
    served = predictor.follower.current
    logger = predictor.prediction_log
    return jsonify(
        status="ok",
        release=predictor.settings.release,
        model=_model_info(served),
        model_source=served.source,
        registry_error=predictor.follower.last_error,
        prediction_log={
            "enabled": logger is not None,
            "store_available": None if logger is None else logger.store_available,
            # Why not (unreachable, or its tables not migrated to this version's).
            "store_error": None if logger is None else logger.store_error,
            "backlog": 0 if logger is None else logger.backlog,
            "spooled_rows": 0 if logger is None else logger.spooled_rows,
            "dropped_rows": 0 if logger is None else logger.dropped_rows,
            "spool_error": None if logger is None else logger.spool_error,
            # Why the journal cannot be written (a full disk): a worker killed meanwhile
            # would lose what it had not written yet.
            "journal_error": (None if logger is None or logger.journal is None
                              else logger.journal.error),
        },
    )


@api.get("/model")
@requires_key(ANY_SCOPE)
def model_info() -> Response:
    predictor = current_predictor()
    served = predictor.follower.current
    return jsonify(**_model_info(served), source=served.source,
                   loaded_at=served.loaded_at, last_check=predictor.follower.last_check,
                   fast_path=served.scorer is not None, explainable=served.scorer is not None,
                   task=served.model.task.name, threshold=served.model.threshold,
                   schema=served.model.schema.to_dict(),
                   csv_answer_columns=list(served.model.task.csv_answer_columns),
                   typical_record=served.typical,
                   max_batch_records=predictor.settings.max_batch_records)


@api.get("/")
def try_page() -> Response:
    # The page is the same for everyone and holds nothing of the model: it fetches /model
    # and /predict with the person's API key, so it is as protected as the API itself.
    response = Response(pages.TRY_PAGE.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = pages.TRY_PAGE.content_security_policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@api.get("/metrics")
def prometheus_metrics() -> Response:
    predictor = current_predictor()
    predictor.update_gauges()
    return Response(predictor.metrics.exposition(), mimetype=predictor.metrics.content_type)


@api.get("/openapi.json")
@requires_key(ANY_SCOPE)
def openapi_document() -> Response:
    # Generated from the served version's schema, so it follows the model as it moves.
    predictor = current_predictor()
    return Response(predictor.documents.for_served(predictor.follower.current),
                    mimetype="application/json")


# --- helpers ---------------------------------------------------------------------------------

def _explain_requested() -> bool:
    """The `explain` query parameter: `true` or `false` (JSON's words, as the OpenAPI
    document's boolean); anything else, an empty value included, is named."""
    if not request.query_string:  # the common case: no parsing at all
        return False
    unknown = sorted(set(request.args) - {"explain"})
    if unknown:  # a misspelt `explain` must not pass silently as "no explanation"
        raise BadRequest(400, [FieldProblem(name or '""', "is not a query parameter of "
                                            "/predict (only explain)") for name in unknown])
    value = request.args.get("explain")
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise BadRequest(400, [FieldProblem("explain", f"must be true or false, got {value!r}")])


def _model_info(served: ServedModel) -> dict[str, str]:
    return {"name": served.model.name, "version": served.version}


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _json_response(document: dict[str, Any]) -> Response:
    # orjson writes a 1,000-prediction answer ~5x faster than Flask's jsonify; the
    # document holds only str, float, bool and dicts of them, which it writes the same.
    return Response(orjson.dumps(document), mimetype="application/json")


def _json_body() -> Any:
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequest(400, [FieldProblem("body", "is empty; send a JSON document")])
    try:
        # orjson parses ~3x faster than the stdlib; it refuses what the stdlib would
        # refuse too (NaN, Infinity) and a little more (integers beyond 64 bits, text
        # that is not UTF-8, lone surrogates): those go to the stdlib, so the answer is
        # the one it gives (e.g. a 422 naming a field with a huge integer, not a 400).
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(400, [FieldProblem("body", f"is not valid JSON ({exc})")]) from None


def _canonical_uuid(value: Any) -> str | None:
    """`value` as a canonical UUID string, or None when it is not a UUID."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
