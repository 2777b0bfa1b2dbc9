"""The `train` flow: split, search, refit, log, register, and promote through the gate.

Runs as a Prefect flow; with no Prefect server configured (PREFECT_API_URL
unset) Prefect starts a temporary one for the run, so `python -m
orchestration.train` works on a bare laptop.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from pydantic import SecretStr
from sklearn.model_selection import train_test_split

from core import gate, registry
from core.registry import CHAMPION, PREDICTION_COLUMN, REFERENCE_FILE
from core.schema import Schema, model_frame
from core.settings import Settings
from core.store import PredictionStore
from core.task import task_of
from orchestration.model import SKOPS_TRUSTED_TYPES, build_pipeline, suggest_params
from orchestration.retries import unless_not_migrated
from reporting import model_card, report
from simulation.loader import load_dataset


def _logger() -> Any:
    """The Prefect run logger inside a run; a plain logger when a task is called directly."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("onebox.train")


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame


@dataclass(frozen=True)
class ProductionRows:
    """Labelled production rows: the schema's features and the target, and when the
    oldest and newest of them were predicted (the model card states the period)."""

    frame: pd.DataFrame
    first_at: datetime | None = None
    last_at: datetime | None = None


@dataclass(frozen=True)
class ChampionScores:
    """The champion the candidate faces, and its predictions on the same holdout (the
    gate's evidence and the model card's); `version` None: there is no champion yet."""

    version: str | None = None
    holdout_proba: np.ndarray | None = None


def ensure_experiment(client: MlflowClient, settings: Settings) -> str:
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(
        settings.experiment_name, artifact_location=settings.mlflow_artifact_root
    )


@task(cache_policy=NO_CACHE)
def check_registry(settings: Settings) -> None:
    """MLflow answers, or this step fails saying where it looked (and Prefect retries it:
    TRAIN_REGISTRY_RETRIES times, TRAIN_REGISTRY_RETRY_SECONDS apart) before anything is
    trained or registered."""
    registry.require_reachable(settings)


@task(cache_policy=NO_CACHE)
def load_training_data(data_path: Path, schema: Schema) -> pd.DataFrame:
    """Read the base dataset (Kaggle layout or the schema's own)."""
    frame = load_dataset(data_path, schema)
    _logger().info("loaded %d rows from %s (%s)", len(frame), data_path,
                   task_of(schema).describe(frame[schema.target]))
    return frame


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10,
      retry_condition_fn=unless_not_migrated)
def load_production_rows(store_url: SecretStr, schema: Schema, limit: int,
                         model_name: str) -> ProductionRows:
    """The newest labelled production rows of this registered model (one business):
    logged predictions joined with their feedback from trusted senders (untrusted labels
    never reach training or the gate)."""
    store = PredictionStore(store_url.get_secret_value())
    try:
        rows = store.labelled(limit, model_name=model_name)
    finally:
        store.dispose()
    if rows.empty:
        _logger().info("no labelled production rows yet")
        return ProductionRows(rows)
    frame = rows[schema.feature_names].copy()
    for feat in schema.features:
        if feat.kind == "ordinal":
            frame[feat.name] = pd.array(frame[feat.name].tolist(), dtype="Int64")
    task = task_of(schema)
    frame[schema.target] = task.canonical(rows["actual"]).to_numpy()
    _logger().info("adding %d labelled production rows (%s)", len(frame),
                   task.describe(frame[schema.target]))
    created = pd.to_datetime(rows["created_at"], utc=True)
    return ProductionRows(frame, created.min().to_pydatetime(), created.max().to_pydatetime())


# Share of rows the gate compares on, by a hash of each row's features (stable_holdout).
HOLDOUT_PER_MILLE = 200
# Folds of the out-of-fold predictions (calibration, threshold, reference predictions).
CROSS_FIT_FOLDS = 5


