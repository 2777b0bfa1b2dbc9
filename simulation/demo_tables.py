"""The demo businesses' generated tables: which generator draws a schema's table, and its
drift scenarios, decided here by the schema's `name` (the one place that knows them).

`make data` (python -m simulation.demo_tables), the stack's bootstrap and the traffic
simulator all ask this module, so choosing a business is choosing its schema
(SCHEMA_PATH): credit-card churn (core/schemas/churn.yaml, the default) or flight
prices (core/schemas/flights.yaml).  A schema of your own brings its own table
(DATA_PATH): asking for a generated one says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.schema import Schema
from core.task import task_of
from simulation import flights, generator


class NoDemoTable(ValueError):
    """The schema's business has no generator, or not that scenario."""


@dataclass(frozen=True)
class DemoBusiness:
    draw: Callable[[int, int, str, Schema], pd.DataFrame]  # rows, seed, scenario, schema
    scenarios: tuple[str, ...]
    # What `make demo DEMO=<short name>` runs on: the schema file, the registered model
    # and the experiment (the settings SCHEMA_PATH, MODEL_NAME, MLFLOW_EXPERIMENT) ...
    short_name: str = ""
    schema_file: str = ""
    model_name: str = ""
    experiment: str = ""
    # ... and its drifted phase: a scenario, or (churn) a mix of them.
    demo_drift: Callable[[int, int, Schema], pd.DataFrame] | None = None

    def settings(self) -> dict[str, str]:
        return {"SCHEMA_PATH": self.schema_file, "MODEL_NAME": self.model_name,
                "MLFLOW_EXPERIMENT": self.experiment}


def _churn(rows: int, seed: int, scenario: str, schema: Schema) -> pd.DataFrame:
    return generator.generate(rows, seed, generator.SCENARIOS[scenario], schema)


# The churn demo's drifted phase: an economic shift (older customers, higher limits,
# lower balances) plus a move towards premium cards.
CHURN_DEMO_DRIFT = generator.Drift(
    scale=generator.SCENARIOS["economic_shift"].scale,
    offset=generator.SCENARIOS["economic_shift"].offset,
    category_shares=generator.SCENARIOS["premium_cards"].category_shares,
)


def _flights(rows: int, seed: int, scenario: str, schema: Schema) -> pd.DataFrame:
    return flights.generate(rows, seed, schema, flights.SCENARIOS[scenario])


BUSINESSES: dict[str, DemoBusiness] = {
    "credit_card_churn": DemoBusiness(
        _churn, tuple(sorted(generator.SCENARIOS)), "churn", "core/schemas/churn.yaml",
        "churn-classifier", "onebox-churn",
        lambda rows, seed, schema: generator.generate(rows, seed, CHURN_DEMO_DRIFT, schema)),
    "flight_prices": DemoBusiness(
        _flights, tuple(sorted(flights.SCENARIOS)), "flights", "core/schemas/flights.yaml",
        "flight-prices", "onebox-flights",
        # Booking closer to departure: the fares, and the model's errors, grow.
        lambda rows, seed, schema: _flights(rows, seed, "late_booking", schema)),
}


def by_short_name(short_name: str) -> DemoBusiness:
    """The demo business `make demo DEMO=...` names (churn, flights)."""
    for found in BUSINESSES.values():
        if found.short_name == short_name:
            return found
    raise NoDemoTable(f"DEMO={short_name!r}: the demo businesses are "
                      f"{', '.join(b.short_name for b in BUSINESSES.values())}")


def business(schema: Schema) -> DemoBusiness:
    found = BUSINESSES.get(schema.name)
    if found is None:
        raise NoDemoTable(
            f"no demo table for the schema named {schema.name!r}: onebox generates "
            f"{', '.join(sorted(BUSINESSES))}; bring your table as a CSV at DATA_PATH")
    return found


def demo_table(schema: Schema, rows: int, seed: int, scenario: str = "none") -> pd.DataFrame:
    """`rows` generated rows of the schema's business: its features and the target."""
    found = business(schema)
    if scenario not in found.scenarios:
        raise NoDemoTable(f"{schema.name} has no scenario {scenario!r} (its scenarios: "
                          f"{', '.join(found.scenarios)})")
    return found.draw(rows, seed, scenario, schema)


def main(argv: list[str] | None = None) -> None:
    from core.settings import Settings

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        description="Write the generated table of the schema's business (SCHEMA_PATH) as CSV.")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=settings.seed)
    parser.add_argument("--scenario", default="none",
                        help="a drift scenario of the business (" + "; ".join(
                            f"{name}: {', '.join(b.scenarios)}"
                            for name, b in BUSINESSES.items()) + ")")
    parser.add_argument("--out", type=Path, default=settings.data_path,
                        help="output CSV (default: DATA_PATH)")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when the output exists (make train)")
    args = parser.parse_args(argv)
    if args.if_missing and args.out.exists():
        return
    schema = Schema.load(settings.schema_path)
    try:
        frame = demo_table(schema, args.rows, args.seed, args.scenario)
    except NoDemoTable as exc:
        parser.exit(2, f"{settings.schema_path}: {exc}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} rows ({task_of(schema).describe(frame[schema.target])}) "
          f"to {args.out}")


if __name__ == "__main__":
    main()