def row_keys(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """A 64-bit key per row from its feature values written out canonically (numbers as
    floats, a missing value as empty), so the same customer row has the same key
    whatever dtype its table gave it (a CSV's int64, the log's Int64 or float)."""
    parts = []
    for name in schema.feature_names:
        column = frame[name]
        if schema.feature(name).is_categorical:
            text = column.astype(object).where(column.notna(), "").astype(str)
        else:
            numbers = pd.to_numeric(column, errors="coerce").astype(float)
            text = numbers.map(lambda v: "" if np.isnan(v) else repr(v))
        parts.append(text.to_numpy(dtype=object))
    joined = np.array(["\x1f".join(values) for values in zip(*parts, strict=True)], dtype=object)
    return pd.util.hash_array(joined)


def stable_holdout(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """True for the rows of the gate's holdout: HOLDOUT_PER_MILLE of 1,000 by row key.

    A row's side never changes between retrains: a row the champion trained on is never
    in a later candidate's holdout, so the gate does not score the champion on its own
    training rows (a redrawn random split did: a champion scored 0.71 on its own
    holdout and 0.91 on the next candidate's, and held its place on that)."""
    return (row_keys(frame, schema) % 1000) < HOLDOUT_PER_MILLE


@task(cache_policy=NO_CACHE)
def split_data(frame: pd.DataFrame, schema: Schema, seed: int) -> Split:
    """About 60/20/20 train/validation/holdout.

    The holdout is chosen by row (stable_holdout) and kept out of the search, the
    refit and the calibration: the gate compares the candidate and the champion on it.
    Train and validation (stratified on a binary target) only serve the search.
    """
    in_holdout = stable_holdout(frame, schema)
    holdout, rest = frame[in_holdout], frame[~in_holdout]
    train, valid = train_test_split(rest, test_size=0.25, random_state=seed,
                                    stratify=task_of(schema).stratify(rest[schema.target]))
    return Split(train, valid, holdout)


@task(cache_policy=NO_CACHE)
def search_hyperparameters(
    split: Split, schema: Schema, n_trials: int, seed: int, client: MlflowClient,
    experiment_id: str, parent_run_id: str, max_rows: int | None = None,
) -> dict[str, Any]:
    """Optuna search on the task's validation metric (AUC for a binary target, RMSE or MAE
    for a number); every trial is an MLflow run under the parent run.  `max_rows`: the
    trials fit on a seeded sample of at most that many training rows, and are judged on at
    most a third as many validation rows (SEARCH_MAX_ROWS)."""
    logger = _logger()
    task = task_of(schema)
    metric = task.search_metric
    figure = f"valid_{metric.name}"
    train, valid = split.train, split.valid
    if max_rows is not None and len(train) > max_rows:
        train = train.sample(n=max_rows, random_state=seed)
        valid = valid.sample(n=min(len(valid), max(max_rows // 3, 1)), random_state=seed)
        logger.info("search on %d of %d training rows and %d of %d validation rows "
                    "(SEARCH_MAX_ROWS %d)", len(train), len(split.train), len(valid),
                    len(split.valid), max_rows)
    x_train, y_train = model_frame(schema, train), train[schema.target].to_numpy()
    x_valid, y_valid = model_frame(schema, valid), valid[schema.target].to_numpy()

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial)
        started = time.perf_counter()
        run = client.create_run(
            experiment_id, run_name=f"trial-{trial.number:03d}",
            tags={"mlflow.parentRunId": parent_run_id, "onebox.kind": "trial"},
        )
        try:
            pipeline = build_pipeline(schema, params, seed).fit(x_train, y_train)
            score = metric.score(y_valid, task.predict(pipeline, x_valid))
            fit_seconds = time.perf_counter() - started
            client.log_batch(
                run.info.run_id,
                params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()],
                metrics=[
                    mlflow.entities.Metric(figure, score, int(time.time() * 1000), 0),
                    mlflow.entities.Metric("fit_seconds", fit_seconds,
                                           int(time.time() * 1000), 0),
                ],
            )
            client.set_terminated(run.info.run_id, "FINISHED")
        except BaseException:
            client.set_terminated(run.info.run_id, "FAILED")
            raise
        logger.info("trial %d/%d: %s %.4f (%.1fs)", trial.number + 1, n_trials, figure, score,
                    fit_seconds)
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=metric.direction,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    logger.info("best trial %d: %s %.4f, params %s", study.best_trial.number, figure,
                study.best_value, study.best_params)
    return {"params": study.best_params, figure: study.best_value}


def reference_sample(fit_rows: pd.DataFrame, holdout: pd.DataFrame, holdout_proba: np.ndarray,
                     rows: int, seed: int) -> pd.DataFrame:
    """The version's reference for the drift tests: `rows` rows of the population it was
    built from, the gate's holdout first.

    Only the holdout rows carry a `prediction`: the served model's own calibrated
    probability, out of sample for it as a new customer's is.  The fit rows' column is
    left empty (the tests ignore nulls): their out-of-fold scores come from the five fold
    models, whose distribution differs slightly from the refit model's -- enough that 10 of
    the 18 alarms `make bench-false-alarms` counted on clean traffic were the prediction's.
    """
    scored = holdout.assign(**{PREDICTION_COLUMN: holdout_proba})
    if len(scored) > rows:
        scored = scored.sample(n=rows, random_state=seed)
    filler = fit_rows.sample(n=min(rows - len(scored), len(fit_rows)), random_state=seed)
    return pd.concat([scored, filler.assign(**{PREDICTION_COLUMN: np.nan})],
                     ignore_index=True)


@task(cache_policy=NO_CACHE)
def fit_and_register(
    split: Split, schema: Schema, best: dict[str, Any], settings: Settings, parent_run_id: str,
) -> dict[str, Any]:
    """Refit the best params on train+validation, log the model with what travels with it,
    and register it as a new version."""
    logger = _logger()
    task = task_of(schema)
    params, seed = best["params"], settings.seed
    fit_rows = pd.concat([split.train, split.valid])
    x_fit, y_fit = model_frame(schema, fit_rows), fit_rows[schema.target].to_numpy()
    # Out-of-fold predictions: every refit row scored by a model that did not see it.
    # What travels with the version (a binary model's calibration and threshold, a number's
    # interval) is fitted on them, so nothing is fitted on the holdout nor on in-sample
    # (overconfident) scores.
    out_of_fold = cross_fit_predictions(schema, params, seed, x_fit, y_fit)
    serving = task.fit_serving(y_fit, out_of_fold, settings.interval_level)

    pipeline = build_pipeline(schema, params, seed).fit(x_fit, y_fit)
    # A number's models of its error (DLE), on the same out-of-fold rows.
    loss_estimator = task.fit_loss_estimator(pipeline, x_fit, y_fit, out_of_fold, seed)
    y_holdout = split.holdout[schema.target].to_numpy()
    x_holdout = model_frame(schema, split.holdout)
    raw_holdout = task.predict(pipeline, x_holdout)
    holdout_predictions = serving.calibration.apply(raw_holdout)
    figures = task.holdout_figures(y_holdout, raw_holdout, serving)
    gate_figure = figures.metrics[task.gate_metric.name]
    # DLE's estimate of the holdout's error, made without its labels (the card shows it).
    estimated_error = None if loss_estimator is None else loss_estimator.estimate(
        pipeline[:-1].transform(x_holdout), raw_holdout)

    reference = reference_sample(fit_rows, split.holdout, holdout_predictions,
                                 settings.reference_rows, seed)
    example = x_fit.head(5)
    metadata: dict[str, Any] = {
        registry.SCHEMA_KEY: json.dumps(schema.to_dict()),
        registry.HOLDOUT_METRICS_KEY: json.dumps(figures.metrics),
        registry.REFERENCE_PREDICTIONS_KEY: registry.HOLDOUT, **serving.metadata()}
    if "auc" in figures.metrics:  # what the monitoring's AUC estimate is held to
        metadata[registry.HOLDOUT_AUC_KEY] = figures.metrics["auc"]
    run_metrics = {f"holdout_{k}": v for k, v in figures.metrics.items()} | {
        f"best_valid_{task.search_metric.name}": best[f"valid_{task.search_metric.name}"],
        "train_rows": len(fit_rows), "holdout_rows": len(split.holdout)} | serving.figures | {
        f"holdout_estimated_{name}": value for name, value in (estimated_error or {}).items()}
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=parent_run_id):
        reference_path = Path(tmp) / REFERENCE_FILE
        reference.to_parquet(reference_path, index=False)
        loss_files = [] if loss_estimator is None else loss_estimator.save(Path(tmp))
        mlflow.log_params({f"best.{k}": v for k, v in params.items()})
        mlflow.log_metrics(run_metrics)
        for name, document in figures.documents.items():
            mlflow.log_dict(document, name)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, task.predict(pipeline, example)),
            input_example=example,
            pyfunc_predict_fn=task.pyfunc_predict_fn,
            metadata=metadata,
            extra_files=[str(reference_path), *map(str, loss_files)],
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            registered_model_name=settings.model_name,
        )
    version = str(info.registered_model_version)
    # What a rollback checks without downloading the version (one registered model per
    # business).
    registry.tag_business(registry.connect(settings), settings.model_name, version, schema)
    logger.info("registered %s v%s: holdout %s %.4f; %s", settings.model_name, version,
                task.gate_metric.label, gate_figure,
                ", ".join(f"{k} {v:.4g}" for k, v in figures.metrics.items()))
    # The pipeline and its holdout predictions go on to the gate and the model card.
    return {"version": version, "holdout": figures.metrics, "threshold": serving.threshold,
            "holdout_proba": holdout_predictions, "pipeline": pipeline,
            "calibration": serving.calibration, "interval": serving.interval,
            "estimated_error": estimated_error}


def cross_fit_predictions(schema: Schema, params: dict[str, Any], seed: int,
                          x: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """Each row's raw prediction (the task's: a probability, or the number) from a model
    fitted on the other folds."""
    task = task_of(schema)
    out = np.empty(len(y), dtype=float)
    for fit_at, score_at in task.folds(seed, CROSS_FIT_FOLDS).split(x, y):
        model = build_pipeline(schema, params, seed).fit(x.iloc[fit_at], y[fit_at])
        out[score_at] = task.predict(model, x.iloc[score_at])
    return out


@task(cache_policy=NO_CACHE)
def score_champion(client: MlflowClient, settings: Settings, split: Split) -> ChampionScores:
    """The current champion's served predictions on the holdout (with its own schema)."""
    champion = registry.version_by_alias(client, settings.model_name, CHAMPION)
    if champion is None:
        return ChampionScores()
    loaded = registry.load_version(client, settings.model_name, champion.version,
                                   settings.model_cache_dir)
    return ChampionScores(str(champion.version),
                          loaded.predict(model_frame(loaded.schema, split.holdout)))


@task(cache_policy=NO_CACHE)
def check_business(client: MlflowClient, settings: Settings, schema: Schema) -> None:
    """The registered model's champion predicts what this schema does (core.registry
    OtherBusiness otherwise), checked before anything is trained or registered."""
    champion = registry.version_by_alias(client, settings.model_name, CHAMPION)
    if champion is not None:
        registry.require_same_business(client, champion, schema,
                                       f"this schema ({schema.name})", settings.model_cache_dir)


@task(cache_policy=NO_CACHE)
def promote_through_gate(
    client: MlflowClient, settings: Settings, split: Split, schema: Schema,
    candidate: dict[str, Any], margin: float, champion: ChampionScores | None = None,
) -> gate.GateDecision:
    """Let the gate decide between the candidate and the champion on the same holdout and
    the task's metric (`champion`: its scores from `score_champion`; None: score it here)."""
    logger = _logger()
    if champion is None:
        champion = score_champion.fn(client, settings, split)
    metric = task_of(schema).gate_metric
    champion_score = None
    if champion.holdout_proba is not None:
        champion_score = metric.score(split.holdout[schema.target].to_numpy(),
                                      champion.holdout_proba)
    decision = gate.decide(
        metric=metric, candidate_version=candidate["version"],
        candidate_score=candidate["holdout"][metric.name],
        champion_version=champion.version, champion_score=champion_score, margin=margin,
    )
    gate.apply(client, settings.model_name, decision)
    logger.info("gate: %s v%s (%s)", "PROMOTED" if decision.promoted else "not promoted",
                decision.candidate_version, decision.reason)
    return decision


@task(cache_policy=NO_CACHE)
def write_model_card(
    client: MlflowClient, settings: Settings, schema: Schema, split: Split,
    candidate: dict[str, Any], champion: ChampionScores, decision: gate.GateDecision,
    data: model_card.TrainingData, run_id: str, training_seconds: float, trials: int,
) -> str:
    """The version's model card: logged on the run, written to REPORTS_DIR/models/, and
    linked from the model version.  Returns the card's file path."""
    started = time.perf_counter()
    # The hyperparameters as the run holds them (fit_and_register logged them as best.*),
    # and its experiment, which the card's link to the run needs.
    run = client.get_run(run_id)
    hyperparameters = {name.removeprefix("best."): value
                       for name, value in run.data.params.items() if name.startswith("best.")}
    card = model_card.build_card(model_card.CardInputs(
        model_name=settings.model_name, version=candidate["version"], run_id=run_id,
        schema=schema, pipeline=candidate["pipeline"], threshold=candidate["threshold"],
        refit_rows=pd.concat([split.train, split.valid]), holdout=split.holdout,
        holdout_predicted=candidate["holdout_proba"], decision=decision,
        champion_holdout_predicted=champion.holdout_proba, data=data,
        training_seconds=training_seconds, trials=trials,
        calibration=candidate["calibration"], interval=candidate["interval"],
        estimated_error=candidate.get("estimated_error"),
        hyperparameters=hyperparameters, experiment_id=run.info.experiment_id,
        cross_fit_folds=CROSS_FIT_FOLDS,
    ))
    files = model_card.publish(card, settings.reports_dir, client)
    # The index lists the versions' cards: rebuilt now, not at the next drift report.
    report.write_index(settings.reports_dir)
    _logger().info("model card %s (%s) in %.2fs", files.html, files.url,
                   time.perf_counter() - started)
    return str(files.html)


@flow(name="train")
def train(
    n_trials: int | None = None,
    data_path: str | None = None,
    promotion_margin: float | None = None,
    include_production_rows: bool = True,
    production_rows_limit: int = 50_000,
    trigger_reason: str | None = None,
) -> dict[str, Any]:
    """Train with a hyperparameter search, register a new version, promote it through the gate.

    The training table is the base dataset (DATA_PATH) plus, when
    `include_production_rows`, the newest labelled production rows.
    `trigger_reason` (set by the drift check) is recorded on the MLflow run.
    """
    settings = Settings.from_env()
    schema = Schema.load(settings.schema_path)
    # MLflow's log_model works only on the fluent API's active run, which reads the
    # process-wide tracking URI: set where this flow's process begins (a flow run, `make
    # train`, the bootstrap), the one place that needs it; everything else passes a client.
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    n_trials = n_trials or settings.n_trials
    margin = settings.promotion_margin if promotion_margin is None else promotion_margin
    check_registry.with_options(
        retries=settings.train_registry_retries,
        retry_delay_seconds=settings.train_registry_retry_seconds)(settings)
    client = registry.connect(settings)
    check_business(client, settings, schema)
    experiment_id = ensure_experiment(client, settings)
    tags = {"onebox.kind": "train"}
    if trigger_reason:
        tags["onebox.trigger_reason"] = trigger_reason
    parent = client.create_run(experiment_id, run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
                               tags=tags)
    parent_id = parent.info.run_id
    client.log_batch(parent_id, params=[
        mlflow.entities.Param("n_trials", str(n_trials)),
        mlflow.entities.Param("promotion_margin", str(margin)),
        mlflow.entities.Param("data_path", str(data_path or settings.data_path)),
        mlflow.entities.Param("seed", str(settings.seed)),
    ])
    base_path = Path(data_path or settings.data_path)
    try:
        frame = load_training_data(base_path, schema)
        data = model_card.TrainingData(base_path=str(base_path), base_rows=len(frame),
                                       home=str(settings.home))
        if include_production_rows:
            production = load_production_rows(settings.prediction_store_url, schema,
                                              production_rows_limit, settings.model_name)
            if not production.frame.empty:
                frame = pd.concat([frame, production.frame], ignore_index=True)
                data = replace(data, production_rows=len(production.frame),
                               production_first_at=production.first_at,
                               production_last_at=production.last_at)
        client.log_metric(parent_id, "training_rows_total", len(frame))
        split = split_data(frame, schema, settings.seed)
        started = time.perf_counter()
        best = search_hyperparameters(split, schema, n_trials, settings.seed, client,
                                      experiment_id, parent_id, settings.search_max_rows)
        candidate = fit_and_register(split, schema, best, settings, parent_id)
        training_seconds = time.perf_counter() - started
        client.log_metric(parent_id, "training_seconds", training_seconds)
        champion = score_champion(client, settings, split)
        decision = promote_through_gate(client, settings, split, schema, candidate, margin,
                                        champion)
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    client.set_tag(parent_id, "gate.decision", "promoted" if decision.promoted else "rejected")
    # The version is registered and the gate has moved (or kept) the aliases by now: a card
    # that cannot be written (a full or read-only reports folder, say) must not turn that
    # into a failed run, which would read as "no new model" and be retried into yet another
    # version.  So its task runs with return_state: a failure shows as that task's Failed
    # state with its traceback in Prefect, a warning here, and "model_card": None.
    card_state = write_model_card(client, settings, schema, split, candidate, champion,
                                  decision, data, parent_id, training_seconds, n_trials,
                                  return_state=True)
    card_file = None
    if card_state.is_completed():
        card_file = card_state.result()
    else:
        _logger().warning("no model card for %s v%s: %s", settings.model_name,
                          candidate["version"], card_state.message)
    client.set_terminated(parent_id, "FINISHED")
    gate_metric = task_of(schema).gate_metric.name
    return {
        "run_id": parent_id,
        "model_name": settings.model_name,
        "version": candidate["version"],
        "task": task_of(schema).name,
        f"holdout_{gate_metric}": candidate["holdout"][gate_metric],
        "holdout": candidate["holdout"],  # every holdout figure (the interval's too)
        "threshold": candidate["threshold"],
        "promoted": decision.promoted,
        "gate": decision.as_dict(),
        "rows": len(frame),
        "model_card": card_file,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=train.__doc__)
    parser.add_argument("--trials", type=int, default=None,
                        help="number of Optuna trials (default: N_TRIALS or 20)")
    parser.add_argument("--data-path", default=None, help="training CSV (default: DATA_PATH)")
    parser.add_argument("--margin", type=float, default=None,
                        help="AUC margin a candidate must beat the champion by")
    args = parser.parse_args(argv)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    result = train(n_trials=args.trials, data_path=args.data_path,
                   promotion_margin=args.margin)
    print(json.dumps(result, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
